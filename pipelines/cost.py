"""What a render run will cost, from one probe frame, before any of it is spent (`dry_run=true`).

The probe renders frame 1 of a planned clip with the configured Cycles settings (colour and alpha
passes, the threads each worker gets), converts it to the store's arrays and compresses it with the
store's codecs. The per-clip fixed cost is the clip's geometry at its full length plus Blender's
scene set-up around the render. What is simulated in only some clips (a scarf's cloth, particles
in the air, the people beside the target) is measured on the probe clip, chosen as the first planned
clip with the most of them, and counted in the estimate by the share of planned clips that have
each (of the people, their mean number). The probe's frame is rendered with all its people: with
several, the per-frame figure is the dearer end. It is one frame, so the figures are an estimate: frames differ in
how much hair covers them, and workers sharing CPUs beyond `cpus_per_worker` slow each other.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path


import numpy as np

import clipstore
from core import quiet
from pipelines.table import columns
from render.spec import ClipSpec


@dataclasses.dataclass(frozen=True)
class Probe:
    """Seconds and bytes measured on one frame of one clip."""
    clip_id: str
    threads: int
    pass_s: dict[str, float]   # Cycles' seconds for the one frame, per pass (colour, coverage, plate)
    convert_s: float           # EXR layers -> the store's arrays (every output), one frame
    geometry_s: float          # the scene: posed body, garments and hair for the whole clip (paid once per clip)
    scene_s: float             # Blender reset, scene build and teardown around the render
    stored_bytes: int          # one frame as the store holds it, compressed
    sim_s: dict = dataclasses.field(default_factory=dict)   # of geometry_s, each simulation's (scarf, effect)

    @property
    def frame_s(self) -> float:
        return sum(self.pass_s.values()) + self.convert_s

    @property
    def fixed_s(self) -> float:
        return self.geometry_s + self.scene_s


@dataclasses.dataclass(frozen=True)
class Estimate:
    n_clips: int
    n_frames: int              # per clip
    workers: int
    clip_s: float              # one clip, start to finish, in one worker
    wall_s: float              # every clip, `workers` at a time
    store_bytes: int


def probe(spec: ClipSpec, threads: int, compression: clipstore.Compression) -> Probe:
    """Frame 1 of `spec` rendered as a worker renders it (scene for the whole clip, every pass and
    output the spec asks for), timed and stored in a throwaway store."""
    from assets import scene as scenes   # the body model and bpy load only when a probe runs
    from render.scene import build_and_render
    with quiet.chatter():   # the body model's kernel compiler and Blender print to stdout
        start = time.perf_counter()
        scene = scenes.build(spec)
        geometry_s = time.perf_counter() - start
        start = time.perf_counter()
        out = build_and_render(spec, scene, threads=threads, frames_to_render=1)
        build_s = time.perf_counter() - start
    first = {name: a[:1] for name, a in out.arrays.items()}
    sims = {o.name: float(o.stats["simulate_s"]) for o in scene.objects if "simulate_s" in o.stats} | scene.seconds
    return Probe(spec.clip_id, threads, dict(out.seconds), out.convert_seconds, geometry_s,
                 max(build_s - sum(out.seconds.values()) - out.convert_seconds, 0.0),
                 stored_bytes(first, compression, spec.outputs), sims)


SIMULATED = {"scarf": lambda s: bool(s.worn.get("scarf")), "effect": lambda s: bool(s.effects),
             "steam": lambda s: bool(s.held and s.held.get("steam")),
             "people": lambda s: len(s.people["others"])}   # scene object names (people: the others, counted)


def probe_clip(todo: list[ClipSpec]) -> tuple[ClipSpec, dict[str, float]]:
    """The clip to probe (the first of the planned ones with the most simulations: its scene
    measures them) and what the planned clips simulate on average of what it does (the share of
    them that simulate each; of the other people, their mean number over the probe's)."""
    count = lambda s: sum(float(has(s)) for has in SIMULATED.values())   # noqa: E731
    best = max(todo[:200], key=count)
    return best, {k: float(np.mean([has(s) for s in todo])) / max(float(has(best)), 1.0) for k, has in SIMULATED.items()}


def cache_key(cfg: dict, definition_hash: str) -> str:
    """What a probe's figures depend on: the dataset's definition, this machine, the threads each
    worker gets and the device asked for."""
    where = {"definition": definition_hash, "host": platform.node(), "cpus": os.cpu_count(),
             "threads": cfg["cluster"]["cpus_per_worker"], "device": cfg["cycles"]["device"]}
    return hashlib.sha256(json.dumps(where, sort_keys=True).encode()).hexdigest()[:16]


def cached(path: str | Path, key: str) -> Probe | None:
    """A probe measured before for `key` (cost.cache), or None."""
    try:
        return Probe(**json.loads(Path(path).read_text())[key])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remember(path: str | Path, key: str, p: Probe) -> None:
    """Add a probe to the cache file, written aside and renamed (a run stopped mid-write keeps the old one)."""
    path = Path(path)
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        known = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps({**known, key: dataclasses.asdict(p)}, indent=1) + "\n")
    os.replace(tmp, path)


def stored_bytes(arrays: dict[str, np.ndarray], compression: clipstore.Compression, outputs: dict[str, dict]) -> int:
    """Bytes the arrays take once written through the store (in a throwaway one, not the run's)."""
    with tempfile.TemporaryDirectory(prefix="gvm-probe-") as tmp:
        root = clipstore.create(f"{tmp}/probe.zarr", {})
        clipstore.write_clip(root, "probe", arrays, {"source": "synthetic", "fps": 1.0}, compression,
                             outputs={n: clipstore.Output.from_attrs(d) for n, d in outputs.items()})
        return sum(a.nbytes_stored() for _, a in root[clipstore.CLIPS]["probe"].arrays())


def estimate(p: Probe, n_clips: int, n_frames: int, workers: int, shares: dict[str, float] | None = None) -> Estimate:
    """Every clip costs the same: set-up plus its frames, and of the probe's simulations each
    clip's expected share (`shares`: of the planned clips, per simulation; none: all as the probe);
    workers take clips in waves."""
    sims = sum(s * (1.0 - (shares or {}).get(k, 1.0)) for k, s in p.sim_s.items())
    clip_s = p.fixed_s - sims + n_frames * p.frame_s
    return Estimate(n_clips, n_frames, workers, clip_s, math.ceil(n_clips / workers) * clip_s,
                    n_clips * n_frames * p.stored_bytes)


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def report(p: Probe, e: Estimate) -> str:
    passes = ", ".join(f"{name} {s:.2f} s" for name, s in p.pass_s.items())
    return "\n".join([
        f"probe: frame 1 of {p.clip_id} with {p.threads} thread(s): Cycles {passes} per frame, "
        f"+ {p.convert_s:.2f} s to store arrays; per clip {p.fixed_s:.1f} s set-up "
        f"(geometry {p.geometry_s:.1f} s, scene {p.scene_s:.1f} s"
        + "".join(f"; of the geometry, {k} simulated in {s:.1f} s" for k, s in p.sim_s.items()) + ")",
        f"estimate: {duration(e.wall_s)} for {e.n_clips} clips of {e.n_frames} frames on {e.workers} worker(s) "
        f"({duration(e.clip_s)} per clip), store ~{e.store_bytes / 2**20:.1f} MiB; "
        f"an estimate from one frame, not a measurement of the run",
    ])


def scaled(p: Probe, factor: float) -> Probe:
    """The probe's per-frame Cycles seconds times `factor`: a probe rendered at fewer pixels stands
    for the full frame (Cycles' time per frame grows with its pixel count at fixed samples)."""
    return dataclasses.replace(p, pass_s={k: v * factor for k, v in p.pass_s.items()},
                               convert_s=p.convert_s * factor, stored_bytes=int(p.stored_bytes * factor))


def preset_table(rows: list[tuple[str, dict, Probe, Estimate]]) -> str:
    """One line per preset: its size, samples, frames, and the estimate for the planned clips."""
    head = ("preset", "size", "spp colour+alpha", "frames/clip", "per frame", "per clip", "all clips", "store")
    body = [(name, f"{c['cycles']['width']}x{c['cycles']['height']}",
             f"{c['cycles']['samples']}+{c['cycles']['alpha_samples']}", str(e.n_frames), duration(p.frame_s),
             duration(e.clip_s), duration(e.wall_s), f"{e.store_bytes / 2**20:.0f} MiB")
            for name, c, p, e in rows]
    return columns(head, body)
