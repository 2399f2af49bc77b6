"""Blender's cloth solver run on numpy meshes: a piece of cloth, the vertices pinned to what wears it,
and the meshes it collides with, all in world coordinates (metres, Z up) frame by frame.

The cloth starts in the shape it is given (its rest lengths), held with the colliders in their
first frame for `settle` frames so it drapes before the clip begins, then follows the clip. The
run happens in an empty Blender of its own (the renderer starts a fresh one after it) and is
deterministic: the same inputs give the same cloth, bit for bit.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Collider:
    faces: np.ndarray        # (F,3)
    vertices: np.ndarray     # (T,V,3) world, per clip frame


def _keyed(obj, frames: np.ndarray, settle: int) -> None:
    """Per-frame positions as shape keys, each keyed one-hot at its Blender frame: clip frame t at
    settle + 1 + t, the first frame held through the settling frames before it (the solver reads
    whole frames only, so how keys interpolate between them does not matter)."""
    obj.shape_key_add(name="basis", from_mix=False)
    for t, verts in enumerate(frames):
        kb = obj.shape_key_add(name=f"f{t:04d}", from_mix=False)
        kb.data.foreach_set("co", verts.astype(np.float32).ravel())
        on = range(1, settle + 2) if t == 0 else (settle + 1 + t,)
        for f in (min(on) - 1, *on, max(on) + 1):
            kb.value = 1.0 if f in on else 0.0
            kb.keyframe_insert("value", frame=f)


def simulate(faces: np.ndarray, start: np.ndarray, pinned: np.ndarray, goals: np.ndarray,
             colliders: list[Collider], fps: float, settle: int, p: Mapping[str, Any]) -> np.ndarray:
    """The cloth's vertices (T,V,3) in each clip frame.

    faces (F,3); start (V,3): the cloth at the start, also its rest shape (its lengths and bends:
    Blender starts a cloth with a rest shape key from that key, so a folded start is a folded
    rest); pinned (V,) bool: the
    vertices held to `goals` (T,V,3, world; only the pinned rows are read); colliders: what it
    stays outside of; `p`: the solver's settings (conf: mass, tension, compression, shear,
    bending, air_damping, quality, collision_quality, distance, friction, pin_stiffness,
    self_collision)."""
    import bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    T = goals.shape[0]
    scene.render.fps = max(1, int(round(fps)))
    scene.render.fps_base = scene.render.fps / fps
    scene.frame_start, scene.frame_end = 1, settle + T
    for i, c in enumerate(colliders):
        mesh = bpy.data.meshes.new(f"collider{i}")
        mesh.from_pydata(c.vertices[0].astype(np.float64).tolist(), [], c.faces.tolist())
        obj = bpy.data.objects.new(f"collider{i}", mesh)
        scene.collection.objects.link(obj)
        _keyed(obj, c.vertices, settle)
        obj.modifiers.new("collision", "COLLISION")
        obj.collision.thickness_outer = 0.5 * p["distance"]
        obj.collision.cloth_friction = p["friction"]
    mesh = bpy.data.meshes.new("cloth")
    mesh.from_pydata(start.astype(np.float64).tolist(), [], faces.tolist())
    cloth = bpy.data.objects.new("cloth", mesh)
    scene.collection.objects.link(cloth)
    moving = np.repeat(start[None], T, axis=0)
    moving[:, pinned] = goals[:, pinned]
    _keyed(cloth, moving, settle)
    group = cloth.vertex_groups.new(name="pin")
    group.add(np.flatnonzero(pinned).tolist(), 1.0, "REPLACE")
    mod = cloth.modifiers.new("cloth", "CLOTH")
    s = mod.settings
    s.vertex_group_mass = "pin"
    s.quality = int(p["quality"])
    s.mass = p["mass"]
    s.tension_stiffness, s.compression_stiffness = p["tension"], p["compression"]
    s.shear_stiffness, s.bending_stiffness = p["shear"], p["bending"]
    s.air_damping = p["air_damping"]
    s.pin_stiffness = p["pin_stiffness"]
    col = mod.collision_settings
    col.use_collision, col.use_self_collision = True, bool(p["self_collision"])
    col.self_distance_min = p["distance"]
    col.collision_quality = int(p["collision_quality"])
    col.distance_min = p["distance"]
    mod.point_cache.frame_start, mod.point_cache.frame_end = 1, settle + T
    out = np.empty((T, len(start), 3), np.float32)
    co = np.empty(len(start) * 3, np.float64)
    for f in range(1, settle + T + 1):
        scene.frame_set(f)
        if f > settle:
            ev = cloth.evaluated_get(bpy.context.evaluated_depsgraph_get())
            ev.data.vertices.foreach_get("co", co)
            out[f - settle - 1] = co.reshape(-1, 3)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return out
