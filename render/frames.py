"""From Cycles' premultiplied scene-linear RGBA to the store's straight sRGB fgr and linear alpha."""
from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # must precede the cv2 import
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.colour import ALPHA_MAX, linear_to_srgb, luminance, quantise_alpha  # noqa: E402


def read_exr(path: str) -> np.ndarray:
    """RGBA float32 (H, W, 4) from a Blender EXR (premultiplied, scene-linear)."""
    bgra = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if bgra is None or bgra.ndim != 3 or bgra.shape[2] != 4:
        raise OSError(f"cannot read an RGBA EXR from {path}")
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)


def extend_colour(rgb: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill unknown pixels from a push-pull pyramid of the known ones.

    Colour where alpha is 0 is unspecified by the store contract; extending nearby foreground
    colour into it keeps composites free of dark fringes after resizing.
    """
    w = known.astype(np.float32)
    c = rgb.astype(np.float32) * w[..., None]
    levels = []
    while True:
        levels.append((c, w))
        h, wd = w.shape
        if h <= 1 and wd <= 1:
            break
        size = (max(1, wd // 2), max(1, h // 2))
        c, w = cv2.resize(c, size, interpolation=cv2.INTER_AREA), cv2.resize(w, size, interpolation=cv2.INTER_AREA)
    coarse = levels[-1][0] / np.maximum(levels[-1][1], 1e-8)[..., None]
    for c, w in reversed(levels[:-1]):
        up = cv2.resize(coarse, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR)
        # w is the known fraction of each pixel (exactly 0 or 1 at full resolution): known
        # colour where there is weight, the coarser estimate where there is none.
        known_colour = c / np.maximum(w, 1e-8)[..., None]
        coarse = w[..., None] * known_colour + (1.0 - w[..., None]) * up
    return coarse


def exposure_gain(rgba: np.ndarray, target: float, limit: float, highlight: float, percentile: float) -> float:
    """The factor on linear colour that brings the median luminance of the fully covered pixels
    (the person, straight colour there) to `target`, as a camera exposing for its subject would,
    unless that would push the `percentile`-th brightest channel value of those pixels above
    `highlight` (sunlit skin beside dark hair and clothes): then the highlights decide, as a
    camera protecting them would. At most `limit` either way."""
    covered = rgba[..., 3] > 0.99
    if not covered.any():
        return 1.0
    straight = rgba[..., :3][covered] / rgba[..., 3][covered][:, None]
    median = float(np.median(luminance(straight)))
    peak = float(np.percentile(straight.max(axis=1), percentile))
    gain = min(target / max(median, 1e-6), highlight / max(peak, 1e-6))
    return float(np.clip(gain, 1 / limit, limit))


def to_store(rgba: np.ndarray, coverage: np.ndarray | None = None,
             min_alpha: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied linear colour (T,H,W,4) and coverage (T,H,W) -> fgr uint8 straight sRGB, alpha uint16.

    Colour is un-premultiplied by the colour pass's own alpha; the stored alpha is `coverage`
    (a separate, better-sampled alpha pass) when given, else that same alpha. Where the colour
    pass's alpha is below `min_alpha`, dividing the (denoised) colour by a few noisy samples of
    alpha gives speckles, so such pixels take colour extended from their neighbours instead.
    """
    own = np.clip(rgba[..., 3], 0.0, 1.0)
    alpha16 = quantise_alpha(own if coverage is None else coverage)
    fgr = np.empty(rgba.shape[:3] + (3,), np.uint8)
    for t in range(rgba.shape[0]):
        known = (own[t] * ALPHA_MAX >= 1) & (own[t] >= min_alpha)
        straight = rgba[t, ..., :3] / np.maximum(own[t], 1e-8)[..., None]
        filled = extend_colour(np.where(known[..., None], straight, 0.0), known)
        fgr[t] = np.round(linear_to_srgb(filled) * 255.0).astype(np.uint8)
    return fgr, alpha16


def plate_to_store(rgb: np.ndarray) -> np.ndarray:
    """A linear background plate (T,H,W,3), opaque, as the store's sRGB uint8."""
    return np.round(linear_to_srgb(np.clip(rgb, 0.0, 1.0)) * 255.0).astype(np.uint8)
