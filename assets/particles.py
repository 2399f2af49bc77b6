"""Blender's particle system run on an emitter: where each particle is in each clip frame.

An emitter is a mesh (a prism of air round the view; a cup's mouth) that emits from its faces or
throughout its volume for `preroll` frames before the clip and through it, so the air is already
full when the clip begins; it may be carried along a path (the cup in a hand), and particles start
where it was at their birth. Newtonian physics with gravity scaled by `gravity`, Brownian drift,
drag and a random spread of the start velocity. The run happens in an empty Blender of its own
(the renderer starts a fresh one after it); the same inputs and seed give the same particles.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Emitter:
    verts: np.ndarray                  # (V,3) world, metres (where `path` starts, when carried)
    faces: list[tuple[int, ...]]
    volume: bool = False               # emit throughout the closed mesh, not from its faces
    path: np.ndarray | None = None     # (T,3) its offset from `verts` at each clip frame (before the clip: the first)
    floor: float = -np.inf             # below it a particle is gone

    @classmethod
    def prism(cls, footprint: np.ndarray, z_lo: float, z_hi: float, top: bool) -> "Emitter":
        """The prism on `footprint` ((4,2) x, y, counter-clockwise seen from above) from z_lo to
        z_hi: its top face, facing down (`top`: falling things), or the closed prism; below z_lo a
        particle is gone."""
        quad = [tuple(float(v) for v in xy) for xy in footprint]
        if top:
            return cls(np.array([(x, y, z_hi) for x, y in quad]), [(0, 3, 2, 1)], floor=z_lo)
        faces = [(0, 3, 2, 1), (4, 5, 6, 7), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7)]
        return cls(np.array([(x, y, z) for z in (z_lo, z_hi) for x, y in quad]), faces, volume=True, floor=z_lo)

    @classmethod
    def disc(cls, radius: float, path: np.ndarray) -> "Emitter":
        """A level disc of `radius` (a liquid's surface, a source's mouth) whose centre follows
        `path` (T,3)."""
        a = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)
        verts = np.column_stack([radius * np.cos(a), radius * np.sin(a), np.zeros_like(a)])
        return cls(verts, [tuple(range(16))], path=np.asarray(path, np.float64))


@dataclass(frozen=True)
class Particles:
    pos: np.ndarray     # (T,N,3) world
    alive: np.ndarray   # (T,N) bool
    size: np.ndarray    # (N,) radius, metres
    born: np.ndarray    # (N,) in clip frames from the clip's first (negative: during the preroll)
    dies: np.ndarray    # (N,) the same


def simulate(emitter: Emitter, count: int, frames: int, fps: float, preroll: int, p: Mapping[str, Any],
             seed: int, lifetime_s: float | None = None, lifetime_random: float = 0.0) -> Particles:
    """`count` particles emitted evenly over the preroll and the clip's `frames`; `p`: velocity
    (3,), world m/s, spread (random share of it), gravity (share of g), brownian, drag, size,
    size_random. They live `lifetime_s` (less by up to `lifetime_random` of it), or all along."""
    import bpy
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = max(1, int(round(fps)))
    scene.render.fps_base = scene.render.fps / fps
    last = preroll + frames
    scene.frame_start, scene.frame_end = 1, last
    mesh = bpy.data.meshes.new("emitter")
    mesh.from_pydata([tuple(float(x) for x in v) for v in emitter.verts], [], emitter.faces)
    obj = bpy.data.objects.new("emitter", mesh)
    scene.collection.objects.link(obj)
    if emitter.path is not None:    # keyed at every frame, held at the first through the preroll
        for f in range(1, last + 1):
            obj.location = tuple(float(x) for x in emitter.path[max(f - preroll - 1, 0)])
            obj.keyframe_insert("location", frame=f)
    obj.modifiers.new("particles", "PARTICLE_SYSTEM")
    psys = obj.particle_systems[0]
    psys.seed = int(seed) % 2**31
    s = psys.settings
    s.count = int(count)
    s.frame_start, s.frame_end = 1, last
    s.lifetime = last + 1 if lifetime_s is None else max(1.0, lifetime_s * fps)
    s.lifetime_random = float(lifetime_random)
    s.emit_from = "VOLUME" if emitter.volume else "FACE"
    s.use_emit_random = True
    s.physics_type = "NEWTON"
    s.timestep = 1.0 / fps   # a frame's seconds (Blender's default is 1/25 s whatever the frame rate: slow motion at 8 fps)
    s.normal_factor = 0.0
    s.object_align_factor = tuple(float(v) for v in p["velocity"])   # the emitter is never turned: world axes
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
        particles = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).particle_systems[0].particles
        particles.foreach_get("location", loc)
        particles.foreach_get("birth_time", born)
        particles.foreach_get("die_time", dies)
        t = f - preroll - 1
        pos[t] = loc.reshape(-1, 3)
        alive[t] = (born <= f) & (dies > f) & (pos[t, :, 2] > emitter.floor)   # gone through the floor: gone
        if t == 0:
            particles.foreach_get("size", size)
    bpy.ops.wm.read_factory_settings(use_empty=True)
    first = preroll + 1
    return Particles(pos, alive, size.copy(), born - first, dies - first)


def in_front(pos: np.ndarray, there: np.ndarray, camera: Any, person: np.ndarray) -> np.ndarray:
    """(N,) whether each particle spends the frames it is `there` (T,N) nearer the camera than the
    person's middle, on average (`pos` (T,N,3), `person` (T,V,3), world): the effects' layer rule."""
    m = camera.matrix_world
    forward, eye = -m[:, :3, 2], m[:, :3, 3]
    depth = ((pos - eye[:, None]) * forward[:, None]).sum(-1)
    mid = ((person.mean(axis=1) - eye) * forward).sum(-1)[:, None]
    return ((depth - mid) * there).sum(axis=0) / np.maximum(there.sum(axis=0), 1) < 0
