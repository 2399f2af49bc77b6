"""Pseudo-labels for a window of real frames: person masks -> a person-scaled trimap -> pymatting
alpha at the working size -> flow-guided stabilisation -> edge-aware upsampling to full size ->
straight foreground colour -> scores that need no ground truth.

What marks the person comes from outside (`person`: a segmenter's probabilities, user masks or a
matting model's alpha, all at the working size), so the chain is the same for every labeller.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np

from core.checks import require_keys
from matting import quality, stabilise
from matting.classical import ALPHA_METHODS, solve_alpha
from matting.foreground import estimate_foreground, quantise
from matting.image import disc, resize
from matting.person import subject
from matting.trimap import person_trimap

KEYS = ("max_size", "closed_form", "people", "person_threshold", "min_person", "trimap", "method", "upsample",
        "temporal", "quality")


@dataclass
class Labels:
    """A window's labels at the working size, scored; `full_size` brings the chosen ones to the
    frames' size (the costly part, done only for labels that are kept)."""
    alpha: np.ndarray                     # (T, h, w) float32 in [0, 1], working size
    fg: np.ndarray                        # (T, h, w, 3) float64 straight colour in [0, 1], working size
    bands: np.ndarray                     # (T, h, w) bool: the trimap's unknown band
    terms: list[dict[str, float]]         # per frame: quality.TERMS
    frame_scores: list[float]
    kernels: list[int]                    # the trimap's band kernel per frame (working-size pixels)
    person_frames: int                    # frames in which a person was found
    person: np.ndarray                    # (T, h, w) the person maps they were made from
    size: tuple[int, int] = field(default=(0, 0))   # working (width, height)

    @property
    def score(self) -> float:
        return float(np.mean(self.frame_scores)) if self.frame_scores else 0.0


def check(cfg: Mapping[str, Any]) -> dict[str, Any]:
    c = require_keys({k: cfg[k] for k in KEYS if k in cfg}, KEYS, "pseudolabel")   # the chain's keys of a larger config
    if c["method"] not in ALPHA_METHODS:
        raise ValueError(f"method: {c['method']!r} is not one of {', '.join(ALPHA_METHODS)}")
    if not (isinstance(c["max_size"], int) and c["max_size"] > 0):
        raise ValueError(f"max_size: {c['max_size']!r} is not a positive integer")
    stabilise.check(c["temporal"])
    if c["trimap"]["min_px"] > c["trimap"]["max_px"]:
        raise ValueError(f"trimap.min_px ({c['trimap']['min_px']}) is above trimap.max_px ({c['trimap']['max_px']})")
    q = c["quality"]
    for key, ok in (("scales", lambda v: v > 0), ("floors", lambda v: v >= 0)):
        bad = [k for k in quality.TERMS if not (isinstance(q[key].get(k), (int, float)) and ok(q[key][k]))]
        if bad:
            raise ValueError(f"quality.{key}: {', '.join(bad)} must be {'positive' if key == 'scales' else 'non-negative'} numbers")
    return c


def working_size(width: int, height: int, max_size: int) -> tuple[int, int]:
    s = min(1.0, max_size / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def shrink(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([resize(f, size) for f in frames])


def upsample(alpha: np.ndarray, band: np.ndarray, frame: np.ndarray, cfg: Mapping[str, Any]) -> np.ndarray:
    """Working-size alpha to the frame's size: bilinear, then in the (dilated) band OpenCV's guided
    filter on the full-size frame, so the edge follows the image's detail, not the coarse grid."""
    h, w = frame.shape[:2]
    if alpha.shape == (h, w):
        return alpha
    scale = w / alpha.shape[1]
    up = cv2.resize(alpha, (w, h), interpolation=cv2.INTER_LINEAR)
    r = max(1, round(cfg["radius"] * scale))
    guided = cv2.ximgproc.guidedFilter(frame, up.astype(np.float32), r, cfg["eps"] * 255.0 ** 2)
    near = cv2.resize(cv2.dilate(band.astype(np.uint8), disc(1)), (w, h), interpolation=cv2.INTER_NEAREST) > 0
    return np.clip(np.where(near, guided, up), 0, 1).astype(np.float32)


def label(frames: np.ndarray, person: np.ndarray, cfg: Mapping[str, Any], foreground: Mapping[str, Any],
          solve: bool = True) -> Labels:
    """Label a window: frames uint8 (T, H, W, 3) at full size, `person` (T, h, w) float at the
    working size (probability, mask or a model's alpha). `solve` false keeps `person` as the
    alpha (a model's own matte) and only scores and colours it."""
    from pymatting import estimate_foreground_ml
    c = check(cfg)
    T = len(frames)
    size = (person.shape[2], person.shape[1])
    small = shrink(frames, size)
    alphas, masks, bands, kernels, found, previous = [], [], [], [], 0, None
    for t in range(T):
        m = subject(person[t] > c["person_threshold"], c["people"], previous)
        if m.mean() < c["min_person"]:
            m = np.zeros_like(m)
        else:
            found += 1
            previous = m
        trimap, k = person_trimap(m, c["trimap"])
        band = trimap == 0.5
        if solve:
            a = solve_alpha(small[t], trimap, c["method"], c["closed_form"]) if m.any() else np.zeros(m.shape, np.float32)
        else:
            a = np.clip(person[t], 0, 1).astype(np.float32)
        alphas.append(a), masks.append(m), bands.append(band & m.any()), kernels.append(k)
    alpha, carried = stabilise.stabilise(small, np.stack(alphas), np.stack(bands), c["temporal"])
    terms, scores, fgs = [], [], []
    for t in range(T):
        fg, bg = estimate_foreground_ml(small[t].astype(np.float64) / 255.0, alpha[t].astype(np.float64),
                                        return_background=True, **dict(foreground))
        tt = quality.terms(small[t], alpha[t], masks[t], bands[t], fg, bg, carried[t])
        terms.append(tt)
        scores.append(quality.score(tt, c["quality"]) if masks[t].any() else 0.0)
        fgs.append(fg)
    return Labels(alpha, np.stack(fgs), np.stack(bands), terms, scores, kernels, found, person, size)


def full_size(labels: Labels, frames: np.ndarray, cfg: Mapping[str, Any],
              foreground: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """(alpha float32 (T, H, W), foreground uint8 (T, H, W, 3)) at the frames' size: alpha
    upsampled edge-aware, the foreground estimated again at full size (or kept, at the same size)."""
    up = cfg["upsample"]
    alphas = [upsample(a, b, f, up) for a, b, f in zip(labels.alpha, labels.bands, frames)]
    same = labels.alpha.shape[1:] == frames.shape[1:3]
    fgrs = [quantise(fg) if same else estimate_foreground(f, a, foreground)
            for fg, f, a in zip(labels.fg, frames, alphas)]
    return np.stack(alphas), np.stack(fgrs)
