"""render_clip(spec): the renderer as a pure function of a ClipSpec.

Geometry comes from assets (posed body, motion, strands), the picture from one Cycles scene,
and the result is the store's arrays plus what the render itself resolved (device, camera).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from assets import body, clothing, hair, motions
from core import seeds
from core.colour import quantise_alpha
from render import frames
from render.scene import Geometry, build_and_render
from render.spec import ClipSpec


@dataclass(frozen=True)
class RenderedClip:
    arrays: dict[str, np.ndarray]   # fgr uint8 (T,H,W,3), alpha and alpha_hair uint16 (T,H,W)
    info: dict                      # device, Cycles seconds, resolved camera


def scalp_patch(posed: body.PosedBody) -> tuple[np.ndarray, np.ndarray]:
    """Rest-pose scalp vertices and the faces lying wholly on the scalp, re-indexed."""
    on = posed.scalp[posed.faces].all(axis=1)
    idx = np.flatnonzero(posed.scalp)
    remap = np.full(len(posed.scalp), -1, np.int64)
    remap[idx] = np.arange(len(idx))
    return posed.rest_vertices[idx], remap[posed.faces[on]]


def hair_motion(spec: ClipSpec, posed: body.PosedBody) -> tuple[hair.Motion, hair.Groom]:
    """The clip's groom, grown in the rest pose against head and body, then moved with them."""
    g = spec.hair["geometry"]
    scalp_v, scalp_f = scalp_patch(posed)
    head = hair.HeadField(posed.rest_vertices[posed.head], g["collision_bins"])
    rest_body = hair.BodyField(posed.rest_vertices, posed.faces, ~posed.head, posed.rest_joints, posed.parents,
                               g["body_reach"])
    groom = hair.grow(scalp_v, scalp_f, posed.rest_vertices[posed.head], g, spec.hair["seed"], body=rest_body)
    top = spec.clothing.get("top") if posed.regions is not None else None
    margin = g["body_margin"] + (top["thickness_m"] if top else 0.0)   # strands lie on the shirt, not the skin
    moving = hair.Body(posed.vertices, posed.faces, ~posed.head, posed.joints, posed.parents, g["body_reach"], margin)
    return hair.move(groom.points, groom.guides, groom.owner, posed.head_transform, head,
                     g["collision_margin"], moving, spec.hair["dynamics"], spec.fps, spec.hair["motion_seed"]), groom


def geometry(spec: ClipSpec) -> Geometry:
    motion = motions.motion_frames(spec.motion, spec.n_frames, spec.fps)
    posed = body.pose_body(spec.body["model"], spec.body["betas"], motion, spec.body)
    moving, groom = hair_motion(spec, posed)
    melanin = hair.strand_melanin(spec.hair["colour"], len(groom.points), spec.hair["seed"])
    garments, normals = [], None
    for part in ("top", "bottom"):
        g = spec.clothing.get(part)
        if g and posed.regions is not None:
            if normals is None:   # the skin's, shared by top and bottom
                normals = hair.vertex_normals(posed.vertices.astype(np.float64), posed.faces)
            covered = np.logical_or.reduce([posed.regions[r] for r in g["regions"]])
            if g["kind"] in clothing.HANGING:
                verts, faces = clothing.skirt(posed.vertices, posed.joints, covered, posed.regions["hips"],
                                              g["thickness_m"], g["hang"])
            else:
                verts, faces = clothing.dress(posed.vertices, posed.faces, covered, g["thickness_m"], normals,
                                              g["hem_smoothing"])
            garments.append({"name": part, "vertices": verts, "faces": faces, "fabric": g["fabric"]})
    stats = hair.groom_stats(groom.points, groom.radius, posed.rest_vertices[posed.head].mean(axis=0))
    face_hair = brows_and_lashes(spec, posed)
    if face_hair is not None:
        stats["brows"] = int((face_hair["kind"] == hair.face.BROW).sum())
        stats["lashes"] = int((face_hair["kind"] == hair.face.LASH).sum())
    return Geometry(posed.faces, posed.vertices, posed.joints, posed.head_transform, posed.rest_vertices,
                    moving, groom.radius, melanin, {"style": spec.hair["geometry"]["style"], **stats},
                    posed.face_uv, posed.face_part, tuple(garments), face_hair)


def brows_and_lashes(spec: ClipSpec, posed: body.PosedBody) -> dict | None:
    """The clip's brows and lashes in the rest pose, where the body knows its eyes (anny) and
    `hair.face` is on; None otherwise (the clip's hair stats then have no brow or lash counts)."""
    p = spec.hair.get("face")
    if p is None or posed.face_sites is None:
        return None
    skin, rims = posed.face_sites
    fh = hair.face.grow(posed.rest_vertices, posed.faces, skin, rims, p, seeds.derive(spec.hair["seed"], "face"))
    return {"points": fh.points, "radius": fh.radius, "kind": fh.kind,
            "melanin": hair.face.melanin(spec.hair["colour"], fh.kind, p, seeds.derive(spec.hair["seed"], "face_colour"))}


def render_clip(spec: ClipSpec, threads: int = 0, on_frame: Callable[[int], None] | None = None) -> RenderedClip:
    """The clip's arrays and render record; `on_frame(n)` hears of each finished frame."""
    geo = geometry(spec)
    out = build_and_render(spec, geo, threads=threads, on_frame=on_frame)
    fgr, alpha = frames.to_store(out.rgba, out.alpha, spec.cycles["fgr_min_alpha"])
    info = {"device": out.device, "cycles_seconds": sum(out.seconds.values()), "pass_seconds": out.seconds,
            "camera": out.camera,
            "hair_seconds": out.hair_seconds,
            "hair": geo.hair_stats, "body_vertices": int(geo.vertices.shape[1])}
    arrays = {"fgr": fgr, "alpha": alpha}
    if out.hair is not None:
        arrays["alpha_hair"] = quantise_alpha(out.hair)
    if out.bgr is not None:
        arrays["bgr"] = frames.plate_to_store(out.bgr)
    return RenderedClip(arrays, info)
