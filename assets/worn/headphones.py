"""Over-ear headphones fitted to a head: two cups over the ears joined by a band over the crown; and
the hair pressed under the band and out of the cups.

Each cup is an oval shell, its axis across the head, centred on its ear: its inner face stands
`clearance` off the side of the head round the ear (the ear itself sinks into the cushion, as it
does), and it is deep enough that no part of the ear comes through its outer face. The band runs
in a plane through both cups' tops (tilted forward or back by `tilt_deg`), from cup to cup over the
crown at the hair's room (`allowance`) above the head, measured per angle as the hats' crowns are.

Hair is never through them: strand points in the band's slab and outside its inside are drawn in
under it (falling off over `press_falloff` beside it: the dent a band leaves), and points in a cup
are moved out to its rim (`press`), frame by frame in the head's frame.

Rest frame: the SMPL-X one (metres, Y up, the body faces +Z, +X is the body's left).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.ndimage import gaussian_filter1d

from assets.worn.mesh import join, loft, tube

OUTLINE = 32                   # points round a cup's oval
BAND_STEPS = 48                # points along the band
NEAR_DEG = 6.0                 # head vertices within this angle of a direction measure the head there
# a cup's rings from its inner face (0) to its outer one (1), and their size: a cushion, a shell
CUP_RINGS = ((0.0, 0.82), (0.08, 0.97), (0.3, 1.0), (0.75, 1.0), (0.92, 0.93), (1.0, 0.7))


@dataclass(frozen=True)
class Headphones:
    vertices: np.ndarray        # (V,3) rest pose
    faces: np.ndarray           # (F,3)
    cups: tuple                 # per cup: (side +1 left -1 right, centre (3,), x of inner face, depth, half height, half width)
    origin: np.ndarray          # (3,) the band plane's centre (between the ears)
    axes: np.ndarray            # (3,3) rows: across (+X), up the band plane, its normal
    band: tuple                 # (angles (K,), inside radius (K,), half width, thickness)
    part_faces: tuple           # faces per closed part, in order: the left cup, the right cup, the band
    record: dict


def _plane(tilt: float) -> np.ndarray:
    """Rows: +X, the band plane's up (tilted forward by `tilt` radians), the plane's normal."""
    up = np.array([0.0, np.cos(tilt), np.sin(tilt)])
    x = np.array([1.0, 0.0, 0.0])
    return np.stack([x, up, np.cross(x, up)])


def _cup_mesh(centre: np.ndarray, side: float, x_in: float, depth: float, hh: float, hw: float):
    a = np.linspace(0.0, 2.0 * np.pi, OUTLINE, endpoint=False)
    oval = np.stack([np.zeros_like(a), hh * np.sin(a), hw * np.cos(a)], axis=1)
    rings = [np.array([side * (x_in + t * depth), centre[1], centre[2]]) + s * oval for t, s in CUP_RINGS]
    return loft(np.stack(rings), closed=False)


def fit(rest_vertices: np.ndarray, head: np.ndarray, ears: tuple[np.ndarray, np.ndarray],
        p: Mapping[str, Any]) -> Headphones:
    """Headphones for a head: `head` marks its vertices, `ears` each ear's (the left first), `p` a
    clip's `worn.headphones` record."""
    v = rest_vertices.astype(np.float64)
    hv = v[head & ~np.isin(np.arange(len(v)), np.concatenate(ears))]   # the head without its ears
    hh, hw, depth, clr = 0.5 * p["cup_height"], 0.5 * p["cup_width"], p["cup_depth"], p["clearance"]
    tilt = np.radians(p["tilt_deg"])
    axes = _plane(tilt)
    cups, parts = [], []
    for side, ear in ((1.0, v[ears[0]]), (-1.0, v[ears[1]])):
        centre = ear.mean(axis=0) + [0.0, p["cup_raise"], 0.0]
        mine = hv[np.sign(hv[:, 0]) == side]
        around = mine[((mine[:, 1] - centre[1]) / hh) ** 2 + ((mine[:, 2] - centre[2]) / hw) ** 2 < 1.0]
        x_skin = float(np.abs(around[:, 0]).max()) if len(around) else float(np.abs(ear[:, 0]).min())
        x_in = max(x_skin + clr, float(np.abs(ear[:, 0]).max()) + p["shell"] - depth)   # the ear stays inside
        c = np.array([side * (x_in + 0.5 * depth), centre[1], centre[2]])
        cups.append((side, c, x_in, depth, hh, hw))
        parts.append(_cup_mesh(c, side, x_in, depth, hh, hw))

    # the band: from the top of one cup (its rim where the band plane meets it) over the crown to the other
    origin = 0.5 * (cups[0][1] + cups[1][1])
    origin[0] = 0.0
    r_rim = 1.0 / np.hypot(np.cos(tilt) / hh, np.sin(tilt) / hw)
    tops = [c[1] + r_rim * axes[1] for c in cups]
    tops = [t - ((t - origin) @ axes[2]) * axes[2] for t in tops]    # onto the plane
    phi = np.linspace(*[np.arctan2((t - origin) @ axes[1], (t - origin) @ axes[0]) for t in tops], BAND_STEPS)
    half_w, thick = 0.5 * p["band_width"], p["band_thickness"]
    rel = hv - origin
    slab = np.abs(rel @ axes[2]) < half_w + 0.01
    ang, rad = np.arctan2(rel[slab] @ axes[1], rel[slab] @ axes[0]), np.hypot(rel[slab] @ axes[0], rel[slab] @ axes[1])
    need = np.array([rad[np.abs(ang - f) < np.radians(NEAR_DEG)].max(initial=0.0) for f in phi])
    need += p["allowance"] + 0.5 * thick
    # the arch: the head's need smoothed, then bent at each end over 25 degrees to meet its cup's top
    r = np.maximum(gaussian_filter1d(need, 3.0, mode="nearest") + 0.002, need)
    for end, top in ((0, tops[0]), (-1, tops[1])):
        ramp = np.clip(1.0 - np.abs(phi - phi[end]) / np.radians(25.0), 0.0, 1.0)
        r += (np.linalg.norm(top - origin) - r[end]) * ramp ** 2 * (3 - 2 * ramp)
    path = origin + r[:, None] * (np.cos(phi)[:, None] * axes[0] + np.sin(phi)[:, None] * axes[1])
    parts.append(tube(path, half_w, 0.5 * thick, path - origin, closed=False))
    verts, faces = join(parts)
    record = {"cup_inner_x": [float(c[2]) for c in cups], "band_top": float(r[BAND_STEPS // 2]),
              "band_room": float((r - need).min() + p["allowance"])}   # least gap over the head under the band
    return Headphones(verts.astype(np.float32), faces, tuple(cups), origin, axes, (phi, r - 0.5 * thick, half_w, thick),
                      tuple(len(f) for _, f in parts), record)


def _in_cup(h: Headphones, flat: np.ndarray, margin: float):
    """Per cup: which points (N,3) lie in it (grown by `margin`), and their offsets from its axis."""
    for side, centre, x_in, depth, hh, hw in h.cups:
        x = side * flat[:, 0]
        dy, dz = flat[:, 1] - centre[1], flat[:, 2] - centre[2]
        e = np.hypot(dy / (hh + margin), dz / (hw + margin))
        yield (x > x_in - margin) & (x < x_in + depth + margin) & (e < 1.0), centre, dy, dz, e


def press(h: Headphones, points: np.ndarray, margin: float, falloff: float) -> np.ndarray:
    """Points (..., 3) in the head's rest frame kept out of the headphones: under the band, drawn in
    to its inside less `margin` (fully within its slab, easing off over `falloff` beside it); in a
    cup, moved out to its rim plus `margin`. Where band and cup meet, neither way is free: there the
    hair parts round the band, moved out of its slab to the front or back."""
    p = np.array(points, dtype=np.float64, copy=True)
    flat = p.reshape(-1, 3)
    phi, inside, half_w, thick = h.band

    def polar(q):      # in the band's plane; `along`: over the band's reach (its end caps stand out by its thickness)
        rel = q - h.origin
        a, b, n = rel @ h.axes[0], rel @ h.axes[1], rel @ h.axes[2]
        ang, rad = np.arctan2(b, a), np.hypot(a, b)
        slack = thick / np.maximum(rad, 1e-6)
        return a, b, n, ang, rad, (ang >= phi[0] - slack) & (ang <= phi[-1] + slack)

    def parted(q, which):      # out of the band's slab, to the side each point is on
        n = (q[which] - h.origin) @ h.axes[2]
        q[which] += ((half_w + margin) * np.where(n < 0, -1.0, 1.0) - n)[:, None] * h.axes[2]

    a, b, n, ang, rad, along = polar(flat)
    inner = np.interp(ang, phi, inside) - margin
    weight = np.clip(1.0 - (np.abs(n) - half_w - margin) / falloff, 0.0, 1.0)
    squeeze = along & (weight > 0) & (rad > inner)
    scale = 1.0 + weight[squeeze] * (inner[squeeze] / rad[squeeze] - 1.0)
    moved = flat.copy()
    moved[squeeze] = h.origin + (a[squeeze, None] * h.axes[0] + b[squeeze, None] * h.axes[1]) * scale[:, None] \
        + n[squeeze, None] * h.axes[2]
    blocked = np.zeros(len(flat), bool)
    for hit, *_ in _in_cup(h, moved, margin):
        blocked |= hit & squeeze
    flat[squeeze & ~blocked] = moved[squeeze & ~blocked]
    parted(flat, blocked)
    for hit, centre, dy, dz, e in _in_cup(h, flat, margin):
        axis = e < 1e-6          # on the cup's axis: out downwards, as hair falls
        dy, dz = np.where(axis, -(h.cups[0][4] + margin), dy), np.where(axis, 0.0, dz)
        e = np.where(axis, 1.0, e)
        flat[hit, 1] = centre[1] + dy[hit] / e[hit]
        flat[hit, 2] = centre[2] + dz[hit] / e[hit]
        _, _, n, ang, rad, along = polar(flat)
        inner = np.interp(ang, phi, inside) - margin
        parted(flat, hit & along & (np.abs(n) < half_w + margin) & (rad > inner) & (rad < inner + thick + 2 * margin))
    return flat.reshape(p.shape)
