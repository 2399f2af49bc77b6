"""Effects in the air round the person: snow, rain, dust, bubbles, moved by Blender's particle
system (assets.particles) in the air the camera sees, from just in front of it to behind the
person, already full when the clip begins.

Which layer a particle belongs to is decided once per particle, by where it spends the clip: in
front of the person (nearer the camera than the person's middle) it is foreground, matted with
the person in `alpha` and `fgr` and labelled `effect` in `parts`, so trainers can weight it or
leave it out; behind, it is part of the set, seen only by the background plate (`bgr`). Snow and
dust are opaque specks (a speck smaller than a pixel covers a share of it); rain drops and
bubbles are see-through surfaces under the store's alpha rule (water passes most of the light
behind it; what it bends is not modelled, `refracts: false`).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from assets import particles, volumes
from assets.shapes import Mesh, SceneObject
from core import ranges

KINDS = ("snow", "rain", "dust", "bubbles", "smoke")
# a particle's shape: an octahedron (six vertices) scaled by its size
_OCTA_V = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], np.float32)
_OCTA_F = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])


def check(cfg: Mapping[str, Any]) -> None:
    ranges.weighted(cfg["kinds"], np.random.default_rng(0), "effects.kinds", KINDS, "kinds")


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """Whether the clip has an effect (`share`), and if so its kind, density, motion and look."""
    rng = np.random.default_rng(seed)
    if not rng.uniform() < cfg["share"]:
        return None
    kind = ranges.weighted(cfg["kinds"], rng, "effects.kinds", KINDS, "kinds")
    c, where = cfg[kind], f"effects.{kind}"
    if c["look"] == "volume":   # a plume from a source beside the person (assets.volumes)
        source = {k: ranges.number(c["source"][k], rng, f"{where}.source.{k}") for k in ("side", "depth", "below")}
        source["side"] *= rng.choice([-1.0, 1.0])
        return {"kind": kind, **volumes.sample(c, rng, where), "source": source,
                "preroll_s": float(c["preroll_s"])}
    num = lambda k: ranges.number(c[k], rng, f"{where}.{k}")   # noqa: E731
    motion = {"from": c["from"], "velocity": [num("drift"), 0.0, -num("fall")], "spread": num("spread"),
              "gravity": num("gravity"), "brownian": num("brownian"), "drag": num("drag"), "size": num("size"),
              "size_random": num("size_random")}
    if c["look"] == "see_through":
        tau = num("transmittance")
        mirror = [float(x) for x in ranges.draw(c["mirror_colours"], rng, f"{where}.mirror_colours")]
        material = {"kind": "see_through", "name": kind, "transmittance": [tau] * 3, "opacity": 1.0 - tau,
                    "ior": num("ior"), "mirror_rgb": mirror, "roughness": 0.0, "refracts": False}
    else:
        material = {"kind": "flat", "name": kind, "roughness": num("roughness"),
                    "colour": [float(x) for x in ranges.draw(c["colours"], rng, f"{where}.colours")]}
    return {"kind": kind, "density": num("density"), "motion": motion, "material": material,
            "seed": int(rng.integers(2**31)), "preroll_s": float(cfg["preroll_s"]),
            "depth_m": [float(x) for x in cfg["depth_m"]]}


def _air(camera: Any, person: np.ndarray, depth: list[float]) -> tuple[np.ndarray, float, float]:
    """The air the camera sees round the person at the start: on the floor, the footprint of its
    view (a quad, counter-clockwise from above) from `depth[0]` in front of the camera to
    `depth[1]` behind the person's middle, widened by a tenth; and the heights from the floor to
    the view's top there (or above the person)."""
    m = camera.matrix_world[0]
    eye, forward, right = m[:3, 3], -m[:3, 2], m[:3, 0]
    far = float((person[0].mean(axis=0) - eye) @ forward) + depth[1]
    half_h = 0.5 * camera.sensor_mm / float(camera.lens_mm.min())    # per metre of distance
    half_w = 1.1 * half_h * camera.width / camera.height
    flat = np.array([forward[0], forward[1], 0.0]) / max(np.hypot(forward[0], forward[1]), 1e-9)
    side = np.array([right[0], right[1], 0.0]) / max(np.hypot(right[0], right[1]), 1e-9)
    quad = [eye + d * flat + s * half_w * d * side for d, s in ((depth[0], -1), (depth[0], 1), (far, 1), (far, -1))]
    xy = np.array(quad)[:, :2]
    if np.cross(xy[1] - xy[0], xy[2] - xy[1]) < 0:
        xy = xy[::-1]
    floor = float(person[..., 2].min())
    top = max(float(eye[2] + forward[2] * far + 1.1 * half_h * far), float(person[..., 2].max()) + 0.3)
    return xy, floor, top


def _specks(pos: np.ndarray, alive: np.ndarray, size: np.ndarray) -> Mesh:
    """One octahedron per particle and frame; a particle not alive is a point (it covers nothing)."""
    scale = np.where(alive, size[None], 0.0)[..., None, None]          # (T,N,1,1)
    verts = pos[:, :, None] + scale * _OCTA_V[None, None]               # (T,N,6,3)
    faces = (_OCTA_F[None] + 6 * np.arange(pos.shape[1])[:, None, None]).reshape(-1, 3)
    return Mesh(faces, verts.reshape(len(pos), -1, 3).astype(np.float32))


def _plume(e: dict, spec: Any, camera: Any, person: np.ndarray) -> list[SceneObject]:
    """Smoke rising into view from a source just below the view's bottom edge (`below` metres),
    `side` of the view's half width to the camera's left or right of its middle, `depth` metres
    nearer the camera than the person's middle (negative: behind); puffs in front of the person
    foreground (`volume`), behind them the set."""
    m = camera.matrix_world[0]
    eye, right, up, forward = m[:3, 3], m[:3, 0], m[:3, 1], -m[:3, 2]
    s = e["source"]
    d = float((person[0].mean(axis=0) - eye) @ forward) - s["depth"]
    half_h = 0.5 * camera.sensor_mm / float(camera.lens_mm[0]) * d
    half_w = half_h * camera.width / camera.height
    at = eye + d * forward + s["side"] * half_w * right - half_h * up
    at[2] -= s["below"]
    shape, stats = volumes.puffs(e, np.repeat(at[None], spec.n_frames, axis=0), spec.n_frames, spec.fps, e["preroll_s"])
    front, behind = volumes.split(shape, camera, person)
    stats = {"kind": e["kind"], **stats, "in_front": int(front.density.any(axis=0).sum())}
    out = []
    for name, puffs, plate in (("effect", front, False), ("effect_behind", behind, True)):
        if puffs.density.any():
            material = {**e["material"], "part": None if plate else e["material"]["part"]}
            out.append(SceneObject(name, "set" if plate else "effect", "simulated", (), puffs, (material,),
                                   plate=plate, stats={} if plate else stats))
    return out


def objects(spec: Any, camera: Any, person: np.ndarray) -> list[SceneObject]:
    """The clip's effect, if any: the particles in front of the person as foreground, those behind
    as part of the set. `person` (T,V,3): the posed body, world."""
    e = spec.effects
    if not e:
        return []
    if "source" in e:
        return _plume(e, spec, camera, person)
    footprint, floor, top = _air(camera, person, e["depth_m"])
    x, y = footprint[:, 0], footprint[:, 1]
    area = 0.5 * abs(float(x @ np.roll(y, -1) - y @ np.roll(x, -1)))
    count = max(1, int(round(e["density"] * area * (top - floor))))
    start = time.perf_counter()
    emitter = particles.Emitter.prism(footprint, floor, top, e["motion"]["from"] == "top")
    sim = particles.simulate(emitter, count, spec.n_frames, spec.fps, int(round(e["preroll_s"] * spec.fps)),
                             e["motion"], e["seed"])
    pos, alive, size = sim.pos, sim.alive, sim.size
    took = round(time.perf_counter() - start, 3)
    front = particles.in_front(pos, alive, camera, person)
    stats = {"kind": e["kind"], "particles": count, "in_front": int(front.sum()), "simulate_s": took}
    out = []
    for name, keep, part, plate in (("effect", front, "effect", False), ("effect_behind", ~front, None, True)):
        if keep.any():
            material = {**e["material"], "part": part}
            out.append(SceneObject(name, "effect" if not plate else "set", "simulated", (),
                                   _specks(pos[:, keep], alive[:, keep], size[keep]), (material,), plate=plate,
                                   stats=stats if not plate else {}))
    return out
