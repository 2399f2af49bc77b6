"""Eyebrows and eyelashes: short strands on the face, grown in the rest pose and carried by the head.

A face without brows reads as a mannequin, and lashes are the finest hair a matte meets where a
face turns to profile. Both are placed from the body's own eye openings (the rims of the skin
around each eye, `sites`), so they follow every phenotype: a brow is a band arching above the
upper lid, from just inside the inner corner to past the outer one, thickest at its inner end;
its hairs lie almost flat on the skin, pointing outwards and, at the inner end, upwards. Lashes
root along the lid margins and curve away from the eye, the upper ones up, the lower ones down.
They are stiff and short, so they move rigidly with the head (no dynamics).

Rest frame: the SMPL-X one (metres, Y up, the body faces +Z, +X is the body's left).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from assets.hair.field import normalize, vertex_normals
from assets.hair.scalp import on_triangles

BROW, LASH = 0, 1
_UP = np.array([0.0, 1.0, 0.0])
_FORWARD = np.array([0.0, 0.0, 1.0])


@dataclass(frozen=True)
class FaceHair:
    points: np.ndarray    # (S,P,3) rest pose
    radius: np.ndarray    # (S,P) metres
    kind: np.ndarray      # (S,) BROW or LASH


def _rim_order(v: np.ndarray) -> np.ndarray:
    """The rim vertices of one eye ordered by their angle about the rim's centre (a loop)."""
    d = v - v.mean(axis=0)
    return np.argsort(np.arctan2(d[:, 1], d[:, 0]))


def _along(loop: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n points spread along an open polyline by arc length, jittered within their share."""
    seg = np.linalg.norm(np.diff(loop, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    at = (np.arange(n) + rng.random(n)) / n * s[-1]
    return np.stack([np.interp(at, s, loop[:, k]) for k in range(3)], axis=1)


def _radius(points: int, diameter_um: np.ndarray, tip_ratio: float) -> np.ndarray:
    taper = 1.0 - (1.0 - tip_ratio) * np.linspace(0.0, 1.0, points) ** 2
    return (diameter_um[:, None] * 0.5e-6) * taper[None, :]


def _strands(roots: np.ndarray, first: np.ndarray, bend_to: np.ndarray, length: np.ndarray, bend: float,
             points: int) -> np.ndarray:
    """Strands leaving `roots` along `first`, turning towards `bend_to` by `bend` radians at the tip."""
    bend_to = np.broadcast_to(bend_to, first.shape)
    bend_to = normalize(bend_to - (bend_to * first).sum(axis=1, keepdims=True) * first)
    s = np.linspace(0.0, 1.0, points)
    angle = bend * s                                              # total turn grows along the strand
    out = np.empty((len(roots), points, 3))
    out[:, 0] = roots
    step = length[:, None] / (points - 1)
    for k in range(1, points):
        a = 0.5 * (angle[k] + angle[k - 1])
        d = normalize(np.cos(a) * first + np.sin(a) * bend_to)
        out[:, k] = out[:, k - 1] + step * d
    return out


def grow(rest_vertices: np.ndarray, faces: np.ndarray, skin_faces: np.ndarray, rims: tuple[np.ndarray, ...],
         p: Mapping[str, Any], seed: int) -> FaceHair:
    """Brows and lashes for a body whose eye openings are `rims` (vertex indices of each eye's
    skin rim) and whose face skin is `skin_faces`; `p` is a clip's `hair.face` record."""
    rng = np.random.default_rng(seed)
    normals = vertex_normals(rest_vertices.astype(np.float64), faces)
    b, la = p["brows"], p["lashes"]
    out_points, out_radius, out_kind = [], [], []

    tri = rest_vertices[skin_faces].astype(np.float64)
    centre_tri = tri.mean(axis=1)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    for rim in rims:
        v = rest_vertices[rim].astype(np.float64)
        loop = v[_rim_order(v)]
        side = np.sign(v[:, 0].mean()) or 1.0                 # +1: the body's left eye
        inner_x = v[:, 0][np.argmin(side * v[:, 0])]
        outer_x = v[:, 0][np.argmax(side * v[:, 0])]
        width = abs(outer_x - inner_x)
        top = v[:, 1].max()

        # Brow: a band above the lid; u runs 0 (inner end) .. 1 (outer end) across the face.
        x0 = inner_x - side * b["inner_extend"] * width
        x1 = outer_x + side * b["outer_extend"] * width
        u = (centre_tri[:, 0] - x0) / (x1 - x0)
        # the arch peaks a little outside the band's middle, as brows do
        mid = top + width * (b["gap"] + b["arch"] * np.sin(np.pi * np.clip(u, 0, 1) ** 0.8))
        half = 0.5 * width * (b["thickness_inner"] + (b["thickness_outer"] - b["thickness_inner"]) * np.clip(u, 0, 1))
        front = centre_tri[:, 2] > v[:, 2].mean() - width       # the face, not the temple's side
        inside = (u >= 0) & (u <= 1) & (np.abs(centre_tri[:, 1] - mid) < half) & front
        if inside.any():
            n = int(b["count"])
            f, bary = on_triangles(area * inside, n, rng)
            roots = np.einsum("nk,nkc->nc", bary, tri[f])
            nrm = normalize(np.einsum("nk,nkc->nc", bary, normals[skin_faces[f]]))
            ur = np.clip((roots[:, 0] - x0) / (x1 - x0), 0, 1)
            # Along the skin: outwards, turned upwards by more at the inner end.
            up_deg = b["up_inner_deg"] + (b["up_outer_deg"] - b["up_inner_deg"]) * ur
            up_deg = up_deg + rng.normal(0.0, b["jitter_deg"], n)
            lateral = np.array([side, 0.0, 0.0])
            t = normalize(np.cos(np.radians(up_deg))[:, None] * lateral + np.sin(np.radians(up_deg))[:, None] * _UP)
            t = normalize(t - (t * nrm).sum(axis=1, keepdims=True) * nrm)          # in the skin's plane
            lift = np.radians(b["lift_deg"])
            first = normalize(np.cos(lift) * t + np.sin(lift) * nrm)
            length = b["length"] * np.exp(b["length_sigma"] * rng.standard_normal(n)) * (1.0 - (1.0 - b["outer_length"]) * ur)
            out_points.append(_strands(roots, first, -nrm, length, b["lie_down"] * lift, int(p["points_per_strand"])))
            diam = b["diameter_um"] * np.exp(b["diameter_sigma"] * rng.standard_normal(n))
            out_radius.append(_radius(int(p["points_per_strand"]), diam, b["tip_ratio"]))
            out_kind.append(np.full(n, BROW, np.int8))

        # Lashes: along the upper and lower halves of the lid margin, away from the eye.
        centre = v.mean(axis=0)
        for lid, sign in (("upper", 1.0), ("lower", -1.0)):
            half_loop = loop[(loop[:, 1] - centre[1]) * sign >= 0]
            if len(half_loop) < 2:
                continue
            half_loop = half_loop[np.argsort(half_loop[:, 0])]
            n = int(la[f"count_{lid}"])
            roots = _along(half_loop, n, rng)
            # Shorter towards both corners (`corner_length` of the longest), as on eyelids.
            ur = np.clip((roots[:, 0] - inner_x) / (outer_x - inner_x), 0, 1)
            out_dir = normalize(roots - centre)
            lift = np.radians(la["lift_deg"])
            first = normalize(np.cos(lift) * _FORWARD + np.sin(lift) * sign * _UP + la["spread"] * out_dir)
            corner = la["corner_length"]
            # the longest lashes a little outside the lid's middle
            length = la[f"length_{lid}"] * (corner + (1 - corner) * np.sin(np.pi * (0.15 + 0.85 * ur))) \
                * np.exp(la["length_sigma"] * rng.standard_normal(n))
            # rooted a tenth of a millimetre off the margin, so no lash starts on the lid's surface
            out_points.append(_strands(roots + first * 1e-4, first, sign * _UP, length, np.radians(la["curl_deg"]),
                                       int(p["points_per_strand"])))
            diam = la["diameter_um"] * np.exp(la["diameter_sigma"] * rng.standard_normal(n))
            out_radius.append(_radius(int(p["points_per_strand"]), diam, la["tip_ratio"]))
            out_kind.append(np.full(n, LASH, np.int8))
    if not out_points:
        P = int(p["points_per_strand"])
        return FaceHair(np.zeros((0, P, 3)), np.zeros((0, P)), np.zeros(0, np.int8))
    return FaceHair(np.concatenate(out_points).astype(np.float32), np.concatenate(out_radius).astype(np.float32),
                    np.concatenate(out_kind))


def melanin(hair_colour: Mapping[str, Any], kind: np.ndarray, p: Mapping[str, Any], seed: int) -> np.ndarray:
    """(S,) melanin per face strand: the head hair's natural melanin (brows of dyed hair keep a
    natural brown), lashes at least `lashes.melanin_min`; grey heads keep more pigment in
    the brows (`brows_grey` of the head's unpigmented share)."""
    rng = np.random.default_rng(seed)
    dyed = hair_colour["kind"] == "dyed"
    base = p["dyed_melanin"] if dyed else float(hair_colour["melanin"])
    m = np.clip(base * np.exp(p["melanin_sigma"] * rng.standard_normal(len(kind))), 0.0, 1.0)
    m = np.where(kind == LASH, np.maximum(m, p["lashes"]["melanin_min"]), m)
    grey = 0.0 if dyed else p["brows_grey"] * float(hair_colour["unpigmented_share"])
    m[(kind == BROW) & (rng.random(len(kind)) < grey)] = 0.0
    return m.astype(np.float32)
