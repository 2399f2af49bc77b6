"""Triangle meshes for worn things: rings lofted into a surface, tubes swept along a path (rims,
temples, a brim's edge, a headband, a hoop), and several parts joined into one mesh."""
from __future__ import annotations

import numpy as np


def loft(rings: np.ndarray, closed: bool, caps: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A surface through rings (K,N,3) of N points each, ring k joined to ring k+1 (and the last to
    the first when `closed`); an open loft's end rings capped by a fan round their centres."""
    k, n = rings.shape[:2]
    verts = rings.reshape(-1, 3)
    faces = []
    for i in range(k if closed else k - 1):
        j = (i + 1) % k
        for a in range(n):
            b = (a + 1) % n
            faces += [[i * n + a, j * n + a, j * n + b], [i * n + a, j * n + b, i * n + b]]
    if caps and not closed:
        base = len(verts)
        verts = np.concatenate([verts, rings[[0, -1]].mean(axis=1)])
        for c, row, flip in ((base, 0, True), (base + 1, k - 1, False)):
            for a in range(n):
                f = [c, row * n + (a + 1) % n, row * n + a]
                faces.append(f[::-1] if flip else f)
    return verts, np.asarray(faces, np.int64)


def tube(path: np.ndarray, half_w: float, half_d: float, normal: np.ndarray, closed: bool,
         sides: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A tube of elliptical section along a polyline (P,3): `half_d` along `normal` (the direction
    the section's depth keeps, as near as the path allows), `half_w` across it; open ends capped."""
    tangent = np.roll(path, -1, axis=0) - np.roll(path, 1, axis=0) if closed else np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    depth = normal - (normal @ tangent.T).T[:, None] * tangent if normal.ndim == 1 else \
        normal - (normal * tangent).sum(axis=1, keepdims=True) * tangent
    depth /= np.linalg.norm(depth, axis=1, keepdims=True)
    width = np.cross(tangent, depth)
    a = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False)
    ring = np.cos(a)[None, :, None] * half_w * width[:, None] + np.sin(a)[None, :, None] * half_d * depth[:, None]
    return loft(path[:, None] + ring, closed)


def join(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Parts (vertices, faces) as one mesh, each part's faces renumbered after those before it."""
    verts, faces, n = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + n)
        n += len(v)
    return np.concatenate(verts), np.concatenate(faces)
