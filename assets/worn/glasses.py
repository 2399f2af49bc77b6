"""Eyeglasses fitted to a head: a front of two lenses in their rims joined by a bridge that rests on
the nose, and two temples that run back along the head to bend behind the ears.

Everything is measured from the body's own eye openings (the rims of the skin around each eye, as
the brows are) and its head: the lenses' centres sit in front of the eyes, their width follows the
pupil distance, the front stands far enough forward that no skin or lash within a lens comes
nearer than the clearance, the bridge's middle lies on the nose, and each temple keeps its
clearance from the side of the head. Built in the rest pose and carried rigidly by the head.

Rest frame: the SMPL-X one (metres, Y up, the body faces +Z, +X is the body's left).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from assets.worn.mesh import join, tube

LENS_RINGS = 4      # rings of the lens mesh from its centre out (the base curve is smooth at 4)
OUTLINE = 48        # points round each lens outline


@dataclass(frozen=True)
class Glasses:
    frame_vertices: np.ndarray   # (V,3) rest pose
    frame_faces: np.ndarray      # (F,3)
    lens_vertices: np.ndarray    # (V,3) both lenses
    lens_faces: np.ndarray       # (F,3)
    lens_centres: np.ndarray     # (2,3) the body's left lens first
    record: dict                 # the fitted sizes, metres


def _outline(half_w: float, half_h: float, exponent: float, n: int = OUTLINE) -> np.ndarray:
    """A superellipse |u/a|^e + |v/b|^e = 1 (e 2: an oval, larger: towards a rectangle), (n,2)."""
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack([half_w * np.sign(c) * np.abs(c) ** (2.0 / exponent),
                     half_h * np.sign(s) * np.abs(s) ** (2.0 / exponent)], axis=1)


def _lens_frame(side: float, tilt: float, wrap: float) -> np.ndarray:
    """The lens's axes (rows: u outwards, v up, n forward) after wrap (outer edge back, about the
    vertical) and pantoscopic tilt (lower edge back towards the cheek, about the horizontal)."""
    u = np.array([side * np.cos(wrap), 0.0, -np.sin(wrap)])
    n = np.cross(u, [0.0, np.cos(tilt), np.sin(tilt)])
    n *= np.sign(n[2]) / np.linalg.norm(n)
    v = np.cross(n, u)
    return np.stack([u, v * np.sign(v[1]) / np.linalg.norm(v), n])


def _edge(half_w: float, half_h: float, exponent: float, v: float) -> float:
    """How far out the outline reaches at height v."""
    return half_w * max(1.0 - abs(v / half_h) ** exponent, 0.0) ** (1.0 / exponent)


def _surface(centre: np.ndarray, axes: np.ndarray, uv: np.ndarray, base_curve: float) -> np.ndarray:
    """Points of the lens at local (u, v): the plane bent back by its base curve's sagitta."""
    sag = (uv ** 2).sum(axis=-1) / (2.0 * base_curve)
    return centre + uv[..., :1] * axes[0] + uv[..., 1:] * axes[1] - sag[..., None] * axes[2]


def _lens_mesh(centre, axes, outline, base_curve) -> tuple[np.ndarray, np.ndarray]:
    """A lens as a fan of rings from its centre to the outline."""
    rings = [outline * (k / LENS_RINGS) for k in range(1, LENS_RINGS + 1)]
    uv = np.concatenate([np.zeros((1, 2))] + rings)
    n = len(outline)
    faces = [[0, 1 + i, 1 + (i + 1) % n] for i in range(n)]
    for r in range(LENS_RINGS - 1):
        a, b = 1 + r * n, 1 + (r + 1) * n
        for i in range(n):
            j = (i + 1) % n
            faces += [[a + i, b + i, b + j], [a + i, b + j, a + j]]
    return _surface(centre, axes, uv, base_curve), np.asarray(faces, np.int64)


def _bezier(p0, p1, p2, n: int) -> np.ndarray:
    s = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - s) ** 2 * p0 + 2 * (1 - s) * s * p1 + s ** 2 * p2


def fit(rest_vertices: np.ndarray, head: np.ndarray, rims: tuple[np.ndarray, ...], p: Mapping[str, Any],
        avoid: np.ndarray | None = None) -> Glasses:
    """Glasses for a head: `head` marks the head's vertices, `rims` each eye's skin rim (vertex
    indices), `p` a clip's `worn.glasses` record; `avoid` (N,3): more points the lenses must clear
    (the lashes' and brows' points)."""
    v = rest_vertices.astype(np.float64)
    hv = v[head]
    eyes = [v[r] for r in rims]
    centres = np.array([e.mean(axis=0) for e in eyes])
    order = np.argsort(-centres[:, 0])          # the body's left eye (+X) first
    eyes, centres = [eyes[i] for i in order], centres[order]
    pd = float(centres[0, 0] - centres[1, 0])
    bridge = float(p["bridge"])
    half_w = 0.5 * (pd + p["frame_pd_extra"] - bridge)
    half_h = half_w * p["aspect"]
    tilt, wrap = np.radians(p["tilt_deg"]), np.radians(p["wrap_deg"])
    outline = _outline(half_w, half_h, p["roundness"])
    cornea = max(float(e[:, 2].max()) for e in eyes)
    clear = float(p["clearance"])
    lens_y = float(centres[:, 1].mean()) + p["drop"]

    # Each lens's centre at x = +-(bridge/2 + half width), the front placed at z = 0 first, then
    # moved forward until every point behind the lenses keeps its distance.
    lenses = []
    for side, eye in ((1.0, centres[0]), (-1.0, centres[1])):
        axes = _lens_frame(side, tilt, wrap)
        # the lens's inner edge stays at the bridge, whatever the wrap turns
        centre = np.array([side * (0.5 * bridge + half_w * np.cos(wrap)), lens_y, 0.0])
        lenses.append((side, axes, centre))
    metal = p["frame"] == "metal"
    rim_w, rim_d = (p["wire_radius"], p["wire_radius"]) if metal else (0.5 * p["rim_width"], 0.5 * p["rim_depth"])
    grid = np.stack(np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 41)), -1).reshape(-1, 2)
    inside = (np.abs(grid[:, 0]) ** p["roundness"] + np.abs(grid[:, 1]) ** p["roundness"]) <= 1.0
    # the lenses with their rims round them: all of it keeps its distance from the face
    reach = grid[inside] * [half_w + 2 * rim_w, half_h + 2 * rim_w]
    pts = np.concatenate([_surface(c, a, reach, p["base_curve_m"]) for _, a, c in lenses])
    # what the lenses must clear: the face and whatever grows on it, seen from the front
    behind = hv if avoid is None else np.concatenate([hv, avoid])
    near = cKDTree(pts[:, :2]).query(behind[:, :2], distance_upper_bound=1.5 * (2 * half_w) / 40)[0] < np.inf
    idx = cKDTree(pts[:, :2]).query(behind[near][:, :2])[1]
    need = [cornea + p["vertex_distance"] - pts[:, 2].max()]
    if near.any():
        need.append(float((behind[near][:, 2] - pts[idx, 2]).max()) + clear + rim_d)
    # The bridge's middle rests on the nose: the front must stand at least that far forward too.
    y_bridge = lens_y + p["bridge_height"] * half_h
    ridge = hv[(np.abs(hv[:, 0]) < 0.004) & (np.abs(hv[:, 1] - y_bridge) < 0.006)]
    if not len(ridge):
        raise ValueError("glasses: no nose found between the eyes at the bridge's height")
    nose = np.array([0.0, y_bridge, float(ridge[:, 2].max())])
    wire = p["wire_radius"] if p["frame"] == "metal" else 0.5 * p["rim_depth"]
    u_bridge = -_edge(half_w, half_h, p["roundness"], p["bridge_height"] * half_h)
    inner = [_surface(c, a, np.array([u_bridge, p["bridge_height"] * half_h]), p["base_curve_m"]) for _, a, c in lenses]
    need.append(nose[2] + wire - min(q[2] for q in inner))
    z0 = max(need)
    lenses = [(s, a, c + [0.0, 0.0, z0]) for s, a, c in lenses]

    # Rims round each lens (the lens sits in their groove), a bridge from rim to rim over the nose,
    # temples from each outer end piece back along the head and down behind the ear.
    parts_frame, parts_lens = [], []
    for side, axes, centre in lenses:
        lv, lf = _lens_mesh(centre, axes, outline, p["base_curve_m"])
        parts_lens.append((lv, lf))
        grow = 1.0 + (rim_w * 0.6) / np.linalg.norm(outline, axis=1, keepdims=True)
        path = _surface(centre, axes, outline * grow, p["base_curve_m"])
        parts_frame.append(tube(path, rim_w, rim_d, axes[2], closed=True))
    a0, a1 = (_surface(c, a, np.array([u_bridge - rim_w, p["bridge_height"] * half_h]), p["base_curve_m"])
              for _, a, c in lenses)
    mid = nose + [0.0, wire, wire]           # resting on the ridge: the wire's underside on the skin
    path = _bezier(a0, 2 * mid - 0.5 * (a0 + a1), a1, 16)
    parts_frame.append(tube(path, wire, wire if metal else rim_w, np.array([0.0, 0.0, 1.0]), closed=False))

    t_w, t_d = (p["wire_radius"], p["wire_radius"]) if metal else (0.5 * p["temple_thickness"], 0.5 * p["temple_height"])
    temples = []
    for side, axes, centre in lenses:
        v_hinge = p["hinge_height"] * half_h
        hinge = _surface(centre, axes, np.array([_edge(half_w, half_h, p["roundness"], v_hinge) + rim_w, v_hinge]),
                         p["base_curve_m"])
        mine = hv[np.sign(hv[:, 0]) == side]
        band = mine[np.abs(mine[:, 1] - hinge[1]) < 0.012]
        ear_z = float(band[np.argmax(np.abs(band[:, 0])), 2])     # the head is widest at the ear
        zs = np.linspace(hinge[2] - 0.006, ear_z - 0.012, 24)
        ys = hinge[1] + np.linspace(0.0, -p["temple_drop"], len(zs))
        down = np.radians(p["ear_bend_deg"])
        bend = np.outer(np.linspace(0.0, p["ear_bend_length"], 8)[1:], [-np.sin(down), -np.cos(down)])
        yz = np.concatenate([np.stack([ys, zs], 1), [ys[-1], zs[-1]] + bend])
        # the head's half-width beside each point, the temple clear of it and never narrowing
        # towards the back (it would cut into the ear)
        near = cKDTree(mine[:, 1:]).query_ball_point(yz, 0.008)
        width = np.array([np.abs(mine[i, 0]).max(initial=0.0) for i in near])
        x = np.maximum(np.maximum.accumulate(width) + p["temple_clearance"] + t_w, abs(hinge[0]))
        path = np.concatenate([[hinge], np.column_stack([side * x, yz])])
        temples.append(path)
        parts_frame.append(tube(path, t_d, t_w, np.array([side, 0.0, 0.0]), closed=False))   # flat side to the head
    fv, ff = join(parts_frame)
    lv, lf = join(parts_lens)
    record = {"pupil_distance": pd, "lens_width": 2 * half_w, "lens_height": 2 * half_h, "bridge": bridge,
              "vertex_distance": float(z0 + pts[:, 2].max() - cornea)}
    return Glasses(fv.astype(np.float32), ff, lv.astype(np.float32), lf,
                   np.array([c for _, _, c in lenses]), record)
