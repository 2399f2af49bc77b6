"""Trimaps: a person mask or probability map -> 1 person, 0 background, 0.5 unknown.

Two rules share this home. The classical baseline's band is a fraction of the frame's short side
(`make_trimap`); pseudo-labelling's scales with the person (`person_trimap`): a small figure in a
wide shot gets a narrow band and a close-up a wide one, at any resolution.
"""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from core.checks import require_keys
from matting.image import disc

TRIMAP_KEYS = ("fg_threshold", "bg_threshold", "fg_erode", "bg_dilate")
PERSON_KEYS = ("band", "min_px", "max_px")


def make_trimap(prob: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
    """float64 trimap (1 person, 0 background, 0.5 unknown) from a person probability map.

    Band widths are fractions of the short side, so a trimap means the same at any resolution.
    """
    c = require_keys(cfg, TRIMAP_KEYS, "trimap")
    side = min(prob.shape)
    fg = cv2.erode((prob > c["fg_threshold"]).astype(np.uint8), disc(round(c["fg_erode"] * side)))
    # Dilating the person by r is eroding the background by r; erode's border keeps edge pixels as they are.
    bg = cv2.erode((prob < c["bg_threshold"]).astype(np.uint8), disc(round(c["bg_dilate"] * side)))
    trimap = np.full(prob.shape, 0.5)
    trimap[fg.astype(bool)] = 1.0
    trimap[bg.astype(bool)] = 0.0
    return trimap


def band_kernel(area_px: float, cfg: Mapping[str, Any]) -> int:
    """The unknown band's odd kernel size for a person of `area_px` pixels: `band` x sqrt(area),
    clamped to [min_px, max_px]."""
    c = require_keys(cfg, PERSON_KEYS, "trimap")
    k = int(np.clip(round(c["band"] * np.sqrt(max(area_px, 0.0))), c["min_px"], c["max_px"]))
    return k if k % 2 else k + 1


def person_trimap(mask: np.ndarray, cfg: Mapping[str, Any]) -> tuple[np.ndarray, int]:
    """(float64 trimap, kernel) from a bool person mask: the mask's edge widened to a band of the
    person-scaled kernel (band_kernel), half inside and half outside."""
    k = band_kernel(float(mask.sum()), cfg)
    m = mask.astype(np.uint8)
    fg = cv2.erode(m, disc(k // 2))
    bg = cv2.erode(1 - m, disc(k // 2))
    trimap = np.full(mask.shape, 0.5)
    trimap[fg.astype(bool)] = 1.0
    trimap[bg.astype(bool)] = 0.0
    return trimap, k
