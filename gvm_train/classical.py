"""`python -m gvm_train.classical`: the classical matting baseline, a reference row for evaluations.

    python -m gvm_train.classical input=clip.mp4 output_dir=runs/classical/clip

Per frame: mediapipe person segmentation (selfie, or pose for small full-body figures) gives a
coarse person probability; eroding its confident inside and outside leaves an unknown band, a
trimap; closed-form matting (Levin et al., pymatting) solves the band for a soft alpha, and
multi-level foreground estimation (Germer et al., pymatting) the foreground colour. Segmentation
and matting run at most at `max_size` (the closed-form system grows with the pixel count); alpha
is resized back and the foreground estimated at full size, so the colour keeps full detail.
Output: the `writer:` group's layout (gvm_train.video.MatteWriter).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np

from gvm_train.config import require_keys
from gvm_train.video import MatteWriter, VideoError, VideoInput, check_output_config, open_input, wants_foreground
from pipelines.cli import UserError, app, to_container

CONFIG_KEYS = ("input", "output_dir", "segmenter", "selfie", "pose", "max_size", "trimap", "closed_form", "writer")
TRIMAP_KEYS = ("fg_threshold", "bg_threshold", "fg_erode", "bg_dilate")
CLOSED_FORM_KEYS = ("epsilon", "radius", "cg_rtol", "cg_maxiter")
SEGMENTERS = ("selfie", "pose")


def estimate_foreground(frame_rgb: np.ndarray, alpha: np.ndarray, cfg: Mapping[str, Any] | None = None) -> np.ndarray:
    """uint8 foreground colour for a frame and its matte; extends colour into alpha=0 (no dark fringes).

    `cfg` is the `writer.foreground` block (estimate_foreground_ml's settings); None: pymatting's defaults.
    """
    from pymatting import estimate_foreground_ml
    fg = estimate_foreground_ml(frame_rgb.astype(np.float64) / 255.0, np.clip(alpha, 0, 1).astype(np.float64),
                                **dict(cfg or {}))
    return np.clip(np.rint(fg * 255.0), 0, 255).astype(np.uint8)


def _disc(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def make_trimap(prob: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
    """float64 trimap (1 person, 0 background, 0.5 unknown) from a person probability map.

    Band widths are fractions of the short side, so a trimap means the same at any resolution.
    """
    c = require_keys(cfg, TRIMAP_KEYS, "trimap")
    side = min(prob.shape)
    fg = cv2.erode((prob > c["fg_threshold"]).astype(np.uint8), _disc(round(c["fg_erode"] * side)))
    # Dilating the person by r is eroding the background by r; erode's border keeps edge pixels as they are.
    bg = cv2.erode((prob < c["bg_threshold"]).astype(np.uint8), _disc(round(c["bg_dilate"] * side)))
    trimap = np.full(prob.shape, 0.5)
    trimap[fg.astype(bool)] = 1.0
    trimap[bg.astype(bool)] = 0.0
    return trimap


def closed_form_alpha(frame_rgb: np.ndarray, trimap: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
    """float32 alpha: the trimap's known pixels kept, its unknown band solved by closed-form matting."""
    from pymatting import estimate_alpha_cf
    c = require_keys(cfg, CLOSED_FORM_KEYS, "closed_form")
    fg, bg = trimap >= 1.0, trimap <= 0.0
    unknown = ~(fg | bg)
    if not unknown.any():
        return trimap.astype(np.float32)
    if not (fg.any() and bg.any()):
        # One-sided constraints have a constant solution: no confident person -> 0, no background -> 1.
        return np.where(unknown, float(fg.any()), trimap).astype(np.float32)
    alpha = estimate_alpha_cf(frame_rgb.astype(np.float64) / 255.0, trimap,
                              laplacian_kwargs={"epsilon": c["epsilon"], "radius": c["radius"]},
                              cg_kwargs={"rtol": c["cg_rtol"], "maxiter": c["cg_maxiter"]})
    return alpha.astype(np.float32)


class _Segmenter:
    """A mediapipe solution as `frame -> person probability`; models ship in the wheel, no network."""

    def __init__(self, kind: str, cfg: Mapping[str, Any]):
        import mediapipe as mp
        if kind == "selfie":
            self._graph = mp.solutions.selfie_segmentation.SelfieSegmentation(**cfg)
        else:
            self._graph = mp.solutions.pose.Pose(enable_segmentation=True, **cfg)

    def __call__(self, frame_rgb: np.ndarray) -> np.ndarray:
        mask = self._graph.process(frame_rgb).segmentation_mask
        # The pose model gives no mask when it finds nobody; then nothing is foreground.
        return np.zeros(frame_rgb.shape[:2], np.float32) if mask is None else mask

    def close(self) -> None:
        self._graph.close()


class ClassicalMatting:
    """Segmentation -> trimap -> closed-form alpha -> foreground, one frame at a time."""

    def __init__(self, cfg: Mapping[str, Any]):
        c = require_keys(cfg, CONFIG_KEYS, "classical")
        if c["segmenter"] not in SEGMENTERS:
            raise ValueError(f"segmenter: {c['segmenter']!r} is not one of {', '.join(SEGMENTERS)}")
        if not (isinstance(c["max_size"], int) and c["max_size"] > 0):
            raise ValueError(f"max_size: {c['max_size']!r} is not a positive integer")
        require_keys(c["trimap"], TRIMAP_KEYS, "trimap")
        require_keys(c["closed_form"], CLOSED_FORM_KEYS, "closed_form")
        self.cfg = c
        self._segment = _Segmenter(c["segmenter"], c[c["segmenter"]])

    def __enter__(self) -> ClassicalMatting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._segment.close()

    def alpha(self, frame_rgb: np.ndarray) -> np.ndarray:
        """float32 (H, W) alpha in [0, 1]."""
        h, w = frame_rgb.shape[:2]
        scale = min(1.0, self.cfg["max_size"] / max(h, w))
        small = frame_rgb if scale == 1.0 else cv2.resize(
            frame_rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        trimap = make_trimap(self._segment(small), self.cfg["trimap"])
        alpha = closed_form_alpha(small, trimap, self.cfg["closed_form"])
        return alpha if scale == 1.0 else np.clip(cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR), 0, 1)

    def __call__(self, frame_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(alpha float32 (H, W), foreground uint8 (H, W, 3)) of one RGB frame."""
        alpha = self.alpha(frame_rgb)
        return alpha, estimate_foreground(frame_rgb, alpha, self.cfg["writer"]["foreground"])


def _run(video: VideoInput, matting: ClassicalMatting, out: MatteWriter) -> dict[str, Any]:
    from tqdm import tqdm
    want_fgr = wants_foreground(out.cfg)
    t0 = time.perf_counter()
    with out:
        for frame in tqdm(video.frames(), total=video.n_frames, desc="classical matting", unit="frame"):
            if want_fgr:
                out.write(frame, *matting(frame))
            else:
                out.write(frame, matting.alpha(frame))
    return {"frames": out.n, "seconds": time.perf_counter() - t0, "output_dir": str(out.out_dir), "paths": out.paths}


def _writer(video: VideoInput, output_dir: str | Path, out_cfg: Mapping[str, Any]) -> MatteWriter:
    return MatteWriter(output_dir, video.rate, video.width, video.height, out_cfg, n_frames=video.n_frames)


def matte_folder(input: str | Path, output_dir: str | Path, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Matte a whole video or frame folder into output_dir; returns frames, seconds and output paths."""
    video = open_input(input, fps=check_output_config(cfg["writer"])["folder_fps"])
    with ClassicalMatting(cfg) as matting:
        return _run(video, matting, _writer(video, output_dir, cfg["writer"]))


@app("classical")
def main(cfg) -> int:
    c = to_container(cfg)
    if not c.get("input"):
        raise UserError("input: give a video file or a frame folder (input=PATH)")
    out = Path(c["output_dir"])
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir {out} is a file, not a folder")
    try:  # everything the user gave is checked before the first frame is matted
        video = open_input(c["input"], fps=check_output_config(c["writer"])["folder_fps"])
        matting = ClassicalMatting(c)
    except ValueError as e:
        raise UserError(str(e)) from None
    with matting:
        try:
            writer = _writer(video, out, c["writer"])
        except ValueError as e:  # codec settings FFmpeg refuses
            raise UserError(f"writer: {e}") from None
        try:
            r = _run(video, matting, writer)
        except VideoError as e:  # a frame of a folder that fails to decode mid-way
            raise UserError(str(e)) from None
    print(f"{r['frames']} frames of {video.path} ({video.width}x{video.height}) matted in {r['seconds']:.1f} s "
          f"({r['frames'] / max(r['seconds'], 1e-9):.2f} frames/s) -> {out}")
    return 0


if __name__ == "__main__":
    main()
