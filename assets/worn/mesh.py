"""Triangle meshes for worn things: tubes swept along a path (rims, temples, a brim's edge) and
several parts joined into one mesh."""
from __future__ import annotations

import numpy as np


def tube(path: np.ndarray, half_w: float, half_d: float, normal: np.ndarray, closed: bool,
         sides: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """A tube of elliptical section along a polyline (P,3): `half_d` along `normal` (the direction
    the section's depth keeps, as near as the path allows), `half_w` across it; open ends capped."""
    p = len(path)
    tangent = np.roll(path, -1, axis=0) - np.roll(path, 1, axis=0) if closed else np.gradient(path, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    depth = normal - (normal @ tangent.T).T[:, None] * tangent if normal.ndim == 1 else \
        normal - (normal * tangent).sum(axis=1, keepdims=True) * tangent
    depth /= np.linalg.norm(depth, axis=1, keepdims=True)
    width = np.cross(tangent, depth)
    a = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False)
    ring = np.cos(a)[None, :, None] * half_w * width[:, None] + np.sin(a)[None, :, None] * half_d * depth[:, None]
    verts = (path[:, None] + ring).reshape(-1, 3)
    faces = []
    for i in range(p if closed else p - 1):
        j = (i + 1) % p
        for k in range(sides):
            m = (k + 1) % sides
            faces += [[i * sides + k, j * sides + k, j * sides + m], [i * sides + k, j * sides + m, i * sides + m]]
    if not closed:   # caps: a fan round each end's centre
        ends = np.array([path[0], path[-1]])
        base = len(verts)
        verts = np.concatenate([verts, ends])
        for c, row, flip in ((base, 0, True), (base + 1, p - 1, False)):
            for k in range(sides):
                f = [c, row * sides + (k + 1) % sides, row * sides + k]
                faces.append(f[::-1] if flip else f)
    return verts, np.asarray(faces, np.int64)


def join(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Parts (vertices, faces) as one mesh, each part's faces renumbered after those before it."""
    verts, faces, n = [], [], 0
    for v, f in parts:
        verts.append(v)
        faces.append(f + n)
        n += len(v)
    return np.concatenate(verts), np.concatenate(faces)
