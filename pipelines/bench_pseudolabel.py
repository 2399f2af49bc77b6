"""`python -m pipelines.bench_pseudolabel` (in `make bench`): how fast and how right pseudo-labels are.

Printed as `name: value` lines, measured in one run:
- label_fps_<WxH>: frames per second of the whole labelling chain (segmentation, trimap, closed
  form, stabilisation, foreground, scores) on `bench.speed_frames` frames of a real video at the
  bench resolution; cf_fps_<WxH>: pymatting's closed form alone on the same frames and trimaps
  (the per-frame baseline); label_over_cf: their ratio.
With `bench.store` (rendered clips: known alpha), each clip is composited over the moving sample
backgrounds (pipelines.benchmark_set), labelled from its composite alone, and compared with the
true alpha:
- pseudo_mad: mean |alpha - true| (x1e3, as the field reports MAD), per clip then averaged;
- score_mad_spearman: Spearman rank correlation of the clip score with its -MAD (1: the score
  orders clips exactly by accuracy);
- dtssd_stabilised / dtssd_per_frame, messddt_*: the temporal metrics (gvm_train's, matting.metrics)
  with and without the stabilisation, and mad_stabilised_over_per_frame.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

import clipstore

from core.cli import UserError, app, compose, to_container
from matting import pseudo, quality
from matting.classical import solve_alpha
from matting.evaluate import read_png
from matting.metrics import clip_means, clip_metrics
from matting.person import subject
from matting.trimap import person_trimap
from matting.video import open_input, sample_video
from pipelines import pseudolabel
from pipelines.benchmark_set import parse_resolution


def speed(c: dict, size: tuple[int, int]) -> tuple[float, float]:
    """(chain frames/s, closed-form-alone frames/s) on the same frames at `size`."""
    from matting.image import resize
    path = sample_video(c["bench"]["speed_video"])
    video = open_input(path)
    frames = np.stack([resize(f, size, upscale=2) for f in video.frames(0, c["bench"]["speed_frames"])])
    work = pseudo.working_size(*size, c["max_size"])
    sources = pseudolabel.person_sources(video, path, work, c)
    start = time.perf_counter()
    labels, _, _ = pseudolabel.label_window(frames, 0, sources, work, c)
    pseudo.full_size(labels, frames, c, c["writer"]["foreground"])
    chain = time.perf_counter() - start
    for s in sources:
        s.close()
    small = pseudo.shrink(frames, work)
    trimaps = [person_trimap(subject(p > c["person_threshold"], "largest"), c["trimap"])[0] for p in labels.person]
    start = time.perf_counter()
    for f, t in zip(small, trimaps):
        solve_alpha(f, t, "cf", c["closed_form"])
    cf = time.perf_counter() - start
    return len(frames) / chain, len(frames) / cf


def accuracy(c: dict) -> dict[str, float]:
    from scipy.stats import spearmanr
    from pipelines import benchmark_set
    b = c["bench"]
    bc = to_container(compose("benchmark_set", [f"stores=[{b['store']}]", "clips=all", f"resolutions=[{b['resolution']}]",
                                                 "backgrounds.kinds=[motion]", f"output_dir={b['output_dir']}",
                                                 "name=composites", f"frames={b['frames'] or 'null'}"]))
    folder = benchmark_set.build(bc)[0]
    clips = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = []
    for clip in clips:
        video = open_input(clip / "com", fps=c["writer"]["folder_fps"])
        frames = np.stack(list(video.frames()))
        true = np.stack([read_png(p) for p in sorted((clip / "pha").glob("*.png"))])
        work = pseudo.working_size(video.width, video.height, c["max_size"])
        sources = pseudolabel.person_sources(video, clip / "com", work, c)
        lab, source, _ = pseudolabel.label_window(frames, 0, sources, work, c)
        row = {"clip": clip.name, "source": source, "empty_mad": float(true.mean() * 1e3)}
        # Per-frame labels from the same person maps: the stabilisation's effect alone.
        per_frame = pseudo.label(frames, lab.person, {**c, "temporal": {**c["temporal"], "enabled": False}},
                                 c["writer"]["foreground"])
        for name, lab in (("stabilised", lab), ("per_frame", per_frame)):
            m = clip_means(clip_metrics(pseudo.full_size(lab, frames, c, c["writer"]["foreground"])[0], true))
            row[name] = {"score": lab.score, **m, **{f"term_{k}": float(np.mean([t[k] for t in lab.terms]))
                                                    for k in quality.TERMS}}
        for src in sources:
            src.close()
        rows.append(row)
        print(f"  {clip.name}: score {row['stabilised']['score']:.3f}, MAD {row['stabilised']['pha_mad']:.2f}, "
              f"dtSSD {row['stabilised']['pha_dtssd']:.2f} (per frame {row['per_frame']['pha_dtssd']:.2f})", flush=True)
    (Path(b["output_dir"]) / "clips.json").write_text(json.dumps(rows, indent=1) + "\n")
    mean = lambda k, n: float(np.mean([r[n][k] for r in rows]))  # noqa: E731
    rho = spearmanr([r["stabilised"]["score"] for r in rows], [-r["stabilised"]["pha_mad"] for r in rows])[0]
    return {"clips": len(rows), "per_clip_mad": [r["stabilised"]["pha_mad"] for r in rows],
            "empty_mad": float(np.mean([r["empty_mad"] for r in rows])), "pseudo_mad": mean("pha_mad", "stabilised"), "pseudo_mad_per_frame": mean("pha_mad", "per_frame"),
            "score_mad_spearman": float(rho),
            "dtssd_stabilised": mean("pha_dtssd", "stabilised"), "dtssd_per_frame": mean("pha_dtssd", "per_frame"),
            "messddt_stabilised": mean("pha_messddt", "stabilised"), "messddt_per_frame": mean("pha_messddt", "per_frame")}


@app("bench_pseudolabel")
def main(cfg: DictConfig) -> int:
    c = pseudolabel.check({**to_container(cfg), "input": "-", "store": {"path": "unused.zarr"}})
    w, h = parse_resolution(c["bench"]["resolution"], "bench.resolution")
    open_input(sample_video(c["bench"]["speed_video"]))   # a bundled video by name: there and readable
    if c["bench"]["store"]:   # checked whole before the speed benchmark spends its time
        try:
            clipstore.intact(clipstore.open_store(c["bench"]["store"]), c["bench"]["store"])
        except clipstore.StoreError as e:
            raise UserError(f"bench.store: {e}") from None
    label_fps, cf_fps = speed(c, (w, h))
    print(f"label_fps_{w}x{h}: {label_fps:.2f}")
    print(f"cf_fps_{w}x{h}: {cf_fps:.2f}")
    print(f"label_over_cf: {label_fps / cf_fps:.2f}")
    if c["bench"]["store"]:
        r = accuracy(c)
        print(f"clips: {r['clips']}")
        for k in ("pseudo_mad", "pseudo_mad_per_frame", "score_mad_spearman", "dtssd_stabilised", "dtssd_per_frame",
                  "messddt_stabilised", "messddt_per_frame"):
            print(f"{k}: {r[k]:.3f}")
        print(f"dtssd_stabilised_over_per_frame: {r['dtssd_stabilised'] / r['dtssd_per_frame']:.3f}")
        print(f"messddt_stabilised_over_per_frame: {r['messddt_stabilised'] / r['messddt_per_frame']:.3f}")
        print(f"mad_stabilised_over_per_frame: {r['pseudo_mad'] / r['pseudo_mad_per_frame']:.3f}")
    return 0


if __name__ == "__main__":
    main()
