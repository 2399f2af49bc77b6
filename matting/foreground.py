"""Straight foreground colour from a frame and its matte (Germer et al.'s multi-level estimation,
pymatting), for mattes that come without colour: classical, model predictions, pseudo-labels."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def estimate_foreground(frame_rgb: np.ndarray, alpha: np.ndarray, cfg: Mapping[str, Any] | None = None) -> np.ndarray:
    """uint8 foreground colour for a frame and its matte; extends colour into alpha=0 (no dark fringes).

    `cfg` is the `writer.foreground` block (estimate_foreground_ml's settings); None: pymatting's defaults.
    """
    from pymatting import estimate_foreground_ml  # its first import JIT-compiles for ~30 s
    fg = estimate_foreground_ml(frame_rgb.astype(np.float64) / 255.0, np.clip(alpha, 0, 1).astype(np.float64),
                                **dict(cfg or {}))
    return quantise(fg)


def quantise(fg: np.ndarray) -> np.ndarray:
    """Float colour in [0, 1] as uint8."""
    return np.clip(np.rint(fg * 255.0), 0, 255).astype(np.uint8)
