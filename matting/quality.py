"""How good a matte is, without ground truth: four terms per frame, one score per frame and clip.

- mask: mean |alpha - mask| outside the unknown band (where the segmentation was sure);
- colour_line: in the band, image change should be explained by the matte: locally
  grad I = (F - B) grad alpha (the compositing equation's derivative, F and B smooth); the
  residual, relative to |grad I|, is high where alpha moves without the image or misses an edge;
- temporal: the band's frame-to-frame alpha change along the optical flow, where the flow is
  trusted (photometric confidence);
- band: the unknown band's share of person + band (how much the chain had to guess).
score = exp(-sum(max(0, term - floor) / scale)); a clip's score is its frames' mean. The floor is
what a right matte still shows (the colour-line residual of background texture in the band).
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from matting.stabilise import Carried

TERMS = ("mask", "colour_line", "temporal", "band")


def _grad(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gx = cv2.Sobel(x, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(x, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    # Small patches, not single pixels: the colour-line model holds over a neighbourhood.
    return cv2.blur(gx, (3, 3)), cv2.blur(gy, (3, 3))


def colour_line(frame: np.ndarray, alpha: np.ndarray, fg: np.ndarray, bg: np.ndarray, band: np.ndarray) -> float:
    if not band.any():
        return 0.0
    image = frame.astype(np.float32) / 255.0
    ax, ay = _grad(alpha.astype(np.float32))
    ix, iy = _grad(image)
    d = (fg - bg).astype(np.float32)
    res = np.sqrt(((ix - d * ax[..., None]) ** 2 + (iy - d * ay[..., None]) ** 2).sum(-1))
    edge = np.sqrt((ix ** 2 + iy ** 2).sum(-1))
    return float(res[band].mean() / (edge[band].mean() + 1e-3))


def terms(frame: np.ndarray, alpha: np.ndarray, mask: np.ndarray, band: np.ndarray, fg: np.ndarray,
          bg: np.ndarray, carried: Carried | None) -> dict[str, float]:
    """The four terms of one frame (working size): frame uint8 RGB, alpha float, mask and band
    bool, fg and bg float RGB in [0, 1] (pymatting's estimates), `carried` None on a clip's first."""
    outside = ~band
    out = {"mask": float(np.abs(alpha[outside] - mask[outside]).mean()) if outside.any() else 0.0,
           "colour_line": colour_line(frame, alpha, fg, bg, band),
           "temporal": 0.0,
           "band": float(band.sum() / max(1, (mask | band).sum()))}
    if carried is not None and band.any():
        w = carried.confidence[band]
        out["temporal"] = float((w * np.abs(alpha[band] - carried.alpha[band])).sum() / max(w.sum(), 1e-6))
    return out


def score(t: Mapping[str, float], cfg: Mapping[str, Any]) -> float:
    """`cfg`: the `quality` block (scales, floors)."""
    return float(np.exp(-sum(max(0.0, t[k] - cfg["floors"][k]) / cfg["scales"][k] for k in TERMS)))
