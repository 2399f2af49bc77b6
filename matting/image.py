"""Small image operations the matting pieces share."""
from __future__ import annotations

import cv2
import numpy as np


def disc(radius: int) -> np.ndarray:
    """An elliptical structuring element of the given radius (2r+1 square)."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def resize(img: np.ndarray, size: tuple[int, int], upscale: int = cv2.INTER_LINEAR) -> np.ndarray:
    """To (width, height): area averaging when shrinking (no aliasing), `upscale` when enlarging."""
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    shrink = size[0] <= img.shape[1] and size[1] <= img.shape[0]
    return cv2.resize(img, tuple(size), interpolation=cv2.INTER_AREA if shrink else upscale)
