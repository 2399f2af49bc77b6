"""`python -m matting.classical`: the classical matting baseline, a reference row for evaluations.

    python -m matting.classical input=clip.mp4 output_dir=runs/classical/clip

Per frame: mediapipe person segmentation (selfie, or pose for small full-body figures) gives a
coarse person probability; eroding its confident inside and outside leaves an unknown band, a
trimap; closed-form matting (Levin et al., pymatting) solves the band for a soft alpha, and
multi-level foreground estimation (Germer et al., pymatting) the foreground colour. Segmentation
and matting run at most at `max_size` (the closed-form system grows with the pixel count); alpha
is resized back and the foreground estimated at full size, so the colour keeps full detail.
Output: the `writer:` group's layout (matting.video.MatteWriter) and `run.json` last (core.done):
a rerun with the same settings finds it and does nothing.
"""
from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from core import done, quiet, stops
from core.checks import integer, number, require_keys, writable
from core.cli import UserError, app, to_container
from matting import layout, person
from matting.foreground import estimate_foreground
from matting.segment import SEGMENTERS, Segmenter
from matting.trimap import TRIMAP_KEYS, make_trimap
from matting.video import MatteWriter, VideoError, VideoInput, check_output_config, open_input, wants_foreground

CONFIG_KEYS = ("input", "output_dir", "max_frames", "mask", "segmenter", "selfie", "pose", "max_size", "trimap",
               "closed_form", "writer", "verbose")
EXIT_NO_PERSON = 3   # the run finished, but no frame shows a person: the matte is empty
CLOSED_FORM_KEYS = ("epsilon", "radius", "cg_rtol", "cg_maxiter")


ALPHA_METHODS = ("cf", "knn", "lkm", "rw", "sm", "lbdm")   # pymatting's estimate_alpha_<method>


def solve_alpha(frame_rgb: np.ndarray, trimap: np.ndarray, method: str = "cf",
                closed_form: Mapping[str, Any] | None = None) -> np.ndarray:
    """float32 alpha: the trimap's known pixels kept, its unknown band solved by pymatting's
    `method` (closed form with the `closed_form` settings; the others with pymatting's defaults)."""
    import pymatting
    if method not in ALPHA_METHODS:
        raise ValueError(f"method: {method!r} is not one of {', '.join(ALPHA_METHODS)}")
    fg, bg = trimap >= 1.0, trimap <= 0.0
    unknown = ~(fg | bg)
    if not unknown.any():
        return trimap.astype(np.float32)
    if not (fg.any() and bg.any()):
        # One-sided constraints have a constant solution: no confident person -> 0, no background -> 1.
        return np.where(unknown, float(fg.any()), trimap).astype(np.float32)
    image = frame_rgb.astype(np.float64) / 255.0
    with quiet.chatter():  # pymatting prints its preconditioner's performance notes to stdout
        if method == "cf":
            c = require_keys(closed_form, CLOSED_FORM_KEYS, "closed_form")
            alpha = pymatting.estimate_alpha_cf(image, trimap, laplacian_kwargs={"epsilon": c["epsilon"],
                                                "radius": c["radius"]},
                                                cg_kwargs={"rtol": c["cg_rtol"], "maxiter": c["cg_maxiter"]})
        else:
            alpha = getattr(pymatting, f"estimate_alpha_{method}")(image, trimap)
    return np.clip(alpha, 0, 1).astype(np.float32)


def closed_form_alpha(frame_rgb: np.ndarray, trimap: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
    """float32 alpha by closed-form matting (Levin et al.) with the `closed_form` settings."""
    return solve_alpha(frame_rgb, trimap, "cf", cfg)


class ClassicalMatting:
    """Segmentation -> trimap -> closed-form alpha -> foreground, one frame at a time."""

    def __init__(self, cfg: Mapping[str, Any]):
        c = require_keys(cfg, CONFIG_KEYS, "classical")
        if c["segmenter"] not in SEGMENTERS:
            raise ValueError(f"segmenter: {c['segmenter']!r} is not one of {', '.join(SEGMENTERS)}")
        integer(c["max_size"], "max_size", 1)
        if c["max_frames"] is not None:
            integer(c["max_frames"], "max_frames", 1)
        t = require_keys(c["trimap"], TRIMAP_KEYS, "trimap")
        number(t["bg_threshold"], "trimap.bg_threshold", 0, 1)
        number(t["fg_threshold"], "trimap.fg_threshold", t["bg_threshold"], 1)
        number(t["fg_erode"], "trimap.fg_erode", 0, 1)
        number(t["bg_dilate"], "trimap.bg_dilate", 0, 1)
        f = require_keys(c["closed_form"], CLOSED_FORM_KEYS, "closed_form")
        number(f["epsilon"], "closed_form.epsilon", 0, above=True)
        integer(f["radius"], "closed_form.radius", 1)
        number(f["cg_rtol"], "closed_form.cg_rtol", 0, above=True)
        integer(f["cg_maxiter"], "closed_form.cg_maxiter", 1)
        self.cfg = c
        # Given masks (one person of several, say) take the segmenter's place: it is never built then.
        self._segment = Segmenter(c["segmenter"], c[c["segmenter"]]) if c.get("mask") is None else None

    def __enter__(self) -> ClassicalMatting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._segment is not None:
            self._segment.close()

    def alpha(self, frame_rgb: np.ndarray, person: np.ndarray | None = None) -> np.ndarray:
        """float32 (H, W) alpha in [0, 1]; `person` (H, W) in [0, 1]: the person map to use in place of
        the segmenter's (a given mask)."""
        h, w = frame_rgb.shape[:2]
        scale = min(1.0, self.cfg["max_size"] / max(h, w))
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = frame_rgb if scale == 1.0 else cv2.resize(frame_rgb, size, interpolation=cv2.INTER_AREA)
        if person is None:
            person = self._segment(small)
        elif scale != 1.0:
            person = cv2.resize(person.astype(np.float32), size, interpolation=cv2.INTER_AREA)
        trimap = make_trimap(person, self.cfg["trimap"])
        alpha = closed_form_alpha(small, trimap, self.cfg["closed_form"])
        return alpha if scale == 1.0 else np.clip(cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)

    def __call__(self, frame_rgb: np.ndarray, person: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(alpha float32 (H, W), foreground uint8 (H, W, 3)) of one RGB frame."""
        alpha = self.alpha(frame_rgb, person)
        return alpha, estimate_foreground(frame_rgb, alpha, self.cfg["writer"]["foreground"])


def settings(c: Mapping[str, Any]) -> dict[str, Any]:
    """What decides a run's output: a finished run with the same settings (run.json) is not redone."""
    return {"method": "classical", **{k: c[k] for k in CONFIG_KEYS if k not in ("output_dir", "verbose")},
            "input": str(c["input"])}


def _n_frames(video: VideoInput, max_frames: int | None) -> int:
    return video.n_frames if max_frames is None else min(video.n_frames, max_frames)


def _run(video: VideoInput, matting: ClassicalMatting, out: MatteWriter, record: dict[str, Any]) -> dict[str, Any]:
    from tqdm import tqdm
    want_fgr = wants_foreground(out.cfg)
    n = _n_frames(video, matting.cfg["max_frames"])
    t0 = time.perf_counter()
    done.clear(out.out_dir)
    empty = 0   # frames whose matte has no pixel at half coverage or more: no person found
    mask = matting.cfg.get("mask")
    masks = (map(person.read_guide, person.guide_files(mask, Path(video.path), n, video.width, video.height))
             if mask is not None else itertools.repeat(None))
    with out:
        for frame, given in tqdm(zip(video.frames(0, n), masks), total=n, desc="classical matting", unit="frame"):
            alpha, fgr = matting(frame, given) if want_fgr else (matting.alpha(frame, given), None)
            empty += int(alpha.max(initial=0.0) < 0.5)
            out.write(frame, alpha, fgr)
            stops.check()
    record = {**record, "frames": out.n, "frames_without_person": empty, "fps": video.fps, "width": video.width,
              "height": video.height, "seconds": round(time.perf_counter() - t0, 3)}
    done.mark(out.out_dir, record)
    return record


def _writer(video: VideoInput, output_dir: str | Path, out_cfg: Mapping[str, Any]) -> MatteWriter:
    return MatteWriter(output_dir, video.rate, video.width, video.height, out_cfg, n_frames=video.n_frames)


def outcome(r: Mapping[str, Any]) -> tuple[str, int]:
    """The summary line of a finished run and its exit status (EXIT_NO_PERSON when no frame had one)."""
    line = (f"{r['frames']} frames of {r['input']} ({r['width']}x{r['height']}) matted in {r['seconds']:.1f} s "
            f"({r['frames'] / max(r['seconds'], 1e-9):.2f} frames/s)")
    empty = r.get("frames_without_person", 0)
    if r["frames"] and empty == r["frames"]:
        return f"{line}; no person found in any frame: the matte is empty", EXIT_NO_PERSON
    return line + (f"; no person found in {empty} of them" if empty else ""), 0


def matte_folder(input: str | Path, output_dir: str | Path, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Matte a whole video or frame folder into output_dir (unless run.json says it already holds
    this run); returns the run record (settings, frames, seconds)."""
    record = settings({**cfg, "input": input})
    if done.is_done(output_dir, record):
        return done.read(output_dir)
    video = open_input(input, fps=check_output_config(cfg["writer"])["folder_fps"])
    with ClassicalMatting(cfg) as matting:
        return _run(video, matting, _writer(video, output_dir, cfg["writer"]), record)


def _matte_one(c: dict) -> int:
    """One input into c["output_dir"]: its summary line printed, its exit status returned."""
    out = writable(c["output_dir"], "output_dir")
    record = settings(c)
    if done.is_done(out, record):
        print(f"{out}: already matted with these settings (run.json); nothing to do")
        return outcome(done.read(out))[1]
    try:  # everything the user gave is checked before the first frame is matted
        video = open_input(c["input"], fps=check_output_config(c["writer"])["folder_fps"])
        if c["mask"] is not None:
            person.guide_files(c["mask"], Path(video.path), _n_frames(video, c["max_frames"]), video.width, video.height)
        matting = ClassicalMatting(c)
    except (ValueError, VideoError) as e:
        raise UserError(str(e)) from None
    with matting:
        try:
            writer = _writer(video, out, c["writer"])
        except ValueError as e:  # codec settings FFmpeg refuses
            raise UserError(f"writer: {e}") from None
        try:
            r = _run(video, matting, writer, record)
        except VideoError as e:  # a frame of a folder that fails to decode mid-way
            raise UserError(str(e)) from None
    line, code = outcome(r)
    print(f"{line} -> {out}")
    return code


@app("classical")
def main(cfg) -> int:
    c = to_container(cfg)
    if not c.get("input"):
        raise UserError("input: give a video file, a frame folder or a benchmark set (input=PATH; input=sample: "
                        "the bundled clip)")
    clips = layout.set_clips(c["input"])
    if not clips:
        return _matte_one(c)
    # A benchmark set (<set>/<clip>/com/): each clip into <output_dir>/<clip>/, the layout evaluate reads.
    writable(c["output_dir"], "output_dir")
    codes = []
    for i, clip in enumerate(clips, 1):
        print(f"clip {i}/{len(clips)}: {clip.name}", flush=True)
        mask = None if c["mask"] is None else layout.clip_masks(c["mask"], clip.name)
        codes.append(_matte_one({**c, "input": str(clip / layout.COM), "mask": mask,
                                 "output_dir": str(Path(c["output_dir"]) / clip.name)}))
    print(f"{len(clips)} clips of {c['input']} matted -> {c['output_dir']}; score them with\n"
          f"  python -m matting.evaluate pred={c['output_dir']} gt={c['input']}")
    return EXIT_NO_PERSON if all(codes) else 0


if __name__ == "__main__":
    main()
