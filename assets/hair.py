"""Strand hair geometry in numpy, in the SMPL-X rest frame (metres, Y up, the body faces +Z).

`grow` turns a scalp patch into thousands of polyline strands: roots spread over the scalp by
area, each strand leaving the scalp along its normal tilted by combing (swept back, away from a
part), bending down under gravity and sliding over the head instead of entering it; then pulled
into clumps, curled and frizzed, each time re-walked at fixed segment lengths so these effects
bend strands rather than stretch them.
`sample` resolves a style from the ranges in conf/hair/default.yaml, including the Principled
Hair BSDF numbers; this module knows only the names of the parameters (`GROW_KEYS`).

Head collision uses a radial height field around the head centre (the largest radius of the head
vertices per direction bin) rather than an ellipsoid: it is about as cheap, follows the back of
the skull, the temples and the ears, and needs only vertices.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from core import ranges, seeds

_DOWN = np.array([0.0, -1.0, 0.0])
_BACK = np.array([0.0, 0.0, -1.0])   # the body faces +z
_LEFT = np.array([1.0, 0.0, 0.0])

GROW_KEYS = (
    "n_strands", "points_per_strand", "length", "length_jitter", "gravity",
    "curl_radius", "curl_frequency", "curl_jitter", "curl_start",
    "frizz", "clump", "clump_shape", "n_clumps",
    "root_lift", "comb_back", "part_strength", "part_x", "comb_follow", "root_tilt",
    "root_radius", "tip_radius", "collision_margin", "collision_bins",
)
_INT_KEYS = ("n_strands", "points_per_strand", "n_clumps", "collision_bins")
MATERIAL_KEYS = ("melanin", "melanin_redness", "roughness", "radial_roughness", "coat", "ior",
                 "random_color", "random_roughness")


def sample_params(rng: np.random.Generator | int, cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Pick a style (by `style_weights`, else uniformly) and draw every geometry and material
    param; returns a flat dict of numbers plus "style"."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    styles = cfg.get("styles") or {}
    if not styles:
        raise ValueError("hair config has no styles")
    weights = dict(cfg.get("style_weights") or {s: 1.0 for s in styles})
    unknown = sorted(set(weights) - set(styles))
    if unknown:
        raise ValueError(f"hair style_weights name styles that are not defined: {unknown}")
    names = sorted(weights)
    w = np.array([float(weights[s]) for s in names])
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"hair style_weights must be non-negative with a positive sum, "
                         f"got {weights}")
    style = names[int(rng.choice(len(names), p=w / w.sum()))]

    style_ranges = {**(cfg.get("common") or {}), **styles[style]}
    missing = sorted(set(GROW_KEYS) - set(style_ranges))
    if missing:
        raise ValueError(f"hair style {style!r} leaves params undefined: {missing}")
    out: dict[str, Any] = {"style": style}
    for k in sorted(style_ranges):
        out[k] = ranges.draw(style_ranges[k], rng, f"hair.{style}.{k}")
    for k in _INT_KEYS:
        out[k] = int(round(out[k]))
    material = cfg.get("material") or {}
    for k in sorted(material):
        out[k] = ranges.draw(material[k], rng, f"hair.material.{k}")
    return out


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A clip's hair from the `hair:` config: geometry params (with the style), BSDF params and the
    seed the strands grow from."""
    params = sample_params(np.random.default_rng(seed), cfg)
    material = {k: params.pop(k) for k in MATERIAL_KEYS if k in params}
    return {"geometry": params, "material": material, "seed": seeds.derive(seed, "strands")}


# --- geometry helpers ---------------------------------------------------------------------------

def _normalize(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)


class _HeadField:
    """Radial height field of a head: the largest vertex radius per direction bin around the
    head centre, read with bilinear interpolation (the margin absorbs the binning error)."""

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
        theta = np.arccos(np.clip(u[..., 1], -1.0, 1.0))      # 0 at the top of the head
        phi = np.arctan2(u[..., 0], u[..., 2])                  # 0 towards the face
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


def _step(field: _HeadField, prev: np.ndarray, cand: np.ndarray, seg: np.ndarray,
          margin: np.ndarray) -> np.ndarray:
    """Resolve one segment end against the head, keeping the segment length where possible:
    push the end out, turn the segment towards it at full length, push again if still inside."""
    pushed, inside = field.push_out(cand, margin)
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return cand
    out = cand.copy()
    again = prev[idx] + seg[idx, None] * _normalize(pushed[idx] - prev[idx])
    out[idx] = field.push_out(again, margin[idx])[0]
    return out


def _integrate(field: _HeadField, roots: np.ndarray, seg: np.ndarray, P: int, margin: float,
               dirs: np.ndarray | None = None, targets: np.ndarray | None = None,
               first: np.ndarray | None = None, steer=None) -> np.ndarray:
    """Walk strands from the roots, one segment of length `seg` at a time, resolving collisions.

    Segment directions come from `dirs` (S, P-1, 3), or point at `targets` (S, P, 3) from the
    previous point (follow-the-leader), or are grown from `first` (S, 3), each step turned by
    seg * steer(points) (a (S, 3) field in 1/m). The collision margin fades in over the first
    4 margins of length: a strand leaves the scalp, it cannot start above it."""
    S = roots.shape[0]
    pts = np.empty((S, P, 3))
    pts[:, 0] = roots
    d = None
    ramp = 4.0 * margin if margin > 0 else 1.0
    for k in range(1, P):
        prev = pts[:, k - 1]
        if dirs is not None:
            d = dirs[:, k - 1]
        elif targets is not None:
            d = _normalize(targets[:, k] - prev)
        elif k == 1:
            d = first
        else:
            d = _normalize(d + seg[:, None] * steer(prev))
        m = margin * np.minimum(1.0, k * seg / ramp)
        c = _step(field, prev, prev + seg[:, None] * d, seg, m)
        if dirs is None and targets is None:
            d = _normalize(c - prev)
        pts[:, k] = c
    return pts


def _sample_roots(verts: np.ndarray, faces: np.ndarray, n: int, center: np.ndarray,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted points on the scalp with smooth outward normals."""
    tri = verts[faces]                                            # (M, 3, 3)
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])   # length = 2 * area
    area = 0.5 * np.linalg.norm(fn, axis=1)
    if not np.isfinite(area).all() or area.sum() <= 0:
        raise ValueError("scalp triangles have zero total area")
    # Faces may be wound either way: orient each normal away from the head centre.
    flip = ((tri.mean(axis=1) - center) * fn).sum(axis=1) < 0
    fn[flip] *= -1
    vn = np.zeros_like(verts)
    for j in range(3):
        np.add.at(vn, faces[:, j], fn)
    vn = _normalize(vn)

    f = rng.choice(len(faces), size=n, p=area / area.sum())
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    bary = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)       # uniform on each triangle
    roots = np.einsum("nk,nkd->nd", bary, tri[f])
    normals = _normalize(np.einsum("nk,nkd->nd", bary, vn[faces[f]]))
    return roots, normals


def _perp_frame(t: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors u, v perpendicular to tangents t (S,P,3), u as close to ref (S,3) as can be."""
    u = ref[:, None, :] - (t @ ref[:, :, None]) * t
    u = _normalize(u)
    return u, np.cross(t, u)


# --- growing ----------------------------------------------------------------------------------

def _checked(params: Mapping[str, Any]) -> dict[str, float]:
    missing = [k for k in GROW_KEYS if k not in params]
    if missing:
        raise ValueError(f"hair params are missing {missing}")
    p = {}
    for k in GROW_KEYS:
        v = params[k]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v):
            raise ValueError(f"hair param {k} must be a finite number, got {v!r}")
        p[k] = int(v) if k in _INT_KEYS else float(v)
    checks = {
        "n_strands": p["n_strands"] >= 1, "points_per_strand": p["points_per_strand"] >= 2,
        "length": p["length"] > 0, "length_jitter": p["length_jitter"] >= 0,
        "n_clumps": p["n_clumps"] >= 0, "collision_bins": p["collision_bins"] >= 2,
        "root_radius": p["root_radius"] > 0, "tip_radius": p["tip_radius"] > 0,
        "curl_radius": p["curl_radius"] >= 0, "curl_frequency": p["curl_frequency"] >= 0,
        "curl_start": p["curl_start"] >= 0, "clump": 0 <= p["clump"] <= 1,
        "frizz": p["frizz"] >= 0, "root_lift": p["root_lift"] >= 0,
        "collision_margin": p["collision_margin"] >= 0,
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"hair params out of range: {', '.join(f'{k}={p[k]}' for k in bad)}")
    return p


def grow(scalp_vertices: np.ndarray, scalp_faces: np.ndarray, head_vertices: np.ndarray,
         params: Mapping[str, Any], seed: int | np.random.Generator
         ) -> tuple[np.ndarray, np.ndarray]:
    """Strands on a scalp: points (S, P, 3) float32 from root to tip and radius (S, P) float32.

    scalp_faces index scalp_vertices; head_vertices (all of the head, scalp included) are only
    used for collision. Keys of `params` beyond GROW_KEYS (style, material) are ignored.
    """
    p = _checked(params)
    verts = np.asarray(scalp_vertices, dtype=np.float64)
    faces = np.asarray(scalp_faces)
    head = np.asarray(head_vertices, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] != 3 or len(verts) < 3:
        raise ValueError(f"scalp_vertices must have shape (N>=3, 3), got {verts.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0 \
            or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"scalp_faces must be integer indices of shape (M>=1, 3), got "
                         f"{faces.shape} {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise ValueError(f"scalp_faces index outside scalp_vertices (0..{len(verts) - 1})")
    if head.ndim != 2 or head.shape[1] != 3 or len(head) < 4:
        raise ValueError(f"head_vertices must have shape (H>=4, 3), got {head.shape}")
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed

    S, P = p["n_strands"], p["points_per_strand"]
    field = _HeadField(head, p["collision_bins"])
    margin = p["collision_margin"]
    roots, normals = _sample_roots(verts, faces, S, field.center, rng)

    # Per-strand length: log-normal with mean `length`, clipped so no strand is absurd.
    sig = p["length_jitter"]
    lengths = p["length"] * np.exp(sig * rng.standard_normal(S) - 0.5 * sig * sig)
    lengths = np.clip(lengths, 0.25 * p["length"], 4.0 * p["length"])
    seg = lengths / (P - 1)
    s = np.arange(P)[None, :] * seg[:, None]                       # arc length at each point
    u = np.arange(P)[None, :] / (P - 1)                            # 0 at the root, 1 at the tip

    # Combing: two fields tangent to the head: "back" turns about the ear-to-ear axis (up over
    # the forehead, back over the crown, down the back of the head; nothing at the ears), "part"
    # turns about the front-to-back axis, away from a part line. They act above the head centre
    # only; below it gravity alone shapes the hair.
    side = np.where(roots[:, 0] - field.center[0] >= p["part_x"], 1.0, -1.0)[:, None]

    def comb(x: np.ndarray) -> np.ndarray:
        rel = (x - field.center) / field.scale
        fade = np.clip(2.0 * rel[:, 1:2], 0.0, 1.0)
        return fade * (p["comb_back"] * np.cross(-_LEFT, rel)
                       + p["part_strength"] * side * np.cross(_BACK, rel))

    def steer(x: np.ndarray) -> np.ndarray:
        return p["gravity"] * _DOWN + p["comb_follow"] * comb(x)

    # The root direction: some of the normal (root_lift), the combing, a random tilt; all but
    # the normal taken along the surface.
    tilt = np.tan(np.radians(p["root_tilt"])) * rng.standard_normal((S, 3))
    along = comb(roots) + tilt
    along = along - (along * normals).sum(1, keepdims=True) * normals
    d0 = _normalize(p["root_lift"] * normals + along)
    base = _integrate(field, roots, seg, P, margin, first=d0, steer=steer)

    # Clumps: each strand belongs to the guide strand with the nearest root and is pulled
    # towards the guide point at the same arc length, more so towards the tip, then re-walked
    # along the pulled shape at its own segment length so the pull bends rather than stretches.
    # (Strands lying on the head cannot converge through it: collisions keep them apart.)
    n_clumps = min(p["n_clumps"], S)
    guides = rng.choice(S, size=max(n_clumps, 1), replace=False)
    owner = cKDTree(roots[guides]).query(roots)[1]
    g = guides[owner]
    if p["clump"] > 0 and n_clumps > 0:
        f = s / seg[g][:, None]                                    # fractional index on the guide
        i0 = np.clip(np.floor(f).astype(np.int64), 0, P - 2)
        a = (f - i0)[..., None]                                    # > 1 extrapolates past the tip
        rows = g[:, None]
        on_guide = (1 - a) * base[rows, i0] + a * base[rows, i0 + 1]
        w = (p["clump"] * u ** p["clump_shape"])[..., None]
        target = base + w * (on_guide - base)
        centre = _integrate(field, roots, seg, P, margin, dirs=_normalize(np.diff(target, axis=1)))
    else:
        centre = base
        g = np.arange(S)          # no clumps: every strand curls on its own

    # Curls: a helix around the centre line. Strands of a clump share the guide's curl (radius,
    # frequency, phase and reference direction) so clumped curly hair forms ringlets.
    cj = p["curl_jitter"]
    radius_f = np.exp(cj * rng.standard_normal(S) - 0.5 * cj * cj)
    freq_f = np.exp(cj * rng.standard_normal(S) - 0.5 * cj * cj)
    phase0 = rng.uniform(0, 2 * np.pi, S)
    phase_jitter = cj * rng.standard_normal(S)      # the strands of a clump are not in lockstep
    q = centre
    if p["curl_radius"] > 0 and p["curl_frequency"] > 0:
        tang = _normalize(np.gradient(centre, axis=1))
        ref = np.cross(normals[g], _DOWN)
        weak = np.linalg.norm(ref, axis=1) < 0.3                  # normal nearly vertical
        ref[weak] = np.cross(normals[g][weak], _BACK)
        e1, e2 = _perp_frame(tang, _normalize(ref))
        radius = p["curl_radius"] * radius_f[g]
        phase = 2 * np.pi * (p["curl_frequency"] * freq_f[g])[:, None] * s \
            + (phase0[g] + phase_jitter)[:, None]
        ramp = np.clip(u / max(p["curl_start"], 1e-6), 0.0, 1.0)
        ramp = ramp * ramp * (3 - 2 * ramp)                        # smoothstep: roots stay put
        off = (radius[:, None] * ramp)[..., None] * (np.cos(phase)[..., None] * e1
                                                     + np.sin(phase)[..., None] * e2)
        q = q + off

    frizz = rng.standard_normal((S, P, 3))
    if p["frizz"] > 0:
        q = q + (p["frizz"] * u * u)[..., None] * frizz

    # Re-walk along the directions of the curled, frizzed strand at its own segment length, so
    # curls shorten the strand's reach instead of stretching it; slide over the head as before.
    pts = _integrate(field, roots, seg, P, margin, dirs=_normalize(np.diff(q, axis=1)))

    radius = p["root_radius"] + (p["tip_radius"] - p["root_radius"]) * u
    radius = np.broadcast_to(radius, (S, P))
    return pts.astype(np.float32), np.ascontiguousarray(radius, dtype=np.float32)
