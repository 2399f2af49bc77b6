"""`python -m pipelines.bench_render` (`make bench-render`): where a render run's time goes.

Measured in one run on the same planned clips, printed as `name: value` lines (ratios first, then
the raw figures each comes from):
- pipeline_overhead: wall seconds per frame of the whole pipeline (`python -m pipelines.render` in its own
  process: start-up, plan, a local Ray cluster, one task per clip, store writes, contact sheet, report,
  finalize) over Cycles' own
  seconds per frame, the render time the workers recorded in that same run (build_and_render times
  each pass's `bpy.ops.render.render`). The bare loop also collects Blender's render statistics
  (the "Time" it reports per frame) and prints how they compare with that timed call.
- scaling_2x1_over_1x2: frames per second with 2 workers of 1 thread over 1 worker of 2 threads.
- one_worker_over_bare_blender: frames per second of that 1-worker pipeline over a bare loop in
  this process (geometry, then render.scene.build_and_render per clip; no Ray, no conversion, no store).
- store_write_over_plain: bytes per second of clipstore.write_clip over np.save of the same arrays
  into files on the same filesystem; neither fsyncs, so both measure writing into the page cache.
"""
from __future__ import annotations

import contextlib
import math
import re
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

import clipstore
from core.cli import UserError, app, compose, overrides_between, run_app, to_container
from pipelines import plan


@dataclass(frozen=True)
class Run:
    """One measured render: wall seconds, frames made and Cycles' seconds for them."""
    wall_s: float
    frames: int
    cycles_s: float               # as timed around bpy.ops.render.render, all passes
    blender_stats_s: float = math.nan   # Blender's own per-frame "Time" statistics, summed (bare loop only)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s


def pipeline_run(overrides: list[str], store_path: Path, workers: int, cpus_per_worker: int) -> Run:
    """The render app end to end, in its own process as `make render` runs it, into a fresh store
    (its printout swallowed); `overrides`: the render config, as its command line."""
    start = time.perf_counter()
    code, text = run_app("pipelines.render", [*overrides, f"store.path={store_path}", f"cluster.workers={workers}",
                                              f"cluster.cpus_per_worker={cpus_per_worker}", "dry_run=false",
                                              "cost.estimate=false", f"hydra.run.dir={store_path}.hydra"], capture=True)
    wall = time.perf_counter() - start
    if code:
        raise RuntimeError(f"the pipeline run into {store_path} failed (exit {code}): {text[-500:]}")
    root = clipstore.open_store(store_path)
    clips = [clipstore.read_clip(root, cid) for cid in clipstore.complete_ids(root)]
    return Run(wall, sum(c.n_frames for c in clips), sum(c.attrs["render"]["cycles_seconds"] for c in clips))


_TIME = re.compile(r"\bTime:\s*([\d:.]+)")


def stats_seconds(stats: str) -> float | None:
    """Seconds of a Blender render statistics line's "Time: [h:]mm:ss.xx", None if it has none."""
    m = _TIME.search(stats)
    if not m:
        return None
    return sum(float(part) * 60 ** i for i, part in enumerate(reversed(m.group(1).split(":"))))


@contextlib.contextmanager
def blender_stats():
    """Collect each rendered frame's "Time" from Blender's render statistics while inside.

    The handler is persistent: build_and_render resets Blender to factory settings, which drops
    every other handler.
    """
    import bpy
    times: list[float] = []

    @bpy.app.handlers.persistent
    def on_stats(stats: str) -> None:
        s = stats_seconds(stats)
        if s is not None:
            times.append(s)

    bpy.app.handlers.render_stats.append(on_stats)
    try:
        yield times
    finally:
        bpy.app.handlers.render_stats.remove(on_stats)


def bare_loop(specs: list, threads: int) -> Run:
    """The same clips rendered in this process: geometry and scene per clip, frames, nothing else."""
    import torch

    from assets import scene as scenes
    from render.scene import build_and_render
    torch.set_num_threads(threads)  # as the workers do
    cycles_s = 0.0
    with blender_stats() as times:
        start = time.perf_counter()
        for spec in specs:
            cycles_s += sum(build_and_render(spec, scenes.build(spec), threads=threads).seconds.values())
        wall = time.perf_counter() - start
    return Run(wall, sum(s.n_frames for s in specs), cycles_s, sum(times))


def store_write(arrays: dict[str, np.ndarray], folder: Path, compression: clipstore.Compression,
                repeats: int) -> tuple[float, float]:
    """(store, plain) bytes per second writing `arrays`, the median of `repeats` writes each."""
    nbytes = sum(a.nbytes for a in arrays.values())
    root = clipstore.create(folder / "write.zarr", {})
    attrs = {"source": "synthetic", "fps": 1.0}
    store_s, plain_s = [], []
    for i in range(repeats):
        start = time.perf_counter()
        clipstore.write_clip(root, f"clip{i:06d}", arrays, attrs, compression)
        store_s.append(time.perf_counter() - start)
        plain = folder / f"plain{i}"
        plain.mkdir()
        start = time.perf_counter()
        for name, a in arrays.items():
            np.save(plain / f"{name}.npy", a)
        plain_s.append(time.perf_counter() - start)
    return nbytes / statistics.median(store_s), nbytes / statistics.median(plain_s)


def ratios(one_by_two: Run, two_by_one: Run | None, bare: Run | None,
           store_bps: float, plain_bps: float) -> dict[str, float]:
    """The printed figures, ratios first; runs left out (None) leave their figures out."""
    out = {"pipeline_overhead": (one_by_two.wall_s / one_by_two.frames) / (one_by_two.cycles_s / one_by_two.frames)}
    if two_by_one is not None:
        out["scaling_2x1_over_1x2"] = two_by_one.fps / one_by_two.fps
    if bare is not None:
        out["one_worker_over_bare_blender"] = one_by_two.fps / bare.fps
    out["store_write_over_plain"] = store_bps / plain_bps
    out["pipeline_s_per_frame"] = one_by_two.wall_s / one_by_two.frames
    out["cycles_timed_s_per_frame"] = one_by_two.cycles_s / one_by_two.frames
    out["pipeline_1x2_frames_per_s"] = one_by_two.fps
    if two_by_one is not None:
        out["pipeline_2x1_frames_per_s"] = two_by_one.fps
    if bare is not None:
        out["bare_blender_frames_per_s"] = bare.fps
        out["bare_cycles_timed_s_per_frame"] = bare.cycles_s / bare.frames
        out["bare_blender_stats_s_per_frame"] = bare.blender_stats_s / bare.frames
        out["blender_stats_over_timed_render"] = bare.blender_stats_s / bare.cycles_s
    out["store_write_mib_per_s"] = store_bps / 2**20
    out["plain_write_mib_per_s"] = plain_bps / 2**20
    return out


@app("bench_render")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    b = c["bench"]
    plan.check(c)
    if not isinstance(b["store_repeats"], int) or b["store_repeats"] < 1:
        raise UserError(f"bench.store_repeats must be a positive integer, got {b['store_repeats']!r}")
    threads = b["cpus"]
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < (2 if b["scaling"] else 1):
        raise UserError(f"bench.cpus must be an integer of at least {2 if b['scaling'] else 1} "
                        f"(2 with bench.scaling, which halves it), got {threads!r}")
    print(f"bench: {c['n_clips']} clips of {plan.n_frames(c)} frames, {c['cycles']['width']}x{c['cycles']['height']}, "
          f"{c['cycles']['samples']} spp colour + {c['cycles']['alpha_samples']} spp alpha, {threads} CPUs", flush=True)
    render = overrides_between(to_container(compose("render", [])), c)   # this config, as the render app's command line
    with tempfile.TemporaryDirectory(prefix="gvm-bench-render-", dir=b["workdir"]) as tmp:
        work = Path(tmp)
        one_by_two = pipeline_run(render, work / "1x2.zarr", 1, threads)
        two_by_one = pipeline_run(render, work / "2x1.zarr", 2, threads // 2) if b["scaling"] else None
        bare = bare_loop(plan.plan(c, plan.resolve_model(c)), threads) if b["bare"] else None
        root = clipstore.open_store(work / "1x2.zarr")
        clip = clipstore.read_clip(root, clipstore.complete_ids(root)[0])
        arrays = {name: clip[name][...] for name in clip.arrays}
        compression = clipstore.Compression.from_config(c["store"])
        store_bps, plain_bps = store_write(arrays, work, compression, b["store_repeats"])
    for name, value in ratios(one_by_two, two_by_one, bare, store_bps, plain_bps).items():
        print(f"{name}: {value:.3f}")
    return 0


if __name__ == "__main__":
    main()
