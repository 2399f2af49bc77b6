"""`python -m pipelines.pseudolabel`: real videos become scored, stabilised alpha + foreground clips.

    python -m pipelines.pseudolabel input=videos/ store.path=data/synth.zarr
    python -m pipelines.pseudolabel input=clip.mp4 masks=davis/Annotations/480p instance=1
    python -m pipelines.pseudolabel input=davis/JPEGImages/480p masks=davis/Annotations/480p instance=each
    python -m pipelines.pseudolabel input=videos/ labeler=gvm checkpoint=outputs/finetune/run/model

Each video (a file, every video of a folder, or a folder of frames) is cut into `clip.seconds`
windows; each window is labelled by matting.pseudo (person from the segmenter, the user's masks
or a fine-tuned model; person-scaled trimap; pymatting; flow-guided stabilisation; guided-filter
upsampling; straight foreground) and scored without ground truth (matting.quality). Windows
scoring at least `quality.min_score` are written to the store as `source: "pseudo"` clips; the
rest are listed with their score. Work is recorded beside the store, in `<store>.pseudolabel/`:
a video whose `run.json` (core.done) names these settings is skipped, and within a video every
clip already complete in the store, or already rejected with these settings, is skipped. Nothing
already in the store changes. Bad videos (undecodable, empty, no person, masks of the wrong
size or count) are reported by name while the others go on; the exit status is then 1.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from omegaconf import DictConfig

import clipstore
from clipstore.failures import log_beside, record
from clipstore.location import beside
from core import done, provenance, stops
from core.checks import writable
from core.cli import UserError, app, to_container
from core.colour import quantise_alpha
from matting import person as people
from matting import pseudo
from matting.image import resize
from matting.segment import SEGMENTERS, Segmenter
from matting.video import VideoError, VideoInput, open_input, resolve_input, video_name
from pipelines import contact_sheet, jobs
from pipelines.table import columns

EXIT_VIDEOS_FAILED = 1
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".y4m")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
LABELERS = ("classical", "gvm")
SETTINGS = ("labeler", "checkpoint", "refine", "gvm", "segmenter", "auto", "selfie", "pose", "masks", "instance",
            "people", "person_threshold", "min_person", "max_size", "trimap", "method", "closed_form", "upsample",
            "temporal", "quality", "clip")


def find_videos(path: str | Path) -> list[Path]:
    """The videos an input names: a file; a folder's video files; a folder of frames (one video); or
    `sample`, the bundled real clip."""
    p = resolve_input(path)
    if not p.exists():
        raise UserError(f"input: {p} does not exist")
    if p.is_file():
        return [p]
    files = sorted(f for f in p.iterdir() if f.is_file())
    videos = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
    if videos:
        return videos
    if any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
        return [p]
    raise UserError(f"input: {p} holds no videos ({', '.join(VIDEO_SUFFIXES)}) and no frames ({', '.join(IMAGE_SUFFIXES)})")


def windows(n_frames: int, fps: float, clip: dict) -> list[tuple[int, int]]:
    """[start, stop) frame windows of `clip.seconds`, `clip.overlap` seconds shared, a last window
    shorter than `clip.min_seconds` dropped."""
    length = max(1, round(clip["seconds"] * fps))
    step = max(1, length - round(clip["overlap"] * fps))
    shortest = max(1, round(clip["min_seconds"] * fps))
    out = []
    for start in range(0, n_frames, step):
        stop = min(start + length, n_frames)
        if stop - start >= shortest:
            out.append((start, stop))
        if stop == n_frames:
            break
    return out


def content_sha256(path: Path) -> str:
    """A video file's sha256, or a frame folder's: over its frame names and bytes in order."""
    if path.is_file():
        return provenance.sha256(path)
    return provenance.sha256(sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES), names=True)


def video_key(path: Path, sha: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]+", "_", video_name(path)).strip("_")[:40] or "video"
    return f"pseudo-{stem}-{sha[:8]}"


def check(c: dict) -> dict:
    """Every value the user gave, checked before the first frame is read."""
    if not c.get("input"):
        raise UserError("input: give a video file, a folder of videos or a folder of frames (input=PATH)")
    if not c["store"].get("path"):
        raise UserError("store.path: give the store to write the pseudo clips into")
    if c["labeler"] not in LABELERS:
        raise UserError(f"labeler: {c['labeler']!r} is not one of {', '.join(LABELERS)}")
    if c["labeler"] == "gvm" and not (c["checkpoint"] and Path(c["checkpoint"]).is_dir()):
        raise UserError(f"checkpoint: labeler=gvm needs the model folder gvm_train.finetune wrote, got {c['checkpoint']!r}")
    if c["labeler"] == "gvm":   # the model loads now, once for the run: a broken folder is one line, not one per video
        from gvm_train.pipeline import window_starts
        pipe = Model.load(c["checkpoint"])
        try:
            window_starts(1, int(c["gvm"]["window"] or pipe.unet.config.num_frames), c["gvm"]["overlap"])
        except ValueError as e:
            raise UserError(f"gvm: {e} (gvm.window null: the model's {pipe.unet.config.num_frames})") from None
    if c["segmenter"] not in ("best", "auto", *SEGMENTERS):
        raise UserError(f"segmenter: {c['segmenter']!r} is not one of best, auto, {', '.join(SEGMENTERS)}")
    if c["masks"] is not None and not Path(c["masks"]).is_dir():
        raise UserError(f"masks: {c['masks']} is not a folder")
    if c["instance"] not in (None, "each") and not (isinstance(c["instance"], int) and not isinstance(c["instance"], bool)
                                                    and c["instance"] > 0):
        raise UserError(f"instance: {c['instance']!r} is not a positive object id or each")
    cl = c["clip"]
    if not all(isinstance(cl[k], (int, float)) for k in ("seconds", "overlap", "min_seconds")) \
            or not (cl["seconds"] > 0 and 0 <= cl["overlap"] < cl["seconds"] and 0 < cl["min_seconds"] <= cl["seconds"]):
        raise UserError(f"clip: seconds > 0, 0 <= overlap < seconds and 0 < min_seconds <= seconds, got {cl}")
    if c["people"] not in people.RULES:
        raise UserError(f"people: {c['people']!r} is not one of {', '.join(people.RULES)}")
    try:
        pseudo.check(c)
    except ValueError as e:
        raise UserError(str(e)) from None
    return c


def settings(c: dict) -> dict[str, Any]:
    """What decides the labels (recorded with every clip; a change relabels what is not yet done)."""
    return {"tool": "pipelines.pseudolabel", **{k: c[k] for k in SETTINGS}, "foreground": c["writer"]["foreground"]}


# --- where the person is ----------------------------------------------------------------------------

def choose_segmenter(video: VideoInput, size: tuple[int, int], c: dict) -> str:
    """`segmenter` as given, or for auto: selfie when the person (measured by selfie segmentation
    on a few frames spread over the video) covers at least `auto.pose_below` of the frame, else pose."""
    if c["segmenter"] != "auto":
        return c["segmenter"]
    picks = sorted(set(np.linspace(0, video.n_frames - 1, c["auto"]["probe_frames"]).round().astype(int).tolist()))
    shares = []
    with Segmenter("selfie", c["selfie"]) as seg:
        for i in picks:   # seek to each (the reader's frame access is exact), not decode the whole video
            frame = next(video.frames(i, i + 1))
            shares.append(float((seg(resize(frame, size)) > c["person_threshold"]).mean()))
    return "selfie" if np.median(shares) >= c["auto"]["pose_below"] else "pose"


class PersonSource:
    """(T, h, w) float person maps at the working size for a window of frames."""
    name: str

    def __call__(self, frames: np.ndarray, start: int, size: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Segmented(PersonSource):
    def __init__(self, kind: str, c: dict):
        self.name, self._seg = kind, Segmenter(kind, c[kind])

    def __call__(self, frames, start, size):
        return np.stack([self._seg(resize(f, size)) for f in frames]).astype(np.float32)

    def close(self) -> None:
        self._seg.close()


class _Lazy(PersonSource):
    """A source built on first use (a mask-free model never builds its guide's segmenter)."""
    def __init__(self, make):
        self._make, self._source, self.name = make, None, "segmenter"

    def __call__(self, frames, start, size):
        self._source = self._source or self._make()
        self.name = self._source.name
        return self._source(frames, start, size)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


class Masked(PersonSource):
    def __init__(self, files: list[Path], instance: int | None, masks_dir: str):
        self.name, self._files, self._instance = f"masks:{masks_dir}", files, instance

    def __call__(self, frames, start, size):
        import cv2
        ms = people.masks(self._files, start, start + len(frames), self._instance)
        return np.stack([cv2.resize(m.astype(np.float32), size, interpolation=cv2.INTER_NEAREST) for m in ms])


class Model(PersonSource):
    """A fine-tuned gvm_train model's alpha (GVMPipeline, any length), as the person map. A
    mask-guided model is guided by `guide` (the user's masks, or the segmenter)."""
    _pipes: dict[str, Any] = {}

    @classmethod
    def load(cls, checkpoint: str) -> Any:
        """The model folder's pipeline, loaded once per process; a folder that is not one is a UserError."""
        if checkpoint not in cls._pipes:
            from gvm_train.infer import load_pipeline
            import torch
            cls._pipes[checkpoint] = load_pipeline(checkpoint, torch.device("cpu"), torch.float32)
        return cls._pipes[checkpoint]

    def __init__(self, checkpoint: str, g: dict, guide: PersonSource | None = None):
        self.name, self._pipe, self._g = f"gvm:{checkpoint}", self.load(checkpoint), g
        self._guide = guide if self._pipe.model.config.mask_guided else None
        if self._guide is not None:
            self.name += f" guided by {guide.name}"

    def __call__(self, frames, start, size):
        masks = None
        if self._guide is not None:
            masks = iter(self._guide(frames, start, (frames.shape[2], frames.shape[1])))
        alphas = self._pipe.stream(iter(frames), len(frames), masks=masks, window=self._g["window"],
                                   overlap=self._g["overlap"], seed=self._g["seed"], short_side=self._g["short_side"])
        return np.stack([resize(np.asarray(a, np.float32), size) for a in alphas])

    def close(self) -> None:
        if self._guide is not None:
            self._guide.close()


def person_sources(video: VideoInput, path: Path, size: tuple[int, int], c: dict) -> list[PersonSource]:
    """Where the person is, by the labeller: the model (a mask-guided one guided by the user's
    masks or the segmenter), the user's masks, or the segmenter(s); `segmenter=best` gives both,
    and each window keeps the labels that score higher."""
    masked = None
    if c["masks"] is not None:
        files = people.mask_files(c["masks"], path)
        people.check_masks(files, video.n_frames, video.width, video.height, path)
        masked = Masked(files, c["instance"], c["masks"])
    if c["labeler"] == "gvm":
        one = {**c, "segmenter": "auto" if c["segmenter"] == "best" else c["segmenter"]}   # one map guides
        return [Model(c["checkpoint"], c["gvm"], masked or _Lazy(lambda: Segmented(choose_segmenter(video, size, one), c)))]
    if masked is not None:
        return [masked]
    if c["segmenter"] == "best":
        return [Segmented(kind, c) for kind in SEGMENTERS]
    return [Segmented(choose_segmenter(video, size, c), c)]


def label_window(frames: np.ndarray, start: int, sources: list[PersonSource], size: tuple[int, int],
                 c: dict) -> tuple[pseudo.Labels, str, dict[str, float]]:
    """The window's labels from each source (at the working size): the best-scoring one, its
    source's name and every candidate's score."""
    solve = c["labeler"] == "classical" or c["refine"]
    best, name, scores = None, "", {}
    for src in sources:
        labels = pseudo.label(frames, src(frames, start, size), c, c["writer"]["foreground"], solve=solve)
        scores[src.name] = labels.score
        if best is None or labels.score > best.score:
            best, name = labels, src.name
    return best, name, scores


# --- one video --------------------------------------------------------------------------------------

def _attrs(video: VideoInput, path: Path, sha: str, span: tuple[int, int], source: str,
           candidates: dict[str, float], labels: pseudo.Labels, settings: dict) -> dict:
    return {"source": "pseudo", "fps": float(video.fps), "software": provenance.software(),
            "spec": {"n_frames": span[1] - span[0],
                     "input": {"name": path.name, "path": str(path.resolve()), "sha256": sha, "frames": list(span),
                               "fps": float(video.fps), "width": video.width, "height": video.height},
                     "mask_source": source, "candidate_scores": candidates, "working_size": list(labels.size),
                     "settings": settings,
                     "scores": {"clip": labels.score, "frames": labels.frame_scores, "terms": labels.terms},
                     "band_kernel_px": labels.kernels, "person_frames": labels.person_frames}}


def label_video(path: str, c: dict, progress: Callable[[int], None] | None = None) -> dict:
    """Label one video into the store; returns its row: written, rejected (id, score) and skipped
    clips, the mean score, or `error` naming what is wrong with the video."""
    path = Path(path)
    row = _row(path)
    try:
        sha = content_sha256(path)
        key = video_key(path, sha)
        marks = beside(c["store"]["path"], ".pseudolabel", c["store"]["local_dir"]) / key
        want = _json(settings(c))
        record = {"settings": want, "sha256": sha}
        if done.is_done(marks, record):
            prev = done.read(marks)
            return {**prev["row"], "skipped": len(prev["row"]["written"]) + len(prev["row"]["rejected"]),
                    "written": [], "rejected": [], "already": True}
        video = open_input(path, fps=c["writer"]["folder_fps"])
        if video.n_frames == 0:
            raise VideoError(f"{path.name}: no frames")
        spans = windows(video.n_frames, video.fps, c["clip"])
        if not spans:
            raise VideoError(f"{path.name}: {video.n_frames} frames, shorter than clip.min_seconds")
        size = pseudo.working_size(video.width, video.height, c["max_size"])
        root = None   # the store is created by the first clip written: a video that gives none leaves nothing
        complete = (set(clipstore.complete_ids(clipstore.open_store(c["store"]["path"])))
                    if clipstore.creatable(c["store"]["path"]) else set())
        compression = clipstore.Compression.from_config(c["store"])
        any_person = False
        # One clip per window, or with instance=each per window and object id of the masks (DAVIS, YouTube-VOS).
        each = c["instance"] == "each"
        objects = people.instance_ids(people.mask_files(c["masks"], path)) if each else [c["instance"]]
        if each and not objects:
            raise VideoError(f"{path.name}: instance=each, but its masks hold no object ids (palette PNGs)")
        for obj in objects:
            one = {**c, "instance": obj}
            sources: list[PersonSource] = []
            try:
                for k, span in enumerate(spans):
                    stops.check()
                    cid = f"{key}-i{obj}-{k:03d}" if each else f"{key}-{k:03d}"
                    rejected = marks / f"{cid}.rejected.json"
                    if cid in complete or (rejected.is_file() and json.loads(rejected.read_text())["settings"] == want):
                        row["skipped"] += 1
                        any_person = True     # judged before: it had a person, or its rejection says why
                        if progress and obj == objects[-1]:
                            progress(span[1])   # frames of the video covered so far (windows overlap)
                        continue
                    sources = sources or person_sources(video, path, size, one)
                    frames = np.stack(list(video.frames(*span)))
                    if len(frames) != span[1] - span[0]:
                        raise VideoError(f"{path.name}: decoded {len(frames)} frames of {span[0]}..{span[1]}")
                    labels, source, candidates = label_window(frames, span[0], sources, size, one)
                    any_person |= labels.person_frames > 0
                    row["scores"].append(labels.score)
                    if labels.person_frames == 0 or labels.score < c["quality"]["min_score"]:
                        why = "no person" if labels.person_frames == 0 else "score below quality.min_score"
                        marks.mkdir(parents=True, exist_ok=True)
                        rejected.write_text(json.dumps({"clip_id": cid, "score": labels.score, "why": why,
                                                        "frames": list(span), "settings": want}) + "\n")
                        row["rejected"].append((cid, round(labels.score, 3), why))
                    else:
                        alpha, fgr = pseudo.full_size(labels, frames, c, c["writer"]["foreground"])
                        root = root or clipstore.create(c["store"]["path"], {"created_by": "pipelines.pseudolabel"})
                        attrs = _attrs(video, path, sha, span, source, candidates, labels, want)
                        if each:
                            attrs["spec"]["instance"] = obj   # which object of the masks this clip mattes
                        clipstore.write_clip(root, cid, {"fgr": fgr, "alpha": quantise_alpha(alpha)}, attrs, compression)
                        row["written"].append(cid)
                    if progress and obj == objects[-1]:   # the last object's pass counts the frames
                        progress(span[1])
            finally:
                for src in sources:
                    src.close()
        if not any_person:
            raise VideoError(f"{path.name}: no person found in any frame")
        done.mark(marks, {**record, "row": row})
    except (VideoError, clipstore.StoreError) as e:
        stops.check()
        row["error"] = str(e)
    except Exception as e:   # a video FFmpeg cannot decode mid-way, a corrupt mask file: this video only
        stops.check()        # unless a stop became this exception in the code it hit
        row["error"] = f"{path.name}: {type(e).__name__}: {' '.join(str(e).split())[:200]}"
    return row


def _row(path: Path, error: str | None = None) -> dict[str, Any]:
    """A video's line of the summary: clips written, rejected (id, score, why), skipped, scores."""
    return {"video": path.name, "written": [], "rejected": [], "skipped": 0, "scores": [],
            **({"error": error} if error else {})}


def _json(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


# --- many videos ------------------------------------------------------------------------------------

def inspect(videos: list[Path], c: dict) -> dict[Path, int | str]:
    """Each video's frame count, or what is wrong with it (unreadable, damaged, cut short, masks that
    do not match it), found before any labelling: opening a video decodes it through once."""
    out: dict[Path, int | str] = {}
    for v in videos:
        try:
            video = open_input(v, fps=c["writer"]["folder_fps"])
            if c["masks"] is not None:
                people.check_masks(people.mask_files(c["masks"], v), video.n_frames, video.width, video.height, v)
            out[v] = video.n_frames
        except (VideoError, OSError) as e:
            out[v] = str(e)
    return out


def run(videos: list[Path], c: dict, frames: dict[Path, int | str]) -> tuple[list[dict], BaseException | None]:
    """Label `videos`; returns the rows of those finished and the stop that ended the run early
    (Ctrl-C or SIGTERM: the videos under way are dropped, their clips written so far are complete).
    With cluster.workers > 1 each video is a Ray task of the shared job loop (pipelines.jobs); a
    video that fails is kept in the failure log beside the store either way."""
    log = log_beside(c["store"]["path"], c["store"]["local_dir"])
    frames = {v: n if isinstance(n, int) else 0 for v, n in frames.items()}   # progress units
    if c["cluster"]["workers"] > 1 and len(videos) > 1:
        out = jobs.run(label_video, [jobs.Job(v.name, frames[v], (str(v), c)) for v in videos], c["cluster"], log,
                       "pseudo-labelling", noun="videos", show=c["progress"])
        rows = {r["video"]: r for r in out.done}
        rows.update({key: _row(Path(key), f"{key}: {why}") for key, why in out.failed.items()})
        for r in out.done:
            if r.get("error"):
                record(log, out.run, r["video"], r["error"])
        return [rows[v.name] for v in videos if v.name in rows], out.stopped
    from tqdm import tqdm
    bar = tqdm(total=sum(frames.values()), desc="pseudo-labelling", unit="frame", disable=not c["progress"])
    run_id, rows = f"{time.strftime('%Y%m%dT%H%M%S')}-serial", []
    try:
        for v in videos:
            done = bar.n
            rows.append(label_video(str(v), c, lambda n: bar.update(done + n - bar.n)))
            if rows[-1].get("error"):
                record(log, run_id, v.name, rows[-1]["error"])
        return rows, None
    except BaseException as e:
        if not stops.stopping(e):
            raise
        return rows, e
    finally:
        bar.close()


def table(rows: list[dict]) -> str:
    head = ("video", "written", "rejected", "skipped", "score", "notes")
    body = []
    for r in rows:
        score = f"{np.mean(r['scores']):.3f}" if r.get("scores") else "-"
        notes = r.get("error") or ("already labelled with these settings" if r.get("already") else
                                   "; ".join(f"{cid} {s:.3f} ({why})" for cid, s, why in r["rejected"]))
        body.append((r["video"], str(len(r["written"])), str(len(r["rejected"])), str(r["skipped"]), score, notes))
    return columns(head, body)


@app("pseudolabel")
def main(cfg: DictConfig) -> int:
    c = check(to_container(cfg))
    clipstore.location.configure(c["store"]["path"], c["store"]["options"])
    videos = find_videos(c["input"])
    found = inspect(videos, c)
    broken = [why for why in found.values() if isinstance(why, str)]
    if len(broken) == len(videos):   # nothing to label: the (first) reason, before anything is made
        raise UserError(broken[0] + (f" (and {len(broken) - 1} more videos that cannot be labelled)" if len(broken) > 1 else ""))
    try:   # an existing path must be a store of this format, a new one a place it can be made: before any work
        if not clipstore.creatable(c["store"]["path"]):
            writable(c["store"]["path"], "store.path")
        writable(beside(c["store"]["path"], ".pseudolabel", c["store"]["local_dir"]), "store.path (its .pseudolabel folder beside it)")
    except clipstore.StoreError as e:
        raise UserError(str(e)) from None
    start = time.perf_counter()
    rows, stopped = run(videos, c, found)   # a broken video among good ones is named in the table
    print(table(rows))
    written = [cid for r in rows for cid in r["written"]]
    failed = [r for r in rows if r.get("error")]
    n = sum(len(r["written"]) + len(r["rejected"]) for r in rows)
    print(f"{len(videos)} video(s): {len(written)} clips written, {sum(len(r['rejected']) for r in rows)} rejected, "
          f"{sum(r['skipped'] for r in rows)} already done, {len(failed)} failed, in {time.perf_counter() - start:.0f} s"
          + (f" ({n} clips labelled)" if n else "") + f" -> {c['store']['path']}")
    if stopped is not None:   # the manifest and sheet wait for the run that finishes
        print(f"stopped with {len(videos) - len(rows)} video(s) not finished", flush=True)
        raise stopped
    if written:
        clipstore.finalize(c["store"]["path"])        # the manifest and consolidated metadata, as a render run
        sheet = beside(c["store"]["path"], ".pseudolabel", c["store"]["local_dir"]) / "contact_sheet.png"
        sh = c["sheet"]
        contact_sheet.write(clipstore.open_store(c["store"]["path"]), sheet, sh["clips"], sh["frames"], sh["cell"], 0,
                            ids=written)
        print(f"contact sheet: {sheet}")
    return EXIT_VIDEOS_FAILED if failed else 0


if __name__ == "__main__":
    main()
