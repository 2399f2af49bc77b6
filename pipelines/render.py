"""`python -m pipelines.render` (`make render N=...`): render a dataset's missing clips into a store.

The driver plans every clip from the config, skips those already complete in the store, says
what the run will cost, runs one Ray task per missing clip through the shared job loop
(pipelines.jobs: each a Blender process rendering and writing that clip; failed attempts logged
beside the store), shows progress and ends with a summary; the exit status is non-zero when any
clip failed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

import clipstore
from clipstore.failures import log_beside
from core import provenance, quiet, stops
from core.checks import writable
from core.cli import UserError, app, to_container
from pipelines import contact_sheet, cost, jobs, plan, report
from render.spec import ClipSpec

EXIT_CLIPS_FAILED = 1


def _complete(root: Any, clip_id: str) -> bool:
    try:
        clipstore.read_clip(root, clip_id)
    except clipstore.StoreError:
        return False
    return True


def render_and_store(spec_dict: dict, store_path: str, compression: dict, threads: int,
                     progress: Callable[[int], None] | None = None) -> dict:
    """One clip, start to finish, inside a worker: render, convert, write, mark complete.

    A clip found complete, before rendering or before writing, is left as it is: an earlier
    attempt of this task wrote it and was killed before returning, or a worker orphaned by a
    killed driver finished it (such a worker lives on for a few seconds).
    """
    start = time.perf_counter()
    spec = ClipSpec.from_dict(spec_dict)
    root = clipstore.open_store(store_path, mode="r+")
    result = {"clip_id": spec.clip_id, "frames": spec.n_frames, "pid": os.getpid()}
    found = {**result, "render_s": 0.0, "node": None, "found_complete": True}
    if _complete(root, spec.clip_id):
        return {**found, "total_s": time.perf_counter() - start}
    import ray
    import torch
    torch.set_num_threads(max(threads, 1))  # Ray's OMP_NUM_THREADS is read once per reused worker
    from render.clip import render_clip  # bpy only ever loads in workers, never in the driver

    clip = render_clip(spec, threads=threads, on_frame=progress)
    if _complete(root, spec.clip_id):
        return {**found, "total_s": time.perf_counter() - start}
    node = ray.get_runtime_context().get_node_id()  # which machine of a cluster made it (provenance)
    attrs = {"source": "synthetic", "fps": spec.fps, "spec": spec.to_dict(), "software": provenance.software(),
             "render": {**clip.info, "node": node, "host": platform.node()}}
    clipstore.write_clip(root, spec.clip_id, clip.arrays, attrs, clipstore.Compression(**compression),
                         outputs={n: clipstore.Output.from_attrs(d) for n, d in spec.outputs.items()},
                         array_attrs=clip.attrs)
    return {**result, "render_s": clip.info["cycles_seconds"], "total_s": time.perf_counter() - start, "node": node,
            "found_complete": False}


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _differences(a: dict, b: dict) -> list[str]:
    fa, fb = _flatten(a), _flatten(b)
    return sorted(k for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k))


def open_for(cfg: dict, model: dict, create: bool = True) -> Any:
    """The store for this dataset (None if absent and not `create`); refuses one holding another dataset."""
    defn = plan.definition(cfg, model)
    digest = plan.definition_hash(defn)
    try:
        if not create and not clipstore.location.exists(cfg["store"]["path"]):
            return None
        root = clipstore.create(cfg["store"]["path"], {
            "dataset": {"definition": defn, "hash": digest},
            # May the clips be redistributed? Decided by the body model's licence (assets.body.LICENCES).
            "licence": {"body_model": model["licence"], "publishable": model["publishable"]},
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "software": provenance.software()})
    except clipstore.StoreError as e:
        raise UserError(str(e)) from None
    held = root.attrs.get("dataset", {})
    if held.get("hash") != digest:
        diff = _differences(held.get("definition", {}), defn)
        raise UserError(f"store {cfg['store']['path']} holds another dataset (differs in {', '.join(diff[:5]) or 'its hash'}); "
                        f"render into a new store.path or use the same settings")
    return root


def run(specs: list[ClipSpec], cfg: dict) -> jobs.Outcome:
    """Render `specs` on the cluster, one task per clip (pipelines.jobs): what finished, what failed,
    and the stop that ended the run early (the clips under way are cancelled, their partial groups
    stay invisible). A worker process is replaced after `cluster.clips_per_worker` clips, so
    Blender's state and memory start fresh."""
    cl = cfg["cluster"]
    compression = dataclasses.asdict(clipstore.Compression.from_config(cfg["store"]))
    store_path = clipstore.absolute(cfg["store"]["path"])  # workers may run elsewhere
    todo = [jobs.Job(s.clip_id, s.n_frames, (s.to_dict(), store_path, compression, cl["cpus_per_worker"])) for s in specs]
    return jobs.run(render_and_store, todo, cl, log_beside(cfg["store"]["path"], cfg["store"]["local_dir"]), "render", noun="clips",
                    max_calls=cl["clips_per_worker"])


def summary(cfg: dict, n_planned: int, skipped: int, outcome: jobs.Outcome, wall: float, sheet: Path | None) -> str:
    found = sum(d["found_complete"] for d in outcome.done)
    done = [d for d in outcome.done if not d["found_complete"]]
    failed = outcome.failed
    frames = sum(d["frames"] for d in done)
    render_s = sum(d["render_s"] for d in done)
    root = cfg["store"]["path"]
    size = clipstore.location.size_bytes(root) / 2**20
    lines = [f"clips: {n_planned} planned, {skipped} already complete, {len(done)} rendered, {len(failed)} failed"
             + (f", {found} found complete when their task ran" if found else ""),
             f"time: {wall:.1f} s wall" + (f", {wall / len(done):.1f} s per clip, Cycles {render_s / max(frames, 1):.2f} s per frame"
                                           if done else ""),
             f"store: {root} ({size:.1f} MiB)"]
    nodes = {d["node"] for d in done}
    if len(nodes) > 1:
        lines.append(f"rendered on {len(nodes)} nodes")
    if sheet:
        lines.append(f"contact sheet: {sheet}")
    lines += jobs.failed_lines(outcome, log_beside(root, cfg["store"]["local_dir"]))
    return "\n".join(lines)


def _merged(base: dict, over: dict) -> dict:
    return OmegaConf.to_container(OmegaConf.merge(base, over))


def preset_estimates(c: dict, model: dict, n_clips: int) -> str:
    """Each preset of conf/preset/ applied to this config, its first clip probed at no more than
    `cost.probe_pixels` (scaled up to the preset's size) and estimated for `n_clips` clips."""
    from core.conf import CONF_DIR, load
    rows = []
    for path in sorted((CONF_DIR / "preset").glob("*.yaml")):
        pc = _merged(c, load(f"preset/{path.stem}"))
        w, h = pc["cycles"]["width"], pc["cycles"]["height"]
        shrink = min(1.0, (c["cost"]["probe_pixels"] / (w * h)) ** 0.5)
        small = _merged(pc, {"cycles": {"width": max(8, round(w * shrink)), "height": max(8, round(h * shrink))}})
        spec = plan.clip_spec(small, 0, model)
        print(f"probing preset {path.stem}: frame 1 of {spec.clip_id} at {small['cycles']['width']}x"
              f"{small['cycles']['height']} (scaled to {w}x{h}) ...", flush=True)
        p = cost.probe(spec, c["cluster"]["cpus_per_worker"], clipstore.Compression.from_config(c["store"]))
        p = cost.scaled(p, (w * h) / (small["cycles"]["width"] * small["cycles"]["height"]))
        rows.append((path.stem, pc, p, cost.estimate(p, n_clips, plan.n_frames(pc), c["cluster"]["workers"])))
    return cost.preset_table(rows) + (f"\nestimates for {n_clips} clips on {c['cluster']['workers']} worker(s), "
                                      "each from one frame of one clip; the paper preset is meant for GPUs")


def measured(c: dict, model: dict, spec: ClipSpec, fresh: bool = False) -> tuple[cost.Probe, bool]:
    """The probe of these settings on this machine: remembered from an earlier run or dry run
    (`cost.cache`), else (or when `fresh`) rendered now (frame 1 of `spec`) and remembered; whether
    it was remembered."""
    key = cost.cache_key(c, plan.definition_hash(plan.definition(c, model)))
    if not fresh and (p := cost.cached(c["cost"]["cache"], key)) is not None:
        return p, True
    p = cost.probe(spec, c["cluster"]["cpus_per_worker"], clipstore.Compression.from_config(c["store"]))
    cost.remember(c["cost"]["cache"], key, p)
    return p, False


def forecast(c: dict, model: dict, todo: list[ClipSpec]) -> str:
    """One line before a run: what it will cost here and, for a long run, what the quick preset would.
    A probe that fails (the clip's own fault, which its worker will report) leaves the run to go on."""
    first, shares = cost.probe_clip(todo)
    try:
        p, known = measured(c, model, first)
    except Exception as e:   # noqa: BLE001 - an estimate is never a reason not to render
        stops.check()
        return f"estimate on this machine: none (the probe frame of {first.clip_id} failed: {type(e).__name__}: " \
               f"{' '.join(str(e).split())[:150]})"
    workers = c["cluster"]["workers"]
    e = cost.estimate(p, len(todo), plan.n_frames(c), workers, shares)
    line = (f"estimate on this machine: {cost.duration(e.wall_s)} for {len(todo)} clip(s) on {workers} worker(s), "
            f"{p.frame_s:.1f} s per frame ({'measured before' if known else 'from a probe of frame 1'})")
    from core.conf import load
    quick = _merged(c, load(f"preset/{c['cost']['quick_preset']}"))
    if e.wall_s > c["cost"]["quick_above_s"] and plan.definition(quick, model) != plan.definition(c, model):
        q, _ = measured(quick, model, plan.clip_spec(quick, todo[0].index, model))
        qe = cost.estimate(q, len(todo), plan.n_frames(quick), workers)
        if qe.wall_s < e.wall_s:
            line += f"; preset={c['cost']['quick_preset']} (a quick look, not training data): {cost.duration(qe.wall_s)}"
    return line


def outputs(c: dict) -> None:
    """Every place the run writes, checked before anything is planned or rendered."""
    if not clipstore.location.is_url(c["store"]["path"]):
        writable(c["store"]["path"], "store.path")
    if (sheet := contact_sheet.default_path(c)) is not None:
        writable(sheet, "sheet.path", folder=False)
    if (folder := report.default_dir(c)) is not None:
        writable(folder, "report.path")


@app("render")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    clipstore.location.configure(c["store"]["path"], c["store"]["options"])
    plan.check(c)
    contact_sheet.check(c["sheet"])
    outputs(c)
    model = plan.resolve_model(c)
    if not c["dry_run"] and c["cluster"]["address"]:   # before the store is made or a probe spends its seconds
        jobs.check_reachable(c["cluster"]["address"], c["cluster"]["connect_timeout_s"])
    specs = plan.plan(c, model)
    root = open_for(c, model, create=not c["dry_run"])
    complete = set(clipstore.complete_ids(root)) if root is not None else set()
    todo = [s for s in specs if s.clip_id not in complete]
    print(f"{len(specs)} clips planned ({plan.n_frames(c)} frames, {c['cycles']['width']}x{c['cycles']['height']}, "
          f"{c['cycles']['samples']} spp colour + {c['cycles']['alpha_samples']} spp alpha, body model: {model['kind']}; "
          f"{', '.join(specs[0].outputs) if specs else 'no outputs'}), {len(specs) - len(todo)} already complete, "
          f"{len(todo)} to render into {c['store']['path']}", flush=True)
    if c["dry_run"]:
        if c["dry_run"] not in (True, "plan", "presets"):
            raise UserError(f"dry_run must be true, false, plan or presets, got {c['dry_run']!r}")
        if c["dry_run"] == "presets":
            print(preset_estimates(c, model, len(todo)))
            return 0
        for s in todo:
            print(f"  {s.clip_id}: motion {s.motion.get('name', s.motion['kind'])}, hair {s.hair['geometry'].get('style')}")
        if c["dry_run"] is True and todo:  # "plan" lists only; the probe needs Blender and a few seconds
            first, shares = cost.probe_clip(todo)
            print(f"probing: rendering frame 1 of {first.clip_id} to estimate the cost ...", flush=True)
            p, _ = measured(c, model, first, fresh=True)
            print(cost.report(p, cost.estimate(p, len(todo), plan.n_frames(c), c["cluster"]["workers"], shares)))
        return 0
    start = time.perf_counter()
    if todo and model["kind"] == "anny":
        from assets import anny_body
        print("anny: loading the body model (its first build on a machine takes about 90 s) ...", flush=True)
        with quiet.chatter():   # warp's kernel compiler prints its devices and cache to stdout
            seconds = anny_body.ensure_built(model["path"])
        print(f"anny: ready in {seconds:.0f} s", flush=True)
    if todo and c["cost"]["estimate"]:
        print(forecast(c, model, todo), flush=True)
    outcome = run(todo, c) if todo else jobs.Outcome()
    if outcome.stopped is not None:   # no sheet, report or manifest: the next run, which resumes, writes them
        print(summary(c, len(specs), len(specs) - len(todo), outcome, time.perf_counter() - start, None))
        print(f"stopped with {len(todo) - len(outcome.done) - len(outcome.failed)} clip(s) not rendered", flush=True)
        raise outcome.stopped
    sh = c["sheet"]
    sheet_path = contact_sheet.default_path(c)
    written_root = clipstore.open_store(c["store"]["path"])   # reopened: the workers wrote the clips
    sheet = contact_sheet.write(written_root, sheet_path, sh["clips"], sh["frames"], sh["cell"],
                                sh["crop"], crop_on=sh["crop_on"]) if sheet_path else None
    print(summary(c, len(specs), len(specs) - len(todo), outcome, time.perf_counter() - start, sheet))
    folder = report.default_dir(c)
    written = report.write(written_root, folder, c, sheet) if folder else None
    if written:
        print(f"report: {written[0]} (parameters.png, parameters.md, contact_sheet.png)")
    # Every writer is done (the job loop has shut Ray down): snapshot the store for plain-zarr readers.
    m = clipstore.finalize(c["store"]["path"])
    print(f"manifest: {m['n_clips']} complete clips, {m['frames']} frames; consolidated metadata written")
    return EXIT_CLIPS_FAILED if outcome.failed else 0


if __name__ == "__main__":
    main()
