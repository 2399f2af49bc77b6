"""Reading what Cycles wrote, and the colour conversions the converters share: premultiplied
scene-linear RGBA to the store's straight sRGB fgr, exposure, plates."""
from __future__ import annotations

import os

os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")  # must precede the cv2 import
import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.colour import ALPHA_MAX, linear_to_srgb, luminance, quantise_alpha  # noqa: E402


def read_layers(path: str) -> dict[str, np.ndarray]:
    """Every layer of a multilayer EXR Blender wrote (one part per pass, "ViewLayer.<pass>"): float32
    (H, W) for one channel, else (H, W, C) in RGBA / XYZW order. Combined is premultiplied, scene-linear."""
    import OpenEXR
    out = {}
    with OpenEXR.File(path, separate_channels=True) as f:
        for part in f.parts:
            channels = {name.rsplit(".", 1)[-1]: c.pixels for name, c in part.channels.items()}
            order = [k for k in "RGBAXYZW" if k in channels] or sorted(channels)
            planes = [np.asarray(channels[k], np.float32) for k in order]
            out[part.name().split(".", 1)[-1]] = planes[0] if len(planes) == 1 else np.stack(planes, axis=-1)
    if "Combined" not in out:
        raise OSError(f"cannot read the Combined layer of {path}")
    return out


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


def foreground(rgba: np.ndarray, min_alpha: float = 0.0, see_through: np.ndarray | None = None) -> np.ndarray:
    """One frame's premultiplied linear colour (H,W,4) -> straight sRGB uint8 (H,W,3).

    Colour is un-premultiplied by the colour pass's own alpha. Where that alpha is below
    `min_alpha`, dividing the (denoised) colour by a few noisy samples of alpha gives speckles, so
    such pixels (and those with no colour at all) take colour extended from their neighbours;
    except where `see_through` (H,W), the alpha see-through surfaces give the pixel, is at least
    half of it: there every sample sees the surface and its low alpha is not noise (a clear lens).
    """
    own = np.clip(rgba[..., 3], 0.0, 1.0)
    smooth = np.zeros(own.shape, bool) if see_through is None else see_through >= 0.5 * own
    known = (own * ALPHA_MAX >= 1) & ((own >= min_alpha) | smooth)
    straight = rgba[..., :3] / np.maximum(own, 1e-8)[..., None]
    filled = extend_colour(np.where(known[..., None], straight, 0.0), known)
    return np.round(linear_to_srgb(filled) * 255.0).astype(np.uint8)


def to_store(rgba: np.ndarray, coverage: np.ndarray | None = None,
             min_alpha: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Premultiplied linear colour (T,H,W,4) and coverage (T,H,W) -> fgr uint8 straight sRGB, alpha
    uint16: `coverage` (a separate, better-sampled pass) when given, else the colour's own alpha."""
    own = np.clip(rgba[..., 3], 0.0, 1.0)
    return (np.stack([foreground(f, min_alpha) for f in rgba]),
            quantise_alpha(own if coverage is None else coverage))


def plate_to_store(rgb: np.ndarray) -> np.ndarray:
    """A linear background plate (T,H,W,3), opaque, as the store's sRGB uint8."""
    return np.round(linear_to_srgb(np.clip(rgb, 0.0, 1.0)) * 255.0).astype(np.uint8)
