"""Backgrounds to composite foregrounds onto: procedural ones (the default; nothing is
downloaded) or a folder of images and videos. Every background is a (T, H, W, 3) float32 sRGB
video in [0, 1], drawn deterministically from the generator it is given.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from core.ranges import draw
from matting.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, open_input


def _pan(canvas: np.ndarray, t: int, size: int, rng: np.random.Generator, pan_px: float) -> np.ndarray:
    """T crops of `size` sliding across a larger still canvas: a camera drifting over a scene."""
    h, w = canvas.shape[:2]
    angle = rng.uniform(0, 2 * np.pi)
    step = pan_px * np.array([np.sin(angle), np.cos(angle)])
    travel = np.abs(step) * max(t - 1, 0)
    y0 = rng.uniform(0, max(h - size - travel[0], 0)) + (travel[0] if step[0] < 0 else 0)
    x0 = rng.uniform(0, max(w - size - travel[1], 0)) + (travel[1] if step[1] < 0 else 0)
    out = np.empty((t, size, size, 3), np.float32)
    for i in range(t):
        m = np.float32([[1, 0, -(x0 + step[1] * i)], [0, 1, -(y0 + step[0] * i)]])
        out[i] = cv2.warpAffine(canvas, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out


def procedural_canvas(side: int, rng: np.random.Generator, cfg: dict[str, Any]) -> np.ndarray:
    """A still scene: a colour gradient, soft blobs, hard-edged shapes, blur and grain."""
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / side
    c0, c1 = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    d = rng.normal(size=2)
    g = np.clip((x * d[0] + y * d[1] - min(0, d[0]) - min(0, d[1])) / (abs(d[0]) + abs(d[1]) + 1e-6), 0, 1)
    img = c0 * (1 - g[..., None]) + c1 * g[..., None]
    for _ in range(int(draw(cfg["blobs"], rng, "data.backgrounds.procedural.blobs"))):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.4)
        wgt = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None] * rng.uniform(0.3, 1.0)
        img = img * (1 - wgt) + rng.uniform(0, 1, 3) * wgt
    for _ in range(int(draw(cfg["shapes"], rng, "data.backgrounds.procedural.shapes"))):
        colour = tuple(float(v) for v in rng.uniform(0, 1, 3))
        p = (rng.uniform(0, side, 2)).astype(int)
        if rng.uniform() < 0.5:
            q = (p + rng.uniform(side * 0.05, side * 0.5, 2)).astype(int)
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in q), colour, -1)
        else:
            cv2.circle(img, tuple(int(v) for v in p), int(rng.uniform(side * 0.03, side * 0.25)), colour, -1)
    img = img.astype(np.float32)
    sigma = float(draw(cfg["blur_sigma"], rng, "data.backgrounds.procedural.blur_sigma"))
    if sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, float(draw(cfg["noise"], rng, "data.backgrounds.procedural.noise")), img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


class Backgrounds:
    """Draws a (T, size, size, 3) background video for a window."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.files: list[Path] = []
        if cfg["kind"] == "folder":
            if not cfg.get("folder") or not Path(cfg["folder"]).is_dir():
                raise ValueError(f"data.backgrounds.folder {cfg.get('folder')!r} is not a folder")
            self.files = sorted(p for p in Path(cfg["folder"]).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES)
            if not self.files:
                raise ValueError(f"data.backgrounds.folder {cfg['folder']} holds no images or videos")
        elif cfg["kind"] != "procedural":
            raise ValueError(f"data.backgrounds.kind must be procedural or folder, got {cfg['kind']!r}")

    def __call__(self, t: int, size: int, rng: np.random.Generator) -> np.ndarray:
        pan = float(draw(self.cfg["pan_px"], rng, "data.backgrounds.pan_px"))
        if not self.files:
            canvas = procedural_canvas(int(size * 1.5), rng, self.cfg["procedural"])
            return _pan(canvas, t, size, rng, pan)
        path = self.files[int(rng.integers(len(self.files)))]
        if path.suffix.lower() in IMAGE_SUFFIXES:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"background {path} is not a readable image")
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32) / 255
            scale = 1.5 * size / min(img.shape[:2])
            img = cv2.resize(img, (max(size, round(img.shape[1] * scale)), max(size, round(img.shape[0] * scale))),
                             interpolation=cv2.INTER_AREA)
            return _pan(img, t, size, rng, pan)
        return _video(path, t, size, rng)


def _video(path: Path, t: int, size: int, rng: np.random.Generator) -> np.ndarray:
    try:
        video = open_input(path)
    except ValueError as e:
        raise ValueError(f"background {e}") from None
    start = int(rng.integers(max(video.n_frames - t, 0) + 1))
    frames = list(video.frames(start, min(start + t, video.n_frames)))
    clip = [frames[min(i, len(frames) - 1)] for i in range(t)]
    h, w = clip[0].shape[:2]
    side = min(h, w)
    y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
    return np.stack([cv2.resize(f[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)
                     for f in clip]).astype(np.float32) / 255
