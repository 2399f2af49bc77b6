"""Strands as walks: one segment of fixed length at a time, each end pushed out of what the hair
collides with, so that every later effect (clumps, curls, cuts, ties) bends strands instead of
stretching them."""
from __future__ import annotations

from typing import Callable

import numpy as np

from assets.hair.field import normalize


class Colliders:
    """The head field and, where given, the body: a point is pushed out of each in turn."""

    def __init__(self, head, body=None, body_margin: float = 0.0):
        self.head, self.body, self.body_margin = head, body, float(body_margin)

    def push_out(self, p: np.ndarray, margin: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        out, inside = self.head.push_out(p, margin)
        if self.body is not None:
            out, hit = self.body.push_out(out, self.body_margin)
            inside = inside | hit
        return out, inside


def step(coll: Colliders, prev: np.ndarray, cand: np.ndarray, seg: np.ndarray,
         margin: np.ndarray) -> np.ndarray:
    """Resolve one segment end, keeping the segment length where possible: push the end out, turn
    the segment towards it at full length, push again if still inside."""
    pushed, inside = coll.push_out(cand, margin)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return cand
    out = cand.copy()
    again = prev[idx] + seg[idx, None] * normalize(pushed[idx] - prev[idx])
    out[idx] = coll.push_out(again, margin[idx])[0]
    return out


def integrate(coll: Colliders, roots: np.ndarray, seg: np.ndarray, P: int, margin: float,
              dirs: np.ndarray | None = None, first: np.ndarray | None = None,
              steer: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Walk strands from the roots, one segment of length `seg` (S,) at a time.

    Segment directions come from `dirs` (S, P-1, 3), or are grown from `first` (S, 3), each step
    turned by seg * steer(points) (an (S, 3) field in 1/m). The collision margin fades in over
    the first 4 margins of length: a strand leaves the scalp, it cannot start above it."""
    S = roots.shape[0]
    pts = np.empty((S, P, 3))
    pts[:, 0] = roots
    d = first
    ramp = 4.0 * margin if margin > 0 else 1.0
    for k in range(1, P):
        prev = pts[:, k - 1]
        if dirs is not None:
            d = dirs[:, k - 1]
        elif k > 1:
            d = normalize(d + seg[:, None] * steer(prev))
        m = margin * np.minimum(1.0, k * seg / ramp)
        c = step(coll, prev, prev + seg[:, None] * d, seg, m)
        if dirs is None:
            d = normalize(c - prev)
        pts[:, k] = c
    return pts


def rewalk(coll: Colliders, shape: np.ndarray, seg: np.ndarray, margin: float) -> np.ndarray:
    """The walk along the directions of a drawn shape (S, P, 3), at each strand's own length."""
    return integrate(coll, shape[:, 0], seg, shape.shape[1], margin,
                     dirs=normalize(np.diff(shape, axis=1)))


def resample(pts: np.ndarray, lengths: np.ndarray, P: int) -> np.ndarray:
    """Polylines (S, Q, 3) resampled to P points evenly spaced over their first `lengths` (S,)
    metres of arc (a polyline shorter than that is extended along its last segment)."""
    seg = np.linalg.norm(np.diff(pts, axis=1), axis=-1)
    cum = np.concatenate([np.zeros((len(pts), 1)), np.cumsum(seg, axis=1)], axis=1)
    want = np.linspace(0.0, 1.0, P)[None, :] * lengths[:, None]
    S, Q = pts.shape[:2]
    # One searchsorted over all strands: each row's arc lengths shifted past the previous row's.
    shift = (np.arange(S) * (max(cum[:, -1].max(), want.max()) + 1.0))[:, None]
    j = np.searchsorted((cum + shift).ravel(), (want + shift).ravel(), side="right").reshape(S, P)
    j = np.clip(j - 1 - np.arange(S)[:, None] * Q, 0, Q - 2)
    rows = np.arange(S)[:, None]
    span = np.maximum(cum[rows, j + 1] - cum[rows, j], 1e-12)
    a = ((want - cum[rows, j]) / span)[..., None]
    return pts[rows, j] + a * (pts[rows, j + 1] - pts[rows, j])


def perp_frame(t: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors u, v perpendicular to tangents t (S,P,3), u as close to ref (S,3) as can be."""
    u = ref[:, None, :] - (t @ ref[:, :, None]) * t
    u = normalize(u)
    return u, np.cross(t, u)


