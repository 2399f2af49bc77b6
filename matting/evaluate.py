"""`python -m matting.evaluate pred=<folder> gt=<folder> output=<file.json>`: score predicted mattes.

    python -m matting.evaluate pred=runs/a/pred gt=data/videomatte_512x288 protocol=lr

Both folders use the RVM / VideoMatte240K layout, `<clip>/pha/0000.png ...` with optional
`<clip>/fgr/` (RGB) and, in gt only, `<clip>/hair/` (hair alpha, for the hair-region metrics) and
`<clip>/classes/` (material class labels, for the metrics per class: lens, sheer, opaque objects,
the rest) and `<clip>/others/` (in a clip matted for one of several people, everyone else's coverage:
the error split between them and the rest). Frames pair by position in file-name order. Writes the JSON summary `output` and beside it, with the same stem, a
per-frame CSV (`_frames.csv`), a per-clip CSV (`_clips.csv`), a Markdown table (`.md`) and a plot of
every alpha metric over the frames (`.png`); prints the table. Clip values are means over frames and
dataset values means over clips (each clip weighs the same), as RVM's spreadsheets average them.
The metric definitions are in `matting.metrics`; the folder layout in `matting.layout`.

Every input problem is found before the first metric is computed: missing folders or clips, frame
counts and frame sizes that do not match (read from the PNG headers).
"""
from __future__ import annotations

import csv
import json
import math
import os
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import DictConfig

from core import stops
from core.checks import writable
from core.cli import UserError, app, to_container
from matting import layout
from matting import metrics as M

LABELS = {"pha_mad": "MAD", "pha_mse": "MSE", "pha_grad": "Grad", "pha_conn": "Conn", "pha_dtssd": "dtSSD",
          "pha_messddt": "MESSDdt", "fgr_mad": "fgr MAD", "fgr_mse": "fgr MSE", "hair_mad": "hair MAD",
          "hair_mse": "hair MSE", "hair_grad": "hair Grad",
          **{f"{c}_{m}": f"{c.replace('_', ' ')} {m.upper()}" for c in M.CLASS_REGIONS for m in ("mad", "mse")},
          "others_mad": "others MAD", "others_mse": "others MSE", "target_mad": "target MAD", "target_mse": "target MSE"}
NOTES = ("Alphas and foregrounds are 8-bit PNGs read as float32/255. MAD = 1e3*mean|p-g|, MSE = 1e3*mean (p-g)^2; "
         "Grad = 1e-3*sum of squared differences of Gaussian-derivative gradient magnitudes (lr: each alpha map "
         "min-max normalised before its gradient); Conn = 1e-3*sum|phi(g)-phi(p)| (lr only); Grad and Conn are sums, so they grow with "
         "resolution. dtSSD = 1e2*sqrt(sum of squared temporal-difference errors / pixels); MESSDdt = 1e3*mean "
         "|E_t-1(x) - E_t(x+flow)| with E the squared error and flow from the ground truth; both are 0 at frame 0 "
         "and that frame counts in the mean. fgr metrics cover pixels with true alpha > 0; hair metrics the "
         "dilated true hair alpha > 0; a material class's metrics (lens, sheer, opaque objects) its labelled pixels "
         "dilated the same way, the rest's its labelled pixels. A clip matted for one of several people (gt others/: "
         "everyone else's coverage) splits the alpha error between the other people's pixels (others: the matte "
         "leaking onto them) and the rest (target). Clip value = mean over its frames; dataset value = mean over clips.")


@dataclass(frozen=True)
class Clip:
    """One clip's frame files, paired by position; fgr only when both sides have it, hair from gt."""
    name: str
    size: tuple[int, int]  # (width, height)
    pred_pha: list[Path]
    true_pha: list[Path]
    pred_fgr: list[Path] | None = None
    true_fgr: list[Path] | None = None
    true_hair: list[Path] | None = None
    true_classes: list[Path] | None = None
    true_others: list[Path] | None = None


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG header (PIL opens lazily), so sizes are checked before any decoding."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as img:
            if img.format != "PNG":
                raise UserError(f"{path}: not a PNG file ({img.format})")
            return img.size
    except (UnidentifiedImageError, SyntaxError):
        raise UserError(f"{path}: not a PNG file") from None
    except OSError as e:
        raise UserError(f"{path}: cannot be read ({e.strerror or e})") from None


def _folder(path: str | Path, role: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise UserError(f"{role} folder {path} does not exist")
    if not path.is_dir():
        raise UserError(f"{role} folder {path} is not a folder")
    return path


def find_clips(pred_dir: str | Path, gt_dir: str | Path) -> list[Clip]:
    """The gt clips (visible sub-folders with pha/) and their predictions, checked for count and size agreement."""
    pred_dir, gt_dir = _folder(pred_dir, "pred"), _folder(gt_dir, "gt")
    names = [p.name for p in layout.clips(gt_dir)]
    if not names:
        raise UserError(f"gt folder {gt_dir} has no clips (sub-folders with pha/*.png)")
    clips = []
    for name in names:
        true_pha = layout.frames(gt_dir / name, layout.PHA)
        if not true_pha:
            raise UserError(f"gt clip {name} has no frames in {gt_dir / name / 'pha'}")
        pred_pha = layout.frames(pred_dir / name, layout.PHA)
        if pred_pha is None:
            raise UserError(f"pred folder {pred_dir} has no clip {name} (expected {pred_dir / name / 'pha'}/*.png)")
        _same_count(name, "pred pha/", pred_pha, len(true_pha))
        seqs = {"pred_pha": pred_pha, "true_pha": true_pha}
        pred_fgr, true_fgr = layout.frames(pred_dir / name, layout.FGR), layout.frames(gt_dir / name, layout.FGR)
        if pred_fgr is not None and true_fgr is not None:
            seqs["true_fgr"] = _same_count(name, "gt fgr/", true_fgr, len(true_pha))
            seqs["pred_fgr"] = _same_count(name, "pred fgr/", pred_fgr, len(true_pha))
        hair = layout.frames(gt_dir / name, layout.HAIR)
        if hair is not None:
            seqs["true_hair"] = _same_count(name, "gt hair/", hair, len(true_pha))
        classes = layout.frames(gt_dir / name, layout.CLASSES)
        if classes is not None:
            seqs["true_classes"] = _same_count(name, "gt classes/", classes, len(true_pha))
        others = layout.frames(gt_dir / name, layout.OTHERS)
        if others is not None:
            seqs["true_others"] = _same_count(name, "gt others/", others, len(true_pha))
        size = png_size(true_pha[0])
        for key, files in seqs.items():
            for t, path in enumerate(files):
                if (got := png_size(path)) != size:
                    raise UserError(f"clip {name} frame {t} ({path.name}): {key.replace('_', ' ')} is "
                                    f"{got[0]}x{got[1]} but gt pha is {size[0]}x{size[1]}")
        clips.append(Clip(name, size, **seqs))
    return clips


def _same_count(clip: str, what: str, files: list[Path], n: int) -> list[Path]:
    if len(files) != n:
        raise UserError(f"clip {clip}: {what} has {len(files)} frames but gt pha/ has {n}")
    return files


def read_png(path: Path, colour: bool = False) -> np.ndarray:
    """An 8-bit PNG as float32 / 255: grayscale (H, W) for alpha, RGB (H, W, 3) for foreground."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise UserError(f"{path}: not a readable PNG")
    if colour:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img.astype(np.float32) / 255


# The ground truth, read, and its own work (flow, gradients), kept in this process for the next method
# scored against the same set (pipelines.loop scores several); evaluate() sizes it (truth_cache_mb).
TRUTH = M.TruthCache(0)


def _identity(path: Path) -> tuple[str, int, int]:
    """A truth file as the cache knows it: rewritten, it is another file."""
    st = path.stat()
    return str(path.resolve()), st.st_mtime_ns, st.st_size


def score_clip(clip: Clip, protocol: str, cfg: Mapping[str, Any],
               on_frame: Callable[[], Any] | None = None, threads: int = 1) -> dict[str, np.ndarray]:
    """Per-frame metrics of one clip. With threads > 1 frames are read and scored ahead in that many
    threads (OpenCV and numpy let go of the GIL), at most two per thread in memory, and each frame's
    temporal metrics run as soon as it and the one before are in; the numbers are the same."""
    scorer = M.ClipScorer(protocol, cfg, TRUTH)

    def truth(files: list[Path] | None, t: int, read: Callable[[Path], np.ndarray]) -> np.ndarray | None:
        return None if files is None else TRUTH.get(("read", *_identity(files[t]), read), lambda: read(files[t]))

    def own(t: int) -> tuple[dict[str, float], M.Frame]:
        return scorer.frame(_read(clip.pred_pha, t), truth(clip.true_pha, t, read_png), _read(clip.pred_fgr, t, True),
                            truth(clip.true_fgr, t, _read_colour), truth(clip.true_hair, t, read_png),
                            truth(clip.true_classes, t, _labels), truth(clip.true_others, t, read_png),
                            key=_identity(clip.true_pha[t]))

    n, rows = len(clip.true_pha), []
    with ThreadPoolExecutor(max(1, threads)) as pool:
        ahead: deque[Future] = deque()
        pairs: deque[tuple[dict[str, float], Future]] = deque()
        prev = None
        for t in range(n):
            while len(ahead) < 2 * threads and t + len(ahead) < n:
                ahead.append(pool.submit(own, t + len(ahead)))
            frame_metrics, cur = ahead.popleft().result()
            pairs.append((frame_metrics, pool.submit(scorer.pair, prev, cur)))
            prev = cur
            while pairs and (pairs[0][1].done() or len(pairs) > 2 * threads or t == n - 1):
                frame_metrics, temporal = pairs.popleft()
                rows.append(M.join(frame_metrics, temporal.result()))
                if on_frame is not None:
                    on_frame()
    return M.stack(rows)


def _read_colour(path: Path) -> np.ndarray:
    return read_png(path, colour=True)


def _labels(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise UserError(f"{path}: not a readable PNG")
    return img


def _read(files: list[Path] | None, t: int, colour: bool = False) -> np.ndarray | None:
    return None if files is None else read_png(files[t], colour)


def evaluate(pred_dir: str | Path, gt_dir: str | Path, protocol: str = "lr", cfg: Mapping[str, Any] | None = None,
             workers: int = 0, progress: bool = True, threads: int = 0, truth_cache_mb: int = 0) -> dict[str, Any]:
    """Score every gt clip; returns the JSON summary (dataset and clip means, per-frame values, conventions).

    cfg is the `metrics` block of conf/evaluate.yaml (that file's values when None); workers > 0 scores
    clips in that many processes; each scores a clip's frames in `threads` threads (0: one per CPU core).
    truth_cache_mb: memory for the ground truth's flow and gradients, kept for the next evaluation of
    the same set in this process (0: none).
    """
    from tqdm import tqdm
    if protocol not in M.PROTOCOLS:
        raise UserError(f"protocol must be lr or hr, not {protocol!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise UserError(f"workers must be a non-negative integer, got {workers!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise UserError(f"threads must be a non-negative integer, got {threads!r}")
    threads = threads or os.cpu_count() or 1
    if isinstance(truth_cache_mb, bool) or not isinstance(truth_cache_mb, int) or truth_cache_mb < 0:
        raise UserError(f"truth_cache_mb must be a non-negative integer, got {truth_cache_mb!r}")
    TRUTH.max_bytes = truth_cache_mb * 2 ** 20
    try:
        cfg = M.check_config(cfg)
    except ValueError as e:
        raise UserError(str(e)) from None
    clips = find_clips(pred_dir, gt_dir)
    frames: dict[str, dict[str, np.ndarray]] = {}
    with tqdm(total=sum(len(c.true_pha) for c in clips), desc="evaluate", unit="frame", disable=not progress) as bar:
        if workers > 0:
            with ProcessPoolExecutor(workers) as pool:
                jobs = {pool.submit(score_clip, c, protocol, cfg, None, threads): c for c in clips}
                for job in as_completed(jobs):
                    frames[jobs[job].name] = job.result()
                    bar.update(len(jobs[job].true_pha))
                    stops.check()
        else:
            for c in clips:
                frames[c.name] = score_clip(c, protocol, cfg, bar.update, threads)
                stops.check()
    clip_means = {c.name: M.clip_means(frames[c.name]) for c in clips}
    sizes = sorted({f"{c.size[0]}x{c.size[1]}" for c in clips})
    return {
        "protocol": protocol,
        "resolution": sizes[0] if len(sizes) == 1 else sizes,
        "n_clips": len(clips),
        "n_frames": sum(len(c.true_pha) for c in clips),
        "metrics": [m for m in (*M.ALPHA, *M.FGR, *M.HAIR, *M.CLASS, *M.OTHERS) if any(m in v for v in clip_means.values())],
        "dataset": M.dataset_means(clip_means),
        "clips": clip_means,
        "clip_info": {c.name: {"frames": len(c.true_pha), "resolution": f"{c.size[0]}x{c.size[1]}"} for c in clips},
        "frames": {c.name: {k: v.tolist() for k, v in frames[c.name].items()} for c in clips},
        "parameters": cfg,
        "notes": NOTES,
    }


def _fmt(v: float | None) -> str:
    """Three decimals, as tables in papers; tiny values (Grad of low-res frames) keep their digits."""
    if v is None or math.isnan(v):
        return "n/a"
    return f"{v:.3f}" if v == 0 or abs(v) >= 0.01 else f"{v:.2e}"


def _resolution(result: Mapping[str, Any]) -> str:
    res = result["resolution"]
    return res if isinstance(res, str) else "mixed " + ", ".join(res)


def markdown_table(result: Mapping[str, Any]) -> str:
    """One row per clip and a mean-of-clips row; the header names protocol and resolution."""
    names = result["metrics"]
    lines = [f"Protocol {result['protocol']}, resolution {_resolution(result)} "
             f"({result['n_clips']} clips, {result['n_frames']} frames; Grad and Conn grow with resolution)", "",
             "| clip | frames | " + " | ".join(LABELS[m] for m in names) + " |",
             "|---|---:|" + "---:|" * len(names)]
    for clip, means in result["clips"].items():
        lines.append(f"| {clip} | {result['clip_info'][clip]['frames']} | "
                     + " | ".join(_fmt(means.get(m)) for m in names) + " |")
    lines.append(f"| **mean** | {result['n_frames']} | "
                 + " | ".join(_fmt(result["dataset"].get(m)) for m in names) + " |")
    return "\n".join(lines) + "\n"


def compare_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    """Several evaluations side by side: one row per method (the caller's names), dataset means as columns."""
    names = [m for m in (*M.ALPHA, *M.FGR, *M.HAIR, *M.OTHERS) if any(m in r["dataset"] for r in results.values())]
    settings = sorted({f"protocol {r['protocol']}, resolution {_resolution(r)}" for r in results.values()})
    lines = ["; ".join(settings) + " (Grad and Conn grow with resolution)", "",
             "| method | " + " | ".join(LABELS[m] for m in names) + " |", "|---|" + "---:|" * len(names)]
    for method, r in results.items():
        lines.append(f"| {method} | " + " | ".join(_fmt(r["dataset"].get(m)) for m in names) + " |")
    return "\n".join(lines) + "\n"


def _json_safe(x: Any) -> Any:
    """NaN (a metric undefined for a clip, e.g. no hair in it) becomes null: JSON has no NaN."""
    if isinstance(x, float) and math.isnan(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _csv_value(v: float | None) -> str | float:
    return "" if v is None or math.isnan(v) else v


def plot_frames(result: Mapping[str, Any], path: Path) -> Path:
    """One panel per alpha metric, one line per clip, over frame index."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [m for m in result["metrics"] if m.startswith("pha_")]
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3 * rows), squeeze=False)
    for ax, m in zip(axes.flat, names):
        for clip, per in result["frames"].items():
            ax.plot(per[m], lw=0.9, label=clip)
        ax.set(title=LABELS[m], xlabel="frame")
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    if len(result["frames"]) <= 12:
        axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"protocol {result['protocol']}, {_resolution(result)}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_report(result: Mapping[str, Any], report: str | Path) -> dict[str, Path]:
    """The JSON at `report` and, with its stem, the per-frame and per-clip CSVs, Markdown table and plot."""
    report = Path(report)
    paths = {"json": report, "frames_csv": report.with_name(report.stem + "_frames.csv"),
             "clips_csv": report.with_name(report.stem + "_clips.csv"), "markdown": report.with_suffix(".md"),
             "plot": report.with_suffix(".png")}
    names = result["metrics"]
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        paths["json"].write_text(json.dumps(_json_safe(result), indent=1) + "\n")
        with paths["frames_csv"].open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["clip", "frame", *names])
            for clip, per in result["frames"].items():
                n = result["clip_info"][clip]["frames"]
                w.writerows([clip, t, *(_csv_value(per[m][t]) if m in per else "" for m in names)] for t in range(n))
        with paths["clips_csv"].open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["clip", "frames", "resolution", *names])
            for clip, means in result["clips"].items():
                info = result["clip_info"][clip]
                w.writerow([clip, info["frames"], info["resolution"], *(_csv_value(means.get(m)) for m in names)])
        paths["markdown"].write_text(markdown_table(result))
        plot_frames(result, paths["plot"])
    except OSError as e:
        raise UserError(f"report {report}: cannot be written ({e.strerror or e})") from None
    return paths


@app("evaluate")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    for key in ("pred", "gt"):
        if not c[key]:
            raise UserError(f"{key} is not set: pass {key}=<folder with <clip>/pha/*.png>")
    writable(c["output"], "output", folder=False)   # before the scoring, not after it
    result = evaluate(c["pred"], c["gt"], c["protocol"], c["metrics"], c["workers"], c["progress"], c["threads"],
                      c["truth_cache_mb"])
    paths = write_report(result, c["output"])
    print(markdown_table(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    main()
