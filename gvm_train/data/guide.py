"""Coarse person masks made from the true alpha, for training a mask-guided model.

At inference the mask comes from a segmenter, from given masks or from a pseudo-label: binary or
soft, too fat or too thin, blocky, with a polygon outline, holes or stray blobs, a frame late or
missing. Training masks are the true alpha put through the same kinds of damage, each drawn per
window from `data.guide_mask` (conf/data/default.yaml), so the model learns to take the mask's
rough shape and find the real edge itself. A window's damage is a pure function of (seed, index).
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from core import seeds
from core.checks import require_keys
from core.ranges import draw, number
from matting.image import disc

KEYS = ("light", "threshold", "threshold_jitter", "morph_px", "jitter_px", "polygon", "polygon_px", "holes",
        "hole_count", "hole_size", "down", "blur_sigma", "stale", "empty")


def check(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The section with every key present; each range is drawn once so a bad one is named now."""
    c = require_keys(cfg, KEYS, "data.guide_mask")
    rng = np.random.default_rng(0)
    for k in KEYS:
        number(c[k], rng, f"data.guide_mask.{k}")
    return c


def rng_for(seed: int, index: int) -> np.random.Generator:
    """The damage of window `index`: its own stream, apart from the window's crop and colour draws."""
    return np.random.default_rng(seeds.derive(seed, "guide_mask", index) % 2**63)


def degrade(alpha: np.ndarray, cfg: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
    """True alpha (T, H, W) in [0, 1] -> a coarse mask (T, H, W) float32 in [0, 1]."""
    c = cfg
    t, h, w = alpha.shape
    # A light window (a good segmenter, a pseudo-label) keeps the outline: no morphology, polygon,
    # holes or down-sampling, only its threshold, softening and frame-to-frame flicker.
    light = rng.random() < number(c["light"], rng, "light")
    level = number(c["threshold"], rng, "threshold")
    level_jitter = number(c["threshold_jitter"], rng, "threshold_jitter")
    morph = 0 if light else int(round(number(c["morph_px"], rng, "morph_px")))
    jitter = number(c["jitter_px"], rng, "jitter_px")
    polygon = not light and rng.random() < number(c["polygon"], rng, "polygon")
    tolerance = number(c["polygon_px"], rng, "polygon_px")
    holes = _holes(rng, c, h, w) if not light and rng.random() < number(c["holes"], rng, "holes") else []
    down = 1 if light else max(1, int(draw(c["down"], rng, "down")))
    sigma = number(c["blur_sigma"], rng, "blur_sigma")
    stale_p, empty_p = number(c["stale"], rng, "stale"), number(c["empty"], rng, "empty")
    out = np.empty((t, h, w), np.float32)
    for i in range(t):
        m = (alpha[i] > np.clip(level + rng.uniform(-level_jitter, level_jitter), 0.01, 0.99)).astype(np.uint8)
        grow = morph + int(round(rng.uniform(-jitter, jitter)))   # the window's bias and this frame's flicker
        if grow:
            m = (cv2.dilate if grow > 0 else cv2.erode)(m, disc(abs(grow)))
        if polygon:
            m = _polygon(m, tolerance)
        for (cy, cx, ry, rx, value) in holes:   # the same holes on every frame, as a segmenter's blind spot
            cv2.ellipse(m, (cx, cy), (rx, ry), 0, 0, 360, int(value), -1)
        f = m.astype(np.float32)
        if down > 1:
            small = cv2.resize(f, (max(1, w // down), max(1, h // down)), interpolation=cv2.INTER_AREA)
            f = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        if sigma > 0:
            f = cv2.GaussianBlur(f, (0, 0), sigma)
        out[i] = f
    for i in range(t):   # a late or a missed frame of the segmenter
        r = rng.random()
        if i > 0 and r < stale_p:
            out[i] = out[i - 1]
        elif r < stale_p + empty_p:
            out[i] = 0.0
    return np.clip(out, 0.0, 1.0)


def _holes(rng: np.random.Generator, c: Mapping[str, Any], h: int, w: int) -> list[tuple[int, int, int, int, int]]:
    """Ellipses that cut holes (value 0) or add stray blobs (value 1)."""
    out = []
    for _ in range(int(draw(c["hole_count"], rng, "hole_count"))):
        size = number(c["hole_size"], rng, "hole_size") * min(h, w)
        out.append((int(rng.integers(h)), int(rng.integers(w)), max(1, int(size * rng.uniform(0.5, 1.0))),
                    max(1, int(size * rng.uniform(0.5, 1.0))), int(rng.random() < 0.3)))
    return out


def _polygon(m: np.ndarray, tolerance: float) -> np.ndarray:
    """The mask's outlines simplified to polygons (Douglas-Peucker, `tolerance` pixels)."""
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(m)
    for cnt in contours:
        cv2.fillPoly(out, [cv2.approxPolyDP(cnt, tolerance, True)], 1)
    return out
