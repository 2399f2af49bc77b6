"""Hair as scene objects: the scalp's simulated strands, and the brows and lashes carried by the head."""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

from assets import stage
from assets.hair import face as face_hair
from assets.hair.colour import strand_melanin
from assets.hair.dynamics import Body, Motion, move
from assets.hair.field import BodyField, HeadField
from assets.hair.groom import Groom, grow
from assets.hair.measure import groom_stats
from assets.shapes import Curves, SceneObject
from core import seeds


def scalp_patch(posed: Any) -> tuple[np.ndarray, np.ndarray]:
    """Rest-pose scalp vertices and the faces lying wholly on the scalp, re-indexed."""
    on = posed.scalp[posed.faces].all(axis=1)
    idx = np.flatnonzero(posed.scalp)
    remap = np.full(len(posed.scalp), -1, np.int64)
    remap[idx] = np.arange(len(idx))
    return posed.rest_vertices[idx], remap[posed.faces[on]]


def hair_motion(spec: Any, posed: Any) -> tuple[Motion, Groom]:
    """The clip's groom, grown in the rest pose against head and body, then moved with them."""
    g = spec.hair["geometry"]
    scalp_v, scalp_f = scalp_patch(posed)
    head = HeadField(posed.rest_vertices[posed.head], g["collision_bins"])
    rest_body = BodyField(posed.rest_vertices, posed.faces, ~posed.head, posed.rest_joints, posed.parents, g["body_reach"])
    groom = grow(scalp_v, scalp_f, posed.rest_vertices[posed.head], g, spec.hair["seed"], body=rest_body)
    top = spec.clothing.get("top") if posed.regions is not None else None
    margin = g["body_margin"] + (top["thickness_m"] if top else 0.0)   # strands lie on the shirt, not the skin
    moving = Body(posed.vertices, posed.faces, ~posed.head, posed.joints, posed.parents, g["body_reach"], margin)
    return move(groom.points, groom.guides, groom.owner, posed.head_transform, head, g["collision_margin"], moving,
                spec.hair["dynamics"], spec.fps, spec.hair["motion_seed"]), groom


def scalp(spec: Any, posed: Any) -> list[SceneObject]:
    """The scalp's strands, simulated: posed frame by frame when the renderer asks (the last three
    frames asked for are kept: a sweep through the clip needs t-1, t and t+1)."""
    motion, groom = hair_motion(spec, posed)
    posed_at = functools.lru_cache(maxsize=3)(lambda t: stage.to_world(motion.strands(t)))
    melanin = strand_melanin(spec.hair["colour"], len(groom.points), spec.hair["seed"])
    stats = {"style": spec.hair["geometry"]["style"],
             **groom_stats(groom.points, groom.radius, posed.rest_vertices[posed.head].mean(axis=0))}
    material = {"kind": "hair", "name": "hair", **spec.hair["material"], "colour": spec.hair["colour"],
                "model": spec.cycles["hair_model"], "part": "scalp_hair"}
    collides = ("head", "body") + (("top",) if spec.clothing.get("top") and posed.regions is not None else ())
    return [SceneObject("hair", "hair", "simulated", collides,
                        Curves(stage.to_world(motion.rest), groom.radius, melanin, posed_at), (material,), stats=stats)]


def face(spec: Any, posed: Any) -> list[SceneObject]:
    """Brows and lashes where the body knows its eyes (anny) and `hair.face` is on, in the rest pose,
    carried by the head; natural melanin from the head's (never a dye). They count as face in the
    coverage pass, not as scalp hair."""
    p = spec.hair.get("face")
    if p is None or posed.face_sites is None:
        return []
    skin, rims = posed.face_sites
    fh = face_hair.grow(posed.rest_vertices, posed.faces, skin, rims, p, seeds.derive(spec.hair["seed"], "face"))
    melanin = face_hair.melanin(spec.hair["colour"], fh.kind, p, seeds.derive(spec.hair["seed"], "face_colour"))
    colour = {"kind": "natural", "melanin_redness": spec.hair["colour"]["melanin_redness"]}
    material = {"kind": "hair", "name": "face_hair", **spec.hair["material"], "colour": colour,
                "model": spec.cycles["hair_model"], "part": "face_hair"}
    stats = {"brows": int((fh.kind == face_hair.BROW).sum()), "lashes": int((fh.kind == face_hair.LASH).sum())}
    return [SceneObject("face_hair", "hair", "head", ("head",), Curves(stage.to_world(fh.points), fh.radius, melanin),
                        (material,), transform=stage.rigid_to_world(posed.head_transform.astype(np.float64)),
                        stats=stats)]
