"""Clothing: a top and a bottom per clip, sampled from conf/clothing/*.yaml, made as shells over
body regions offset along the posed skin's normals in every frame.

A shell of the posed surface follows every motion exactly (it is skinned by construction) and
lies outside the skin it covers by its thickness; hems and collars fall where the regions end.
A skirt is not a shell: it hangs from the waist as rings around the hips and legs
(`skirt`), each ring outside every leg vertex at its height in every frame and never narrower
than the ring above, so it flares, follows the legs apart when they stride, and turns with the
pelvis. No cloth simulation: nothing swings or drapes in folds (no hoods either).
"""
from __future__ import annotations

import colorsys
from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from assets import stage
from assets.hair.field import open_edges, vertex_normals
from assets.shapes import Mesh, SceneObject
from core import ranges
from core.colour import srgb_to_linear
from core.ranges import number

REGIONS = ("torso", "shoulder", "upper_arm", "lower_arm", "neck", "hips", "upper_leg", "lower_leg")
PATTERNS = ("solid", "stripes", "checks", "print", "knit")


def fabric(cfg: Mapping[str, Any], rng: np.random.Generator, where: str = "clothing.fabric") -> dict[str, Any]:
    """A fabric drawn from a fabric section (`where` names it in errors): pattern, two colours,
    pattern scale, roughness, sheen; render.materials.fabric draws it."""
    colours = []
    for _ in range(2):   # a main colour and a second one for stripes, checks and prints
        hsv = [number(cfg[k], rng, f"{where}.{k}") for k in ("hue", "saturation", "value")]
        colours.append(srgb_to_linear(np.array(colorsys.hsv_to_rgb(*hsv))).tolist())
    return {"pattern": ranges.weighted(cfg["patterns"], rng, f"{where}.patterns", PATTERNS, "patterns"),
            "colour": colours[0],
            "colour_b": colours[1], "scale": number(cfg["pattern_scale"], rng, f"{where}.pattern_scale"),
            "roughness": number(cfg["roughness"], rng, f"{where}.roughness"),
            "sheen": number(cfg["sheen"], rng, f"{where}.sheen")}


HANGING = ("skirt",)    # kinds made by `skirt` (hung from the waist), not as shells by `dress`
DRESSABLE = ("anny",)   # body models whose regions garments know (assets.anny_body.regions)


def check(cfg: Mapping[str, Any]) -> None:
    """Every garment kind a weights table can draw has its regions (known ones) and thickness."""
    for part in ("tops", "bottoms"):
        c = cfg[part]
        for kind, w in c["weights"].items():
            if kind not in c["regions"] or kind not in c["thickness_m"]:
                raise ValueError(f"clothing.{part}.weights.{kind}: no such garment (known: "
                                 f"{', '.join(sorted(set(c['regions']) & set(c['thickness_m'])))})")
            bad = sorted(set(c["regions"][kind]) - set(REGIONS))
            if bad:
                raise ValueError(f"clothing.{part}.regions.{kind} names unknown regions {bad}; known: {', '.join(REGIONS)}")


def sample(cfg: Mapping[str, Any], seed: int, body_kind: str) -> dict[str, Any]:
    """{"top": garment or None, "bottom": garment or None}; a garment is its kind, the body regions
    it covers, its thickness and its fabric. Bodies without known regions stay bare, and say so."""
    rng = np.random.default_rng(seed)
    dressed = bool(rng.uniform() < cfg["share"]) and body_kind in DRESSABLE
    out: dict[str, Any] = {}
    for part in ("tops", "bottoms"):
        c = cfg[part]
        kind = ranges.weighted(c["weights"], rng, f"clothing.{part}.weights")
        if kind not in c["regions"] or kind not in c["thickness_m"]:
            raise ValueError(f"clothing.{part}: kind {kind!r} needs regions and thickness_m")
        regions = list(c["regions"][kind])
        bad = sorted(set(regions) - set(REGIONS))
        if bad:
            raise ValueError(f"clothing.{part}.regions.{kind} names unknown regions {bad}; known: {', '.join(REGIONS)}")
        garment = {"kind": kind, "regions": regions,
                   "thickness_m": number(c["thickness_m"][kind], rng, f"clothing.{part}.thickness_m.{kind}"),
                   "fabric": fabric(cfg["fabric"], rng), "hem_smoothing": int(cfg["hem_smoothing"])}
        if kind in HANGING:
            h = c[kind]
            garment["hang"] = {"hem": number(h["hem"], rng, f"clothing.{part}.{kind}.hem"),
                               "flare": number(h["flare"], rng, f"clothing.{part}.{kind}.flare"),
                               "rings": int(h["rings"]), "sectors": int(h["sectors"])}
        out[part[:-1]] = garment if dressed and regions else None
    if body_kind not in DRESSABLE:
        out["note"] = f"the {body_kind} body has no garment regions: rendered bare"
    return out


def hem_neighbours(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mesh's open edges as (vertex, neighbour along the rim) pairs, both ways round."""
    rim = open_edges(faces)
    return np.concatenate([rim[:, 0], rim[:, 1]]), np.concatenate([rim[:, 1], rim[:, 0]])


def smooth_hems(verts: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Hems and collars cut along the body's triangle edges zigzag from one row of vertices to the
    next; averaging each rim vertex with its neighbours along the rim (`iterations` times, every
    frame alike) straightens them to the line between the rows. (T,v,3) -> the same, rims moved."""
    if iterations <= 0:
        return verts
    a, b = hem_neighbours(faces)
    out = verts.astype(np.float64)
    degree = np.bincount(a, minlength=verts.shape[1])
    on = degree > 0
    for _ in range(iterations):
        total = np.zeros_like(out)
        np.add.at(total, (slice(None), a), out[:, b])
        out[:, on] = 0.5 * out[:, on] + 0.5 * total[:, on] / degree[on][:, None]
    return out.astype(verts.dtype)


def dress(vertices: np.ndarray, faces: np.ndarray, covered: np.ndarray, thickness: float,
          normals: np.ndarray | None = None, hem_smoothing: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The garment over the faces whose vertices are all `covered` (V,) bool, for a posed (T,V,3)
    sequence: (T,v,3) vertices and (f,3) faces. Each is its skin vertex offset by `thickness` along
    the skin's normal (`normals`, (T,V,3), when the caller has them), its hems smoothed
    (`smooth_hems`), then pushed out of any other body part it would pass into (the torso's cloth
    under a lowered arm, the inside of a bent elbow): to half its thickness above the plane of
    the nearest skin vertex."""
    if normals is None:
        normals = vertex_normals(vertices.astype(np.float64), faces)
    on = covered[faces].all(axis=1)
    ids = np.unique(faces[on])
    remap = np.full(len(covered), -1, np.int64)
    remap[ids] = np.arange(len(ids))
    garment_faces = remap[faces[on]].astype(np.int32)
    verts = smooth_hems((vertices[:, ids] + thickness * normals[:, ids]).astype(np.float32), garment_faces,
                        hem_smoothing)
    margin = 0.5 * thickness
    for t in range(len(verts)):
        skin = vertices[t].astype(np.float64)
        p = verts[t].astype(np.float64)
        _, j = cKDTree(skin).query(p, workers=-1)
        h = ((p - skin[j]) * normals[t, j]).sum(axis=1)
        low = h < margin
        p[low] += (margin - h[low])[:, None] * normals[t, j[low]]
        verts[t] = p
    return verts, garment_faces


def skirt(vertices: np.ndarray, joints: np.ndarray, inside: np.ndarray, waist: np.ndarray, thickness: float,
          hang: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A skirt for a posed (T,V,3) Y-up sequence: (T, rings*sectors, 3) vertices and their faces.

    It hangs from the top of the `waist` vertices (V,) bool down to `hang["hem"]` of the way to the
    lowest `inside` vertex (the legs), on rings about the pelvis joint in the pelvis's heading (so
    the cloth turns with the body). A ring's radius in each angular sector is the farthest inside
    vertex near that height and angle (and its neighbour sectors', so chords between ring points
    stay outside) plus `thickness`, never less than the ring above plus `flare` per metre of drop.
    Over time the radii are smoothed and never drop below their frame's own need."""
    n_rings, n_sec = hang["rings"], hang["sectors"]
    pelvis, hips = joints[:, 0].astype(np.float64), joints[:, 1:3].astype(np.float64)
    rest_top = np.quantile(vertices[0, waist, 1], 0.95) - pelvis[0, 1]
    rest_low = vertices[0, inside, 1].min() - pelvis[0, 1]
    drop = hang["hem"] * (rest_top - rest_low)
    heights = np.linspace(rest_top, rest_top - drop, n_rings)        # relative to the pelvis, falling
    step = drop / max(n_rings - 1, 1)
    angles = np.linspace(0.0, 2 * np.pi, n_sec, endpoint=False)
    T = len(vertices)
    radius = np.zeros((T, n_rings, n_sec))
    heading = np.zeros(T)
    for t in range(T):
        side = hips[t, 0] - hips[t, 1]                               # left hip - right hip: the body's +x
        heading[t] = np.arctan2(-side[2], side[0])
        d = vertices[t, inside].astype(np.float64) - pelvis[t]
        theta = (np.arctan2(d[:, 2], d[:, 0]) + heading[t]) % (2 * np.pi)
        r = np.hypot(d[:, 0], d[:, 2])
        sector = np.minimum((theta / (2 * np.pi) * n_sec).astype(int), n_sec - 1)
        for k, y in enumerate(heights):
            near = np.abs(d[:, 1] - y) <= step
            need = np.zeros(n_sec)
            np.maximum.at(need, sector[near], r[near])
            seen = np.zeros(n_sec, bool)
            seen[sector[near]] = True
            if seen.any() and not seen.all():   # sectors no vertex falls in: between their neighbours
                centres = np.flatnonzero(seen)
                need = np.interp(np.arange(n_sec), centres, need[centres], period=n_sec)
            need = np.maximum(need, np.maximum(np.roll(need, 1), np.roll(need, -1)))
            radius[t, k] = need + thickness
            if k:
                radius[t, k] = np.maximum(radius[t, k], radius[t, k - 1] + hang["flare"] * step)
    if T > 2:
        smooth = radius.copy()
        smooth[1:-1] = 0.25 * radius[:-2] + 0.5 * radius[1:-1] + 0.25 * radius[2:]
        radius = np.maximum(radius, smooth)
    a = angles[None, :] - heading[:, None]                            # (T, sectors) world angles
    x = pelvis[:, None, None, 0] + radius * np.cos(a)[:, None, :]
    z = pelvis[:, None, None, 2] + radius * np.sin(a)[:, None, :]
    y = np.broadcast_to(pelvis[:, None, None, 1] + heights[None, :, None], radius.shape)
    verts = np.stack([x, y, z], axis=-1).reshape(T, n_rings * n_sec, 3).astype(np.float32)
    i = np.arange(n_rings - 1)[:, None] * n_sec + np.arange(n_sec)[None, :]
    j = (i // n_sec) * n_sec + (i + 1) % n_sec                        # the next sector, wrapping
    quads = np.stack([i, j, j + n_sec, i + n_sec], axis=-1).reshape(-1, 4)
    faces = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]]).astype(np.int32)   # normals outwards
    return verts, faces


def objects(spec: Any, posed: Any) -> list[SceneObject]:
    """The clip's top and bottom over the posed body (a body with garment regions: anny), each a
    fabric mesh in every frame and its own coverage group."""
    out, normals = [], None
    for part in ("top", "bottom"):
        g = spec.clothing.get(part)
        if not g or posed.regions is None:
            continue
        if normals is None:   # the skin's, shared by top and bottom
            normals = vertex_normals(posed.vertices.astype(np.float64), posed.faces)
        covered = np.logical_or.reduce([posed.regions[r] for r in g["regions"]])
        if g["kind"] in HANGING:
            verts, faces = skirt(posed.vertices, posed.joints, covered, posed.regions["hips"], g["thickness_m"], g["hang"])
        else:
            verts, faces = dress(posed.vertices, posed.faces, covered, g["thickness_m"], normals, g["hem_smoothing"])
        out.append(SceneObject(part, "worn", "body", ("body",), Mesh(faces, stage.to_world(verts)),
                               ({"kind": "fabric", "name": part, **g["fabric"], "part": part},)))
    return out
