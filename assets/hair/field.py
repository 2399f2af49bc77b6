"""What hair collides with: the head as a radial height field, the rest of the body as a point
cloud with outward normals. Both only push points out; neither knows strands.

The head field is the largest radius of the head vertices per direction bin around the head
centre, read with bilinear interpolation (the margin absorbs the binning error). It is about as
cheap as an ellipsoid, follows the back of the skull, the temples and the ears, and needs only
vertices. The body below the head (neck, shoulders, back, chest, arms) is too concave for one
field, so points are tested against the plane of their nearest vertex instead: exact enough for
thin strands arriving from outside a millimetre at a time, and a k-d tree query per step.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def normalize(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)



class HeadField:
    """Radial height field of a head, in the frame of the vertices it was built from."""

    def __init__(self, head_vertices: np.ndarray, bins: int):
        v = np.asarray(head_vertices, dtype=np.float64)
        self.center = 0.5 * (v.min(axis=0) + v.max(axis=0))
        self.scale = float(np.linalg.norm(v - self.center, axis=1).mean())
        self.nt, self.np_ = int(bins), 2 * int(bins)
        it, ip, r = self._bin(v)
        grid = np.zeros((self.nt, self.np_))
        np.maximum.at(grid, (it, ip), r)
        # Empty bins (sparse vertices, or no surface in that direction) take their neighbours'
        # largest radius, spreading outwards until every bin has a value.
        for _ in range(self.nt + self.np_):
            empty = grid <= 0
            if not empty.any():
                break
            grid = np.where(empty, self._dilate(grid), grid)
        self.grid = grid

    def _dilate(self, g: np.ndarray) -> np.ndarray:
        out = g.copy()
        for dt in (-1, 0, 1):
            rows = np.clip(np.arange(self.nt) + dt, 0, self.nt - 1)
            for dp in (-1, 0, 1):
                out = np.maximum(out, np.roll(g[rows], dp, axis=1))
        return out

    def _angles(self, p: np.ndarray):
        d = p - self.center
        r = np.linalg.norm(d, axis=-1)
        u = d / np.maximum(r, 1e-12)[..., None]
        # Contiguous copies: numpy's SIMD arccos and arctan2 on a strided view round with the
        # memory alignment, which made the same spec grow different strands from run to run.
        ux, uy, uz = (np.ascontiguousarray(u[..., i]) for i in range(3))
        theta = np.arccos(np.clip(uy, -1.0, 1.0))             # 0 at the top of the head
        phi = np.arctan2(ux, uz)                                # 0 towards the face
        return theta, phi, r, u

    def _bin(self, p: np.ndarray):
        theta, phi, r, _ = self._angles(p)
        it = np.clip((theta / np.pi * self.nt).astype(np.int64), 0, self.nt - 1)
        ip = ((phi + np.pi) / (2 * np.pi) * self.np_).astype(np.int64) % self.np_
        return it, ip, r

    def surface(self, p: np.ndarray, margin: np.ndarray | float):
        """Inflated surface radius along each point's direction; the point's radius; direction."""
        theta, phi, r, u = self._angles(p)
        ft = np.clip(theta / np.pi * self.nt - 0.5, 0.0, self.nt - 1.0)
        fp = (phi + np.pi) / (2 * np.pi) * self.np_ - 0.5
        t0 = np.minimum(np.floor(ft).astype(np.int64), self.nt - 2) if self.nt > 1 else \
            np.zeros_like(ft, dtype=np.int64)
        t1 = np.minimum(t0 + 1, self.nt - 1)
        at = ft - t0
        p0 = np.floor(fp).astype(np.int64)
        ap = fp - p0
        p0 %= self.np_
        p1 = (p0 + 1) % self.np_
        g = self.grid
        rs = ((1 - at) * ((1 - ap) * g[t0, p0] + ap * g[t0, p1])
              + at * ((1 - ap) * g[t1, p0] + ap * g[t1, p1]))
        return rs + margin, r, u

    def push_out(self, p: np.ndarray, margin: np.ndarray | float
                 ) -> tuple[np.ndarray, np.ndarray]:
        """Points moved radially onto the inflated surface where they are inside; and the mask."""
        rs, r, u = self.surface(p, margin)
        inside = r < rs
        out = np.where(inside[..., None], self.center + u * rs[..., None], p)
        return out, inside


def open_edges(faces: np.ndarray) -> np.ndarray:
    """(E,2) vertex pairs of the edges used by exactly one face: a mesh patch's rim."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    return uniq[count == 1]


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (winding as the faces have it) of (..., V, 3) vertices: one
    mesh, or a posed sequence of it."""
    tri = vertices[..., faces, :]
    fn = np.cross(tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :])
    vn = np.zeros_like(vertices, dtype=np.float64)
    for j in range(3):
        np.add.at(vn, (Ellipsis, faces[:, j], slice(None)), fn)
    return normalize(vn)


def nearest_bone_point(points: np.ndarray, joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """For each point, the nearest point on the skeleton's bones (joint-to-parent segments)."""
    j = np.asarray(joints, dtype=np.float64)
    child = np.flatnonzero((np.asarray(parents) >= 0) & (np.asarray(parents) < len(j)))
    a, b = j[np.asarray(parents)[child]], j[child]                        # (B, 3)
    ab = b - a
    p = np.asarray(points, dtype=np.float64)[:, None]                     # (N, 1, 3)
    t = np.clip(((p - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    on = a + t[..., None] * ab                                            # (N, B, 3)
    best = np.argmin(((p - on) ** 2).sum(-1), axis=1)
    return on[np.arange(len(on)), best]


class BodyField:
    """The body without its head: nearest-vertex planes with normals facing away from the
    nearest bone (the body meshes need not be one consistently wound surface, and where parts
    overlap, as an arm beside the chest, the part's own bone says which side is out)."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, keep: np.ndarray,
                 joints: np.ndarray, parents: np.ndarray, reach: float):
        v = np.asarray(vertices, dtype=np.float64)
        n = vertex_normals(v, np.asarray(faces))
        flip = ((v - nearest_bone_point(v, joints, parents)) * n).sum(axis=1) < 0
        n[flip] *= -1
        self.vertices, self.normals = v[keep], n[keep]
        self.tree = cKDTree(self.vertices)
        self.reach = float(reach)

    def depth(self, p: np.ndarray) -> np.ndarray:
        """Signed distance of points above their nearest vertex's plane (inf beyond `reach`)."""
        flat = p.reshape(-1, 3)
        dist, idx = self.tree.query(flat, distance_upper_bound=self.reach, workers=-1)
        out = np.full(len(flat), np.inf)
        near = np.isfinite(dist)
        j = idx[near]
        out[near] = ((flat[near] - self.vertices[j]) * self.normals[j]).sum(axis=1)
        return out.reshape(p.shape[:-1])

    def push_out(self, p: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
        flat = p.reshape(-1, 3)
        dist, idx = self.tree.query(flat, distance_upper_bound=self.reach, workers=-1)
        near = np.flatnonzero(np.isfinite(dist))
        out = flat.copy()
        inside = np.zeros(len(flat), bool)
        if near.size:
            j = idx[near]
            h = ((flat[near] - self.vertices[j]) * self.normals[j]).sum(axis=1)
            hit = h < margin
            k = near[hit]
            out[k] += (margin - h[hit])[:, None] * self.normals[j[hit]]
            inside[k] = True
        return out.reshape(p.shape), inside.reshape(p.shape[:-1])
