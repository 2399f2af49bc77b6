"""Strand hair geometry in numpy, in the SMPL-X rest frame (metres, Y up, the body faces +Z).

`grow` turns a scalp patch into tens of thousands of polyline strands. Roots spread over the
scalp by area times a density map (assets.hair.scalp); each strand leaves the scalp along its
normal tilted by combing (swept back, away from a part; forward for a fringe), bends down under
gravity and slides over the head and shoulders instead of entering them. Tied styles are drawn
along the scalp to a tie point, then fall as a tail or coil into a bun. Strands are then pulled
into clumps around guide strands, curled and frizzed, a few sent astray as flyaways, cut (a bob's
blunt line), each time re-walked at fixed segment lengths so these effects bend strands rather
than stretch them. Radii follow a per-strand diameter with a tapered tip.

The clump guides double as the simulation guides (assets.hair.dynamics): every strand is
bound to the guide it clumps around.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from assets.hair import scalp
from assets.hair.field import BodyField, HeadField, normalize
from assets.hair.walk import Colliders, integrate, perp_frame, resample, rewalk

_DOWN = np.array([0.0, -1.0, 0.0])
_BACK = np.array([0.0, 0.0, -1.0])   # the body faces +z
_LEFT = np.array([1.0, 0.0, 0.0])

TIES = ("none", "ponytail", "bun")
GROW_KEYS = (
    "n_strands", "points_per_strand", "length", "length_jitter", "gravity",
    "curl_radius", "curl_frequency", "curl_jitter", "curl_start",
    "frizz", "clump", "clump_shape", "n_clumps",
    "root_lift", "comb_back", "part_strength", "part_x", "comb_follow", "root_tilt",
    "root_diameter_um", "diameter_sigma", "diameter_min_um", "diameter_max_um", "tip_ratio", "taper_start",
    "hairline_width", "hairline_density", "hairline_length", "crown_density", "crown_radius",
    "nape_length", "nape_height",
    "flyaway_share", "flyaway_reach", "flyaway_length",
    "fringe", "fringe_depth", "fringe_length",
    "cut_below", "cut_jitter",
    "tie", "tie_elevation", "tie_offset", "tail_spread", "tail_gravity", "bun_radius",
    "collision_margin", "collision_bins", "body_margin", "body_reach",
)
_INT_KEYS = ("n_strands", "points_per_strand", "n_clumps", "collision_bins", "fringe")
_STR_KEYS = ("tie",)


@dataclass(frozen=True)
class Groom:
    points: np.ndarray      # (S, P, 3) float32, root to tip, rest frame
    radius: np.ndarray      # (S, P) float32, metres
    guides: np.ndarray      # (G,) strand indices of the clump (and simulation) guides
    owner: np.ndarray       # (S,) index into `guides` of each strand's guide
    flyaway: np.ndarray     # (S,) bool


def checked(params: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in GROW_KEYS if k not in params]
    if missing:
        raise ValueError(f"hair params are missing {missing}")
    p: dict[str, Any] = {}
    for k in GROW_KEYS:
        v = params[k]
        if k in _STR_KEYS:
            if v not in TIES:
                raise ValueError(f"hair param {k} must be one of {', '.join(TIES)}, got {v!r}")
            p[k] = v
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) \
                or not np.isfinite(v):
            raise ValueError(f"hair param {k} must be a finite number, got {v!r}")
        p[k] = int(v) if k in _INT_KEYS else float(v)
    positive = ("length", "root_diameter_um", "diameter_min_um", "tip_ratio", "hairline_width",
                "crown_radius", "nape_height", "fringe_length", "bun_radius", "body_reach")
    unit = ("clump", "hairline_density", "hairline_length", "crown_density", "nape_length",
            "flyaway_share", "taper_start")
    checks = {k: p[k] > 0 for k in positive}
    checks.update({k: 0 <= p[k] <= 1 for k in unit})
    checks.update({
        "n_strands": p["n_strands"] >= 1, "points_per_strand": p["points_per_strand"] >= 2,
        "n_clumps": p["n_clumps"] >= 1, "collision_bins": p["collision_bins"] >= 2,
        "diameter_max_um": p["diameter_max_um"] >= p["diameter_min_um"],
        "fringe": p["fringe"] in (0, 1),
    })
    for k in ("length_jitter", "curl_radius", "curl_frequency", "curl_start", "frizz", "root_lift",
              "diameter_sigma", "flyaway_reach", "flyaway_length", "fringe_depth", "cut_below",
              "cut_jitter", "tail_spread", "tail_gravity", "collision_margin", "body_margin", "tie_offset"):
        checks[k] = p[k] >= 0
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"hair params out of range: {', '.join(f'{k}={p[k]}' for k in bad)}")
    return p


def _lognormal(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    """Factors with mean 1."""
    return np.exp(sigma * rng.standard_normal(n) - 0.5 * sigma * sigma)


def _tied(field: HeadField, roots: np.ndarray, lengths: np.ndarray, p: dict, rng: np.random.Generator
          ) -> np.ndarray:
    """Tied hair drawn as polylines: along the scalp to the tie point, then a tail or a bun."""
    c, S = field.center, len(roots)
    tie_dir = normalize(np.array([0.0, p["tie_elevation"], -1.0]))
    tie = c + tie_dir * (field.surface(c + tie_dir * field.scale, 0.0)[0] + p["tie_offset"])
    # The leg: slerp from the root's direction to the tie's, hugging the scalp.
    K = 12
    a = normalize(roots - c)
    cos = np.clip(a @ tie_dir, -1.0, 1.0)
    ang = np.arccos(cos)[:, None]
    t = np.linspace(0.0, 1.0, K)[None, :]
    sin = np.maximum(np.sin(ang), 1e-6)
    w0, w1 = np.sin((1 - t) * ang) / sin, np.sin(t * ang) / sin
    dirs = normalize(w0[..., None] * a[:, None] + w1[..., None] * tie_dir)
    radius = field.surface(c + dirs * field.scale, 1.5 * p["collision_margin"])[0]
    leg = c + dirs * radius[..., None]
    leg[:, -1] = tie
    leg_len = np.linalg.norm(np.diff(leg, axis=1), axis=-1).sum(axis=1)
    rest = np.maximum(lengths - leg_len, 0.01)
    M = 40
    s = np.linspace(0.0, 1.0, M)[None, :] * rest[:, None]                  # (S, M) arc along the tail
    e1 = normalize(np.cross(tie_dir, _LEFT))
    e2 = np.cross(tie_dir, e1)
    theta = rng.uniform(0, 2 * np.pi, S)
    if p["tie"] == "ponytail":
        # A bundle leaving backwards and bending down, spreading slowly as it falls.
        start = normalize(tie_dir + 0.5 * _DOWN)
        d = normalize(start[None, None] + p["tail_gravity"] * s[..., None] * _DOWN)
        ds = np.diff(s, axis=1, prepend=0.0)[..., None]
        centre = tie + np.cumsum(d * ds, axis=1)
        rho = np.sqrt(rng.random(S))[:, None] * (0.006 + p["tail_spread"] * s)
        side1 = normalize(np.cross(d, _LEFT))
        side2 = np.cross(d, side1)
        tail = centre + rho[..., None] * (np.cos(theta)[:, None, None] * side1
                                          + np.sin(theta)[:, None, None] * side2)
    else:
        # A bun: each strand coils around the tie axis at its own radius and height.
        rho = p["bun_radius"] * (0.25 + 0.75 * np.sqrt(rng.random(S)))[:, None]
        ang = theta[:, None] + s / rho
        h = p["bun_radius"] * (0.3 + 0.6 * rng.random(S))[:, None] * np.minimum(1.0, s / (2 * np.pi * rho))
        tail = tie + h[..., None] * tie_dir + rho[..., None] * (
            np.cos(ang)[..., None] * e1 + np.sin(ang)[..., None] * e2) * np.minimum(1.0, 4 * s / rho)[..., None]
    return np.concatenate([leg, tail[:, 1:]], axis=1)


def grow(scalp_vertices: np.ndarray, scalp_faces: np.ndarray, head_vertices: np.ndarray,
         params: Mapping[str, Any], seed: int | np.random.Generator,
         body: BodyField | None = None) -> Groom:
    """Strands on a scalp. scalp_faces index scalp_vertices; head_vertices (all of the head, scalp
    included) and `body` (the rest of the body, if given) are only collided with. Keys of `params`
    beyond GROW_KEYS (style, material) are ignored."""
    p = checked(params)
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
    field = HeadField(head, p["collision_bins"])
    coll = Colliders(field, body, p["body_margin"])
    margin = p["collision_margin"]
    roots = scalp.sample(verts, faces, S, field.center, p, rng)
    fringe = roots.fringe & bool(p["fringe"]) & (p["tie"] == "none")
    flyaway = rng.random(S) < p["flyaway_share"]

    # Per-strand length: log-normal around the style's length times the scalp's length map; a
    # fringe falls to the brows; flyaways outgrow the mass.
    lengths = p["length"] * roots.length * np.clip(_lognormal(rng, p["length_jitter"], S), 0.25, 4.0)
    lengths = np.where(fringe, p["fringe_length"] * _lognormal(rng, p["length_jitter"], S), lengths)
    lengths = np.where(flyaway, lengths * p["flyaway_length"], lengths)
    seg = lengths / (P - 1)
    s = np.arange(P)[None, :] * seg[:, None]                       # arc length at each point
    u = np.arange(P)[None, :] / (P - 1)                            # 0 at the root, 1 at the tip

    # Combing: two fields tangent to the head: "back" turns about the ear-to-ear axis (up over
    # the forehead, back over the crown, down the back of the head; nothing at the ears), "part"
    # turns about the front-to-back axis, away from a part line. They act above the head centre
    # only; below it gravity alone shapes the hair. A fringe is combed forward instead.
    side = np.where(roots.points[:, 0] - field.center[0] >= p["part_x"], 1.0, -1.0)[:, None]
    back = np.where(fringe, -1.0, 1.0)[:, None]

    def comb(x: np.ndarray) -> np.ndarray:
        rel = (x - field.center) / field.scale
        fade = np.clip(2.0 * rel[:, 1:2], 0.0, 1.0)
        return fade * (p["comb_back"] * back * np.cross(-_LEFT, rel)
                       + p["part_strength"] * side * np.cross(_BACK, rel))

    def steer(x: np.ndarray) -> np.ndarray:
        return p["gravity"] * _DOWN + p["comb_follow"] * comb(x)

    if p["tie"] == "none":
        # The root direction: some of the normal (root_lift), the combing, a random tilt; all but
        # the normal taken along the surface.
        normals = roots.normals
        tilt = np.tan(np.radians(p["root_tilt"])) * rng.standard_normal((S, 3))
        along = comb(roots.points) + tilt
        along = along - (along * normals).sum(1, keepdims=True) * normals
        d0 = normalize(p["root_lift"] * normals + along)
        base = integrate(coll, roots.points, seg, P, margin, first=d0, steer=steer)
    else:
        drawn = _tied(field, roots.points, lengths, p, rng)
        base = rewalk(coll, resample(drawn, lengths, P), seg, margin)

    # Clumps: each strand belongs to the guide strand with the nearest root and is pulled
    # towards the guide point at the same arc length, more so towards the tip, then re-walked
    # along the pulled shape at its own segment length so the pull bends rather than stretches.
    # Flyaways stay out of their clump.
    n_clumps = min(p["n_clumps"], S)
    guides = np.sort(rng.choice(S, size=n_clumps, replace=False))
    owner = cKDTree(roots.points[guides]).query(roots.points)[1]
    g = guides[owner]
    centre = base
    if p["clump"] > 0:
        f = s / seg[g][:, None]                                    # fractional index on the guide
        i0 = np.clip(np.floor(f).astype(np.int64), 0, P - 2)
        a = (f - i0)[..., None]                                    # > 1 extrapolates past the tip
        rows = g[:, None]
        on_guide = (1 - a) * base[rows, i0] + a * base[rows, i0 + 1]
        w = (p["clump"] * u ** p["clump_shape"] * ~flyaway[:, None])[..., None]
        centre = rewalk(coll, base + w * (on_guide - base), seg, margin)

    # Curls: a helix around the centre line. Strands of a clump share the guide's curl (radius,
    # frequency, phase and reference direction) so clumped curly hair forms ringlets.
    cj = p["curl_jitter"]
    radius_f, freq_f = _lognormal(rng, cj, S), _lognormal(rng, cj, S)
    phase0 = rng.uniform(0, 2 * np.pi, S)
    phase_jitter = cj * rng.standard_normal(S)      # the strands of a clump are not in lockstep
    q = centre
    if p["curl_radius"] > 0 and p["curl_frequency"] > 0:
        tang = normalize(np.gradient(centre, axis=1))
        ref = np.cross(roots.normals[g], _DOWN)
        weak = np.linalg.norm(ref, axis=1) < 0.3                  # normal nearly vertical
        ref[weak] = np.cross(roots.normals[g][weak], _BACK)
        e1, e2 = perp_frame(tang, normalize(ref))
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
    # Flyaways arc out of the mass: a push growing towards the tip, outwards and at random.
    away = normalize(roots.normals + 0.8 * rng.standard_normal((S, 3)))
    q = q + (flyaway[:, None] * p["flyaway_reach"] * u * u)[..., None] * away[:, None]

    # Re-walk along the directions of the curled, frizzed strand at its own segment length, so
    # curls shorten the strand's reach instead of stretching it; slide over the head as before.
    pts = rewalk(coll, q, seg, margin)

    if p["cut_below"] > 0:
        # A blunt cut: a strand ends where it first passes below the cut line (jittered per strand).
        cut_y = field.center[1] - p["cut_below"] + p["cut_jitter"] * rng.standard_normal(S)
        below = pts[..., 1] < cut_y[:, None]
        crossing = below.any(axis=1) & ~flyaway & ~fringe
        if crossing.any():
            k = np.maximum(np.argmax(below, axis=1), 1)                 # first point below the line
            cum = np.concatenate([np.zeros((S, 1)), np.cumsum(np.linalg.norm(np.diff(pts, axis=1), axis=-1), 1)], 1)
            rows = np.arange(S)
            y0, y1 = pts[rows, k - 1, 1], pts[rows, k, 1]
            a = np.clip((y0 - cut_y) / np.maximum(y0 - y1, 1e-9), 0.0, 1.0)   # where the segment crosses
            new = np.maximum(cum[rows, k - 1] + a * (cum[rows, k] - cum[rows, k - 1]), 2 * margin + 1e-3)
            idx = np.flatnonzero(crossing)
            pts[idx] = resample(pts[idx], new[idx], P)

    # Radii: a diameter per strand (log-normal around the head's mean, clipped to the human
    # range), constant along the shaft, tapering to tip_ratio of it over the last stretch.
    dia = p["root_diameter_um"] * _lognormal(rng, p["diameter_sigma"], S)
    dia = np.clip(dia, p["diameter_min_um"], p["diameter_max_um"]) * 1e-6
    t = np.clip((u - p["taper_start"]) / max(1 - p["taper_start"], 1e-6), 0.0, 1.0)
    profile = 1 - (1 - p["tip_ratio"]) * t * t * (3 - 2 * t)
    radius = 0.5 * dia[:, None] * profile
    return Groom(pts.astype(np.float32), np.ascontiguousarray(radius, dtype=np.float32),
                 guides, owner, flyaway)
