"""Earrings fitted to the ears: a stud on the lobe, a hoop through it, or a drop hanging from it.

The piercing is found on each ear's own mesh: `pierce_up` above the lobe's lowest point, through
the lobe from its outer face. A stud sits on the outer face; a hoop passes through the piercing
and hangs below it, turned back from the side of the head until it keeps `clearance` from the
skin; a drop is a short wire straight down ending in a bead. Carried rigidly by the head, as
worn things are here (a drop does not swing).

Rest frame: the SMPL-X one (metres, Y up, the body faces +Z, +X is the body's left).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from assets.worn.mesh import join, loft, tube

KINDS = ("stud", "hoop", "drop")
TURN_STEPS_DEG = np.arange(30.0, 91.0, 5.0)   # the hoop's plane, back from across the head


@dataclass(frozen=True)
class Earrings:
    vertices: np.ndarray        # (V,3) rest pose, both ears
    faces: np.ndarray
    piercings: np.ndarray       # (2,3) the left ear's first
    record: dict


def _sphere(centre: np.ndarray, radius: float, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
    lat = np.linspace(0.0, np.pi, n)[1:-1]
    lon = np.linspace(0.0, 2 * np.pi, 2 * n, endpoint=False)
    rings = np.stack([np.stack([np.sin(a) * np.cos(lon), np.cos(a) * np.ones_like(lon), np.sin(a) * np.sin(lon)], 1)
                      for a in lat])
    verts, faces = loft(centre + radius * rings, closed=False, caps=False)
    top, bottom = len(verts), len(verts) + 1
    m = len(lon)
    caps = [[top, (k + 1) % m, k] for k in range(m)] + \
           [[bottom, (len(lat) - 1) * m + k, (len(lat) - 1) * m + (k + 1) % m] for k in range(m)]
    return np.concatenate([verts, centre + radius * np.array([[0, 1, 0], [0, -1, 0]])]), \
        np.concatenate([faces, np.asarray(caps, np.int64)])


def fit(rest_vertices: np.ndarray, ears: tuple[np.ndarray, np.ndarray], p: Mapping[str, Any]) -> Earrings:
    """A pair of earrings: `ears` each ear's vertices (the left first), `p` a clip's `worn.earrings`
    record (its kind and sizes)."""
    v = rest_vertices.astype(np.float64)
    skin = cKDTree(v)
    kind = p["kind"]
    parts, piercings, turns = [], [], []
    for side, ear in ((1.0, v[ears[0]]), (-1.0, v[ears[1]])):
        lobe = ear[np.argmin(ear[:, 1])]
        near = ear[np.linalg.norm(ear - lobe, axis=1) < p["pierce_up"] + 0.004]
        hole = np.array([lobe[0], lobe[1] + p["pierce_up"], lobe[2]])
        hole[0] = side * (side * near[:, 0]).max()      # on the lobe's outer face
        piercings.append(hole)
        if kind == "stud":
            parts.append(_sphere(hole + [side * 0.6 * p["size"], 0.0, 0.0], p["size"]))
        elif kind == "drop":
            end = hole + [side * p["wire"], -p["length"], 0.0]
            path = np.linspace(hole + [side * p["wire"], 0.0, 0.0], end, 8)
            parts.append(tube(path, p["wire"], p["wire"], np.array([1.0, 0.0, 0.0]), closed=False, sides=6))
            parts.append(_sphere(end - [0.0, p["size"], 0.0], p["size"]))
        else:   # a hoop through the hole, its plane turned back until it clears the skin
            t = np.linspace(0.0, 2 * np.pi, 40, endpoint=False)
            for turn in TURN_STEPS_DEG:
                a = np.radians(turn)
                across = np.array([side * np.cos(a), 0.0, -np.sin(a)])
                centre = hole - [0.0, p["size"] - p["wire"], 0.0]
                ring = centre + p["size"] * (np.cos(t)[:, None] * across + np.sin(t)[:, None] * [0.0, 1.0, 0.0])
                lower = ring[ring[:, 1] < hole[1] - 0.004]       # what hangs free below the lobe
                if skin.query(lower)[0].min() > p["clearance"] + p["wire"]:
                    break
            turns.append(float(turn))
            parts.append(tube(ring, p["wire"], p["wire"], np.cross(across, [0.0, 1.0, 0.0]), closed=True, sides=6))
    verts, faces = join(parts)
    record = {"kind": kind, "hoop_turn_deg": turns} if turns else {"kind": kind}
    return Earrings(verts.astype(np.float32), faces, np.array(piercings), record)
