"""Steam and smoke: volume matter carried by Blender's particle system as soft puffs.

Each particle is a puff, a sphere of scattering medium whose density falls from its centre to its
edge as (1 - (d/r)^2)^2. It is born small and dense at its source (a hot drink's surface, a smoke
source's mouth), rises and drifts with the particle physics (Brownian turbulence, drag), grows as
it mixes with the air and thins as it grows (density ~ (r0/r)^thinning); it fades in over its
first `fade_in_s` and out over the last `fade_out` share of its life, so no puff pops in or out
between frames and the alpha through the medium is smooth in time. Overlapping puffs add up.

Why puffs and not Mantaflow: Blender's gas solver does not run in the bpy module (its Python
bindings lose their class hierarchy: "'LevelsetGrid' object has no attribute 'setConst'", an open
upstream bug), and Cycles in the bpy wheel renders no OpenVDB volume objects, only volumes inside
meshes; the renderer instances a sphere per puff (render/scene.py).

Alpha through a volume is 1 - its transmittance along the pixel's rays (the store's alpha rule);
no shader writes a coverage group inside a volume, so its group, `volume`, is what alpha holds
beyond every surface's group (render/layers.py).
"""
from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from assets import particles
from assets.shapes import Puffs
from core import ranges


def sample(c: Mapping[str, Any], rng: np.random.Generator, where: str) -> dict[str, Any]:
    """A medium's motion and look from its config block (conf/held `steam`, conf/effects `smoke`)."""
    num = lambda k: ranges.number(c[k], rng, f"{where}.{k}")   # noqa: E731
    angle = rng.uniform(0.0, 2 * np.pi)
    drift = num("drift")
    return {"rate": num("rate"), "lifetime_s": num("lifetime_s"), "lifetime_random": num("lifetime_random"),
            "motion": {"velocity": [drift * np.cos(angle), drift * np.sin(angle), num("rise")], "spread": num("spread"),
                       "gravity": 0.0, "brownian": num("brownian"), "drag": num("drag"), "size": 0.01,
                       "size_random": 0.0},
            "radius": num("radius"), "growth": num("growth"), "density": num("density"), "thinning": num("thinning"),
            "fade_in_s": num("fade_in_s"), "fade_out": num("fade_out"), "source_radius": num("source_radius"),
            "material": {"kind": "volume", "name": where.rsplit(".", 1)[-1], "part": "volume",
                         "colour": [float(x) for x in ranges.draw(c["colours"], rng, f"{where}.colours")],
                         "anisotropy": num("anisotropy")},
            "seed": int(rng.integers(2**31))}


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def puffs(m: Mapping[str, Any], source: np.ndarray, frames: int, fps: float, preroll_s: float) -> tuple[Puffs, dict]:
    """The medium `m` (sample) flowing from a source whose centre follows `source` (T,3) over the
    clip's frames, already flowing for `preroll_s` before it; its puffs and what the clip keeps of it."""
    preroll = int(round(preroll_s * fps))
    count = max(1, int(round(m["rate"] * (preroll + frames) / fps)))
    start = time.perf_counter()
    sim = particles.simulate(particles.Emitter.disc(m["source_radius"], source), count, frames, fps, preroll,
                             m["motion"], m["seed"], m["lifetime_s"], m["lifetime_random"])
    took = round(time.perf_counter() - start, 3)
    t = np.arange(frames, dtype=np.float64)[:, None]
    age = np.maximum(t - sim.born[None], 0.0) / fps                      # seconds
    life = np.maximum(sim.dies - sim.born, 1e-6)[None] / fps
    radius = m["radius"] + m["growth"] * age
    fade = _smooth(age / max(m["fade_in_s"], 1e-6)) * _smooth((life - age) / (m["fade_out"] * life))
    density = np.where(sim.alive, m["density"] * (m["radius"] / radius) ** m["thinning"] * fade, 0.0)
    shape = Puffs(sim.pos, np.where(sim.alive, radius, 0.0).astype(np.float32), density.astype(np.float32))
    return shape, {"puffs": count, "simulate_s": took}


def split(shape: Puffs, camera: Any, person: np.ndarray) -> tuple[Puffs, Puffs]:
    """The puffs nearer the camera than the person's middle over the frames they are there, and
    the rest (the effects' layer rule, assets.effects)."""
    front = particles.in_front(shape.centres, shape.density > 0, camera, person)
    pick = lambda keep: Puffs(shape.centres[:, keep], shape.radius[:, keep], shape.density[:, keep])   # noqa: E731
    return pick(front), pick(~front)
