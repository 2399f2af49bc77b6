"""Blender's particle system run on a prism of air: where each particle is in each clip frame.

The prism stands on a footprint (a quad on the floor) from `z_lo` to `z_hi`. Particles are
emitted from its top face (falling: snow, rain) or throughout it (drifting: dust, bubbles) for `preroll` frames before the clip and through it, so the box is already full
when the clip begins; Newtonian physics with gravity scaled by `gravity`, Brownian drift, drag
and a random spread of the start velocity. The run happens in an empty Blender of its own (the
renderer starts a fresh one after it); the same inputs and seed give the same particles.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def simulate(footprint: np.ndarray, z_lo: float, z_hi: float, count: int, frames: int, fps: float, preroll: int,
             p: Mapping[str, Any], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions (T,N,3), alive (T,N) bool, sizes (N,)) of `count` particles in the prism on
    `footprint` ((4,2) x, y, counter-clockwise seen from above) from z_lo to z_hi (world, metres;
    below z_lo a particle is gone) over `frames` clip frames; `p`: from ("top" or "volume"), velocity (3,), m/s,
    spread (random share of it), gravity (share of g), brownian, drag, size, size_random."""
    import bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = max(1, int(round(fps)))
    scene.render.fps_base = scene.render.fps / fps
    last = preroll + frames
    scene.frame_start, scene.frame_end = 1, last
    quad = [tuple(float(v) for v in xy) for xy in footprint]
    if p["from"] == "top":       # the top face, facing down
        verts = [(x, y, z_hi) for x, y in quad]
        faces = [(0, 3, 2, 1)]
    else:                        # the closed prism
        verts = [(x, y, z) for z in (z_lo, z_hi) for x, y in quad]
        faces = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
    mesh = bpy.data.meshes.new("air")
    mesh.from_pydata(verts, [], faces)
    emitter = bpy.data.objects.new("air", mesh)
    scene.collection.objects.link(emitter)
    emitter.modifiers.new("particles", "PARTICLE_SYSTEM")
    psys = emitter.particle_systems[0]
    psys.seed = int(seed) % 2**31
    s = psys.settings
    s.count = int(count)
    s.frame_start, s.frame_end = 1, last
    s.lifetime = last + 1
    s.emit_from = "FACE" if p["from"] == "top" else "VOLUME"
    s.use_emit_random = True
    s.physics_type = "NEWTON"
    s.normal_factor = 0.0
    s.object_align_factor = tuple(float(v) for v in p["velocity"])
    s.factor_random = float(p["spread"]) * float(np.linalg.norm(p["velocity"]) + 0.05)
    s.brownian_factor = float(p["brownian"])
    s.drag_factor = float(p["drag"])
    s.effector_weights.gravity = float(p["gravity"])
    s.particle_size, s.size_random = float(p["size"]), float(p["size_random"])
    s.render_type = "NONE"
    n = s.count
    pos = np.empty((frames, n, 3), np.float32)
    alive = np.zeros((frames, n), bool)
    loc, born, dies = np.empty(n * 3, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
    size = np.empty(n, np.float32)
    for f in range(1, last + 1):
        scene.frame_set(f)
        if f <= preroll:
            continue
        particles = emitter.evaluated_get(bpy.context.evaluated_depsgraph_get()).particle_systems[0].particles
        particles.foreach_get("location", loc)
        particles.foreach_get("birth_time", born)
        particles.foreach_get("die_time", dies)
        t = f - preroll - 1
        pos[t] = loc.reshape(-1, 3)
        alive[t] = (born <= f) & (dies > f) & (pos[t, :, 2] > z_lo)   # gone through the floor: gone
        if t == 0:
            particles.foreach_get("size", size)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    return pos, alive, size.copy()
