"""Where strands grow and how long: roots spread over the scalp by area times a density map, and
a length factor and a fringe flag per root.

Real scalps are not uniform: density fades over the last centimetre or so of every hairline
(forehead, temples, nape), thins at the crown whorl, and the nape grows shorter hair. Distances
are measured over the scalp patch's own vertices: to its boundary (the hairline), to the crown
point (the scalp vertex furthest up and back), and to the front hairline for the fringe.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from assets.hair.field import normalize, open_edges, vertex_normals

_CROWN_DIRECTION = normalize(np.array([0.0, 0.8, -0.6]))   # up and back: where the whorl sits


@dataclass(frozen=True)
class Roots:
    points: np.ndarray      # (S, 3)
    normals: np.ndarray     # (S, 3) smooth, away from the head centre
    length: np.ndarray      # (S,) length factor from the scalp map (1 away from nape and hairline)
    fringe: np.ndarray      # (S,) bool: in the fringe zone behind the front hairline


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def boundary_vertices(faces: np.ndarray) -> np.ndarray:
    """Indices of vertices on edges used by exactly one face (the patch's rim)."""
    return np.unique(open_edges(faces))


def maps(verts: np.ndarray, faces: np.ndarray, center: np.ndarray, p: dict
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per scalp vertex: density (0..1], length factor, distance to the front hairline."""
    rim = boundary_vertices(faces)
    if rim.size == 0:                    # a closed scalp has no hairline
        rim_d = np.full(len(verts), np.inf)
        front_d = np.full(len(verts), np.inf)
    else:
        rim_d = cKDTree(verts[rim]).query(verts)[0]
        front = rim[verts[rim, 2] > center[2]]       # the body faces +z
        front_d = cKDTree(verts[front]).query(verts)[0] if front.size else np.full(len(verts), np.inf)
    edge = _smoothstep(rim_d / max(p["hairline_width"], 1e-9))
    density = p["hairline_density"] + (1 - p["hairline_density"]) * edge
    crown = verts[np.argmax((verts - center) @ _CROWN_DIRECTION)]
    dc = np.linalg.norm(verts - crown, axis=1)
    density = density * (1 - (1 - p["crown_density"]) * np.exp(-0.5 * (dc / p["crown_radius"]) ** 2))
    length = p["hairline_length"] + (1 - p["hairline_length"]) * edge
    # The nape: the back of the scalp below the head centre, shortest at its lowest point.
    low = verts[:, 1].min()
    rise = _smoothstep((verts[:, 1] - low) / max(p["nape_height"], 1e-9))
    back = verts[:, 2] < center[2]
    length = np.where(back, length * (p["nape_length"] + (1 - p["nape_length"]) * rise), length)
    return np.maximum(density, 1e-3), length, front_d


def on_triangles(weight: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n points on triangles picked in proportion to `weight` (area times a density), uniform on
    each: the triangle index and the barycentric coordinates of each point."""
    f = rng.choice(len(weight), size=n, p=weight / weight.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    return f, np.stack([1 - s, s * (1 - r2), s * r2], axis=1)


def sample(verts: np.ndarray, faces: np.ndarray, n: int, center: np.ndarray, p: dict,
           rng: np.random.Generator) -> Roots:
    """n roots, area x density weighted, with smooth normals and their maps' values."""
    tri = verts[faces]                                            # (M, 3, 3)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])   # length = 2 * area
    area = 0.5 * np.linalg.norm(fn, axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise ValueError("scalp triangles have zero total area")
    # Faces may be wound either way: wind each so its normal points away from the head centre.
    flip = ((tri.mean(axis=1) - center) * fn).sum(axis=1) < 0
    vn = vertex_normals(verts, np.where(flip[:, None], faces[:, ::-1], faces))
    density, length, front_d = maps(verts, faces, center, p)

    f, bary = on_triangles(area * density[faces].mean(axis=1), n, rng)
    at = lambda a: np.einsum("nk,nk...->n...", bary, a[faces[f]])  # noqa: E731
    points = at(verts)
    normals = normalize(at(vn))
    fringe = (at(front_d) < p["fringe_depth"]) & (points[:, 1] > center[1])
    return Roots(points, normals, at(length), fringe)
