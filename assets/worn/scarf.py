"""A scarf round the neck, draped by Blender's cloth solver (assets.cloth) over the body and what it
wears.

It starts as one strip in the clip's first pose: a loop round the back of the neck at `loop_rise`
above the neck joint and `clearance` off whatever is there, opening at the front, and two ends
hanging from the loop's front corners down the chest, the right one over the left, each opening
from the loop's height to the cloth's full width as it falls. Round the
neck the strip is gathered into `loop_height` in soft folds standing outwards (its cross-section a
wave of the cloth's true width). Blender's solver takes the start as the rest shape (a rest shape
key replaces the start, see assets.cloth), so the folds round the neck are the scarf's own, as a
worn scarf's are. The loop's upper edge is pinned round the back and sides (each pin follows the
mean motion of its nearest body vertices); the rest hangs, settles before the clip, and swings.

World frame (metres, Z up), as the solver's.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from assets import stage

NEAR_DEG = 8.0          # vertices within this angle of a direction round the neck measure it there
NECK_REACH = 0.11       # ... and within this of the neck's axis (not the shoulders)
PIN_ROWS = 2            # rows of the loop's upper edge pinned
FOLD = 0.06             # metres of cloth per fold round the neck
OVER = 0.02             # the right end hangs this far in front of the left
FLARE = 0.25            # metres down each end over which it opens to its full width
TURN = 0.08             # metres of strip over which the loop's corner turns into a hanging end
PIN_FROM_OPEN_DEG = 20.0   # the loop is pinned from this far behind its front corners round the back


def _round_neck(points: np.ndarray, centre: np.ndarray, front: np.ndarray, side: np.ndarray,
                height: float, angles: np.ndarray) -> np.ndarray:
    """The horizontal reach of `points` from `centre` within `height` of it, per angle (0: front,
    towards `side` positive)."""
    rel = points - centre
    slab = rel[np.abs(rel[:, 2]) < 0.5 * height]
    a = np.arctan2(slab @ side, slab @ front)
    r = np.hypot(slab @ side, slab @ front)
    a, r = a[r < NECK_REACH], r[r < NECK_REACH]
    out = []
    for x in angles:
        d = np.abs((a - x + np.pi) % (2 * np.pi) - np.pi) < np.radians(NEAR_DEG)
        out.append(r[d].max(initial=0.0))
    return np.asarray(out)


def _front_reach(points: np.ndarray, centre: np.ndarray, front: np.ndarray, side: np.ndarray,
                 across: float, height: float, band: float) -> float:
    """How far forward of `centre` (along `front`) the points reach at `across` to the side and
    `height` above it, within `band`."""
    rel = points - centre
    near = (np.abs(rel[:, 2] - height) < band) & (np.abs(rel @ side - across) < band)
    return float((rel[near] @ front).max(initial=0.0))


def _fold_depth(width: float, height: float, folds: float) -> float:
    """The depth of a wave of `folds` folds across `height` whose length is `width` (the cloth
    gathered into it), by bisection on the wave's arc length."""
    x = np.linspace(0.0, 1.0, 400)
    lo, hi = 0.0, width
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        y = 0.5 * mid * (1 - np.cos(2 * np.pi * folds * x))
        length = np.hypot(np.diff(x) * height, np.diff(y)).sum()
        lo, hi = (mid, hi) if length < width else (lo, mid)
    return lo


def shape(surface: np.ndarray, joints: np.ndarray, p: Mapping[str, Any]
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scarf at the start: (vertices (V,3), faces (F,3), pinned (V,) bool), from the first
    frame's `surface` points (body and garments) and `joints` (55,3), world; `p` the clip's record."""
    front = stage.facing(joints[None])
    up = stage.UP
    side = np.cross(up, front)
    centre = joints[stage.NECK] + p["loop_rise"] * up
    h_loop, spacing = p["loop_height"], p["spacing"]
    opening = np.radians(p["open_deg"])

    # the loop: from the left front corner round the back to the right one
    angles = np.linspace(opening, 2 * np.pi - opening, 90)
    radius = _round_neck(surface, centre, front, side, h_loop + 0.02, angles) + p["clearance"]
    radius = np.convolve(np.pad(radius, 3, mode="edge"), np.ones(7) / 7, mode="valid")
    loop = centre + radius[:, None] * (np.cos(angles)[:, None] * front + np.sin(angles)[:, None] * side)
    # each end: down the chest from its corner, clear of what is in front
    length = p["length"]
    loop_len = float(np.linalg.norm(np.diff(loop, axis=0), axis=1).sum())
    tails = []
    for corner, sign in ((loop[0], 1.0), (loop[-1], -1.0)):
        n = max(2, int(round((0.5 * (length - loop_len) + sign * 0.5 * p["tail_shift"]) / spacing)))
        drop = np.arange(1, n + 1) * spacing
        across, forward = (corner - centre) @ side, (corner - centre) @ front
        path = []
        for d in drop:
            height = (corner - centre) @ up - d
            ahead = max(_front_reach(surface, centre, front, side, across, height, 0.04), forward) + p["clearance"]
            path.append(centre + across * side + ahead * front + height * up)
        tails.append(np.asarray(path))
    # the whole centreline: one end up, round the loop, down the other
    tails[1] = tails[1] + OVER * front
    centre_line = np.concatenate([tails[0][::-1], loop, tails[1]])
    steps = np.r_[0.0, np.cumsum(np.linalg.norm(np.diff(centre_line, axis=0), axis=1))]
    u = np.arange(0.0, steps[-1], spacing)
    c = np.stack([np.interp(u, steps, centre_line[:, k]) for k in range(3)], axis=1)
    # across the strip: up round the loop (folds outward), sideways down the ends (flat)
    start, end = steps[len(tails[0])], steps[len(tails[0]) + len(loop) - 1]
    into_loop = np.clip(np.minimum(u - start, end - u) / TURN + 0.5, 0.0, 1.0)[:, None]
    out_dir = c - centre
    out_dir -= (out_dir @ up)[:, None] * up
    out_dir /= np.maximum(np.linalg.norm(out_dir, axis=1, keepdims=True), 1e-9)
    across = into_loop * up + (1 - into_loop) * side
    across /= np.linalg.norm(across, axis=1, keepdims=True)
    width = p["width"]
    # down each end the cloth opens from the loop's gathered height to its full width over FLARE
    below = np.maximum(np.maximum(start - u, u - end), 0.0)
    half = 0.5 * (h_loop + (width - h_loop) * np.clip(below / FLARE, 0.0, 1.0))
    nv = max(3, int(round(width / spacing)) + 1)
    x = np.linspace(-1.0, 1.0, nv)
    folds = max(1.0, round(width / FOLD))
    amplitude = _fold_depth(width, h_loop, folds) * into_loop[:, 0]
    wave = 0.5 * (1 - np.cos(np.pi * folds * (x + 1)))          # 0 at both edges, outward only
    verts = c[:, None] + x[None, :, None] * half[:, None, None] * across[:, None] \
        + (amplitude[:, None] * wave[None])[..., None] * out_dir[:, None]
    nu = len(u)
    faces = [[i * nv + k, (i + 1) * nv + k, (i + 1) * nv + k + 1] for i in range(nu - 1) for k in range(nv - 1)] + \
            [[i * nv + k, (i + 1) * nv + k + 1, i * nv + k + 1] for i in range(nu - 1) for k in range(nv - 1)]
    j = np.arange(nv)
    # pinned: the loop's upper edge round the back and sides
    ang = np.arctan2((c - centre) @ side, (c - centre) @ front) % (2 * np.pi)
    keep = np.radians(PIN_FROM_OPEN_DEG)
    pin_u = (into_loop[:, 0] >= 1.0) & (ang > opening + keep) & (ang < 2 * np.pi - opening - keep)
    pinned = pin_u[:, None] & (j >= nv - PIN_ROWS)[None]
    return verts.reshape(-1, 3), np.asarray(faces, np.int64), pinned.ravel()


def clear_of(points: np.ndarray, surface: np.ndarray, normals: np.ndarray, clearance: float) -> np.ndarray:
    """The points (N,3) moved out along the surface's normals (its vertices (S,3) and their unit
    normals) wherever they come nearer its outside than `clearance` (the strip's corners, where it
    turns from the loop to an end, can start against the chin or the chest)."""
    out = np.array(points, dtype=np.float64, copy=True)
    for _ in range(3):        # moving one way can bring a point near another part
        d, i = cKDTree(surface).query(out)
        side = ((out - surface[i]) * normals[i]).sum(axis=1)
        near = (d < 0.05) & (side < clearance)
        out[near] += (clearance - side[near])[:, None] * normals[i[near]]
    return out


def goals(points: np.ndarray, surface: np.ndarray, k: int = 6) -> np.ndarray:
    """(T,N,3): each of `points` (N,3, first frame) moved by the mean motion of its k nearest
    `surface` vertices (T,S,3) from the first frame."""
    _, idx = cKDTree(surface[0]).query(points, k=k)
    motion = (surface[:, idx] - surface[:1, idx]).mean(axis=2)
    return points[None] + motion
