"""Clothing: a top and a bottom per clip, sampled from conf/clothing/*.yaml, made as shells over
body regions offset along the posed skin's normals in every frame.

A shell of the posed surface follows every motion exactly (it is skinned by construction) and
lies outside the skin it covers by its thickness; hems and collars fall where the regions end.
No cloth simulation: garments are tight to loose-fitting, never draped (no skirts or hoods).
"""
from __future__ import annotations

import colorsys
from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from assets.hair.field import vertex_normals
from core import ranges
from core.colour import srgb_to_linear
from core.ranges import number

REGIONS = ("torso", "shoulder", "upper_arm", "lower_arm", "neck", "hips", "upper_leg", "lower_leg")
PATTERNS = ("solid", "stripes", "checks", "print", "knit")


def _fabric(cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    colours = []
    for _ in range(2):   # a main colour and a second one for stripes, checks and prints
        hsv = [number(cfg[k], rng, f"clothing.fabric.{k}") for k in ("hue", "saturation", "value")]
        colours.append(srgb_to_linear(np.array(colorsys.hsv_to_rgb(*hsv))).tolist())
    return {"pattern": ranges.weighted(cfg["patterns"], rng, "clothing.fabric.patterns", PATTERNS, "patterns"),
            "colour": colours[0],
            "colour_b": colours[1], "scale": number(cfg["pattern_scale"], rng, "clothing.fabric.pattern_scale"),
            "roughness": number(cfg["roughness"], rng, "clothing.fabric.roughness"),
            "sheen": number(cfg["sheen"], rng, "clothing.fabric.sheen")}


DRESSABLE = ("anny",)   # body models whose regions garments know (assets.anny_body.regions)


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
                   "fabric": _fabric(cfg["fabric"], rng)}
        out[part[:-1]] = garment if dressed and regions else None
    if body_kind not in DRESSABLE:
        out["note"] = f"the {body_kind} body has no garment regions: rendered bare"
    return out


def dress(vertices: np.ndarray, faces: np.ndarray, covered: np.ndarray, thickness: float,
          normals: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The garment over the faces whose vertices are all `covered` (V,) bool, for a posed (T,V,3)
    sequence: (T,v,3) vertices and (f,3) faces. Each is its skin vertex offset by `thickness` along
    the skin's normal (`normals`, (T,V,3), when the caller has them), then pushed out of any other
    body part it would pass into (the torso's cloth under a lowered arm, the inside of a bent
    elbow): to half its thickness above the plane of the nearest skin vertex."""
    if normals is None:
        normals = vertex_normals(vertices.astype(np.float64), faces)
    on = covered[faces].all(axis=1)
    ids = np.unique(faces[on])
    remap = np.full(len(covered), -1, np.int64)
    remap[ids] = np.arange(len(ids))
    verts = (vertices[:, ids] + thickness * normals[:, ids]).astype(np.float32)
    margin = 0.5 * thickness
    for t in range(len(verts)):
        skin = vertices[t].astype(np.float64)
        p = verts[t].astype(np.float64)
        _, j = cKDTree(skin).query(p, workers=-1)
        h = ((p - skin[j]) * normals[t, j]).sum(axis=1)
        low = h < margin
        p[low] += (margin - h[low])[:, None] * normals[t, j[low]]
        verts[t] = p
    return verts, remap[faces[on]].astype(np.int32)
