"""Optical flow (OpenCV's DIS) and warping by it: what the temporal metrics, the stabilisation of
pseudo-labels and their temporal score share."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


def gray8(img: np.ndarray) -> np.ndarray:
    """uint8 single channel from an RGB uint8 frame or a [0, 1] float map."""
    if img.dtype != np.uint8:
        return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img


def dis_flow(a: np.ndarray, b: np.ndarray, preset: str) -> np.ndarray:
    """(H, W, 2) flow, x then y, from image a to image b: a pixel x of a is seen at x + flow(x) in b."""
    return cv2.DISOpticalFlow_create(DIS_PRESETS[preset]).calc(gray8(a), gray8(b), None)


@lru_cache(maxsize=4)
def pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    xs.flags.writeable = ys.flags.writeable = False
    return xs, ys


def warp(x: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """x sampled at p + flow(p) for every pixel p (bilinear, edges replicated)."""
    xs, ys = pixel_grid(*flow.shape[:2])
    return cv2.remap(x, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
