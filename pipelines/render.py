"""`python -m pipelines.render` (`make render N=...`): render a dataset's missing clips into a store.

The driver plans every clip from the config, skips those already complete in the store, runs
one Ray task per missing clip (each a Blender process rendering and writing that clip), shows
progress and ends with a summary; the exit status is non-zero when any clip failed.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

import clipstore
from assets import body
from core import provenance, quiet, stops
from core.checks import writable
from core.cli import UserError, app, to_container
from pipelines import contact_sheet, cost, plan, report
from render.spec import ClipSpec

EXIT_CLIPS_FAILED = 1
REPO = Path(__file__).resolve().parent.parent


def _complete(root: Any, clip_id: str) -> bool:
    try:
        clipstore.read_clip(root, clip_id)
    except clipstore.StoreError:
        return False
    return True


class FrameCounts:
    """A Ray actor's state: frames finished per clip under way, reported by the workers after each
    frame, read by the driver for its progress bar (a default clip runs for most of an hour)."""

    def __init__(self) -> None:
        self.frames: dict[str, int] = {}

    def report(self, clip_id: str, n: int) -> None:
        self.frames[clip_id] = n

    def snapshot(self) -> dict[str, int]:
        return dict(self.frames)


def render_and_store(spec_dict: dict, store_path: str, compression: dict, threads: int, progress: Any = None) -> dict:
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

    tell = None if progress is None else (lambda n: progress.report.remote(spec.clip_id, n))
    clip = render_clip(spec, threads=threads, on_frame=tell)
    if _complete(root, spec.clip_id):
        return {**found, "total_s": time.perf_counter() - start}
    node = ray.get_runtime_context().get_node_id()  # which machine of a cluster made it (provenance)
    attrs = {"source": "synthetic", "fps": spec.fps, "spec": spec.to_dict(), "software": provenance.software(),
             "render": {**clip.info, "node": node, "host": platform.node()}}
    clipstore.write_clip(root, spec.clip_id, clip.arrays, attrs, clipstore.Compression(**compression))
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


def resolve_model(cfg: dict) -> dict:
    b = cfg["body"]
    try:
        return body.resolve_model(b["model_path"], b["gender"], Path(b["cache_dir"]).expanduser(), b["model"])
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"body: {e}") from None


def _runtime_env(cl: dict) -> dict | None:
    """What a joined cluster's workers need to run this checkout's code: the checkout itself, uploaded.

    Ray's working_dir, not py_modules: with py_modules Ray still puts the driver's current folder
    first on the workers' sys.path, so a node holding an older copy at that path would run it.
    A local cluster shares this machine's files and gets nothing.
    """
    if not cl["address"] or not cl["ship_code"]:
        return None
    if not (REPO / "pyproject.toml").is_file():
        raise UserError(f"cluster.ship_code: {REPO} is not a source checkout; install the project on every node "
                        f"and set cluster.ship_code=false")
    return {"working_dir": str(REPO), "excludes": list(cl["ship_excludes"])}  # .gitignore'd paths stay too


def check_reachable(address: str, timeout: float) -> None:
    """A host:port (or ray://host:port) must answer within `timeout` seconds: Ray itself retries
    a silent address for ever, deaf to SIGTERM while it does. "auto" is Ray's to resolve."""
    import socket
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    if address == "auto" or not sep:
        return
    if not port.isdigit():
        raise UserError(f"cluster.address {address!r}: the port must be a number (host:port)")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as e:
        raise UserError(f"cluster.address {address}: no Ray cluster answers there within {timeout:g} s "
                        f"({e.strerror or e}); start one with `ray start --head` or leave cluster.address unset "
                        f"for a local one") from None


def connect(cl: dict) -> None:
    """Join the cluster at `cl["address"]` ("auto", host:port, ray://...) or start a local one."""
    import ray
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # Ray 2.60 otherwise writes a token under $HOME
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "WARNING"}
    if cl["address"]:
        check_reachable(cl["address"], cl["connect_timeout_s"])
        try:
            ray.init(address=cl["address"], runtime_env=_runtime_env(cl), **kwargs)
        except ConnectionError as e:
            raise UserError(f"cluster.address {cl['address']}: {' '.join(str(e).split())[:300]}") from None
    else:
        # "local", not None: None would join whatever RAY_ADDRESS or a `ray start` on this machine names.
        ray.init(address="local", num_cpus=cl["workers"] * cl["cpus_per_worker"], _temp_dir=cl["temp_dir"], **kwargs)


def _why(e: Exception, cl: dict) -> str:
    """The failure in one line, with how often the clip was tried: a killed worker's clip is always
    retried, one whose own code raised only with retry_exceptions."""
    from ray.exceptions import RayTaskError
    tries = 1 + cl["max_retries"] if cl["retry_exceptions"] or not isinstance(e, RayTaskError) else 1
    cause = getattr(e, "cause", None) or e
    return f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]} ({tries} tries)"


def run_ray(specs: list[ClipSpec], cfg: dict) -> tuple[list[dict], dict[str, str], BaseException | None]:
    """Render `specs`; returns what finished, what failed, and the signal that stopped the run early
    (Ctrl-C or SIGTERM: the clips under way are cancelled, their partial groups stay invisible)."""
    import ray
    from tqdm import tqdm

    cl = cfg["cluster"]
    connect(cl)
    stops.install()   # ray.init installs its own SIGTERM handler, which would exit without a summary
    # max_calls recycles a worker process after that many clips, so Blender state and memory start fresh.
    task = ray.remote(num_cpus=cl["cpus_per_worker"], max_calls=cl["clips_per_worker"],
                      max_retries=cl["max_retries"], retry_exceptions=cl["retry_exceptions"])(render_and_store)
    compression = dataclasses.asdict(clipstore.Compression.from_config(cfg["store"]))
    store_path = clipstore.absolute(cfg["store"]["path"])  # workers may run elsewhere
    progress = ray.remote(num_cpus=0)(FrameCounts).remote()
    frames = {s.clip_id: s.n_frames for s in specs}
    pending = {task.remote(s.to_dict(), store_path, compression, cl["cpus_per_worker"], progress): s.clip_id
               for s in specs}
    done: list[dict] = []
    failed: dict[str, str] = {}
    stopped = None
    finished = 0   # frames of clips that ended (rendered, found complete or failed)
    drawn = time.monotonic()
    try:
        with tqdm(total=sum(frames.values()), unit="frame", desc="render", file=sys.stderr, dynamic_ncols=True) as bar:
            bar.set_postfix(clips=f"0/{len(frames)}", failed=0)
            while pending:
                # A bounded wait: the loop comes back to Python at least once a second, so a signal is handled.
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                stops.check()
                if ready:
                    clip = pending.pop(ready[0])
                    finished += frames[clip]
                    try:
                        done.append(ray.get(ready[0]))
                    except Exception as e:  # noqa: BLE001 - a clip's own failure must not stop the run
                        stops.check()
                        failed[clip] = _why(e, cl)
                        bar.write(f"{clip} failed: {failed[clip]}", file=sys.stderr)
                    bar.set_postfix(clips=f"{len(done)}/{len(frames)}", failed=len(failed), refresh=False)
                try:
                    under_way = ray.get(progress.snapshot.remote(), timeout=10.0)
                except ray.exceptions.RayError:   # a timeout or a lost actor: the bar is a convenience, never a reason to stop
                    under_way = {}
                # A retried clip starts again from 0, so the bar is set, not advanced; redrawn when it
                # moved, else every 10 s for the clock (a log file gets no line a second).
                n = finished + sum(min(under_way.get(c, 0), frames[c]) for c in pending.values())
                if n != bar.n or ready or time.monotonic() - drawn > 10.0:
                    bar.n, drawn = n, time.monotonic()
                    bar.refresh()
    except BaseException as e:
        if not stops.stopping(e):
            raise
        stopped = e
        for ref in pending:
            ray.cancel(ref, force=True)
    finally:
        ray.shutdown()
        stops.install()
    return done, failed, stopped


def summary(cfg: dict, n_planned: int, skipped: int, done: list[dict], failed: dict[str, str],
            wall: float, sheet: Path | None) -> str:
    found = sum(d["found_complete"] for d in done)
    done = [d for d in done if not d["found_complete"]]
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
    lines += [f"FAILED {clip}: {why}" for clip, why in sorted(failed.items())]
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


def measured(c: dict, model: dict, spec: ClipSpec) -> tuple[cost.Probe, bool]:
    """The probe of these settings on this machine: remembered from an earlier run or dry run
    (`cost.cache`), else rendered now (frame 1 of `spec`) and remembered; whether it was remembered."""
    key = cost.cache_key(c, plan.definition_hash(plan.definition(c, model)))
    if (p := cost.cached(c["cost"]["cache"], key)) is not None:
        return p, True
    p = cost.probe(spec, c["cluster"]["cpus_per_worker"], clipstore.Compression.from_config(c["store"]))
    cost.remember(c["cost"]["cache"], key, p)
    return p, False


def forecast(c: dict, model: dict, todo: list[ClipSpec]) -> str:
    """One line before a run: what it will cost here and, for a long run, what the quick preset would."""
    p, known = measured(c, model, todo[0])
    workers = c["cluster"]["workers"]
    e = cost.estimate(p, len(todo), plan.n_frames(c), workers)
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
    plan.check(c)
    contact_sheet.check(c["sheet"])
    outputs(c)
    model = resolve_model(c)
    specs = plan.plan(c, model)
    root = open_for(c, model, create=not c["dry_run"])
    complete = set(clipstore.complete_ids(root)) if root is not None else set()
    todo = [s for s in specs if s.clip_id not in complete]
    print(f"{len(specs)} clips planned ({plan.n_frames(c)} frames, {c['cycles']['width']}x{c['cycles']['height']}, "
          f"{c['cycles']['samples']} spp colour + {c['cycles']['alpha_samples']} spp alpha, body model: {model['kind']}), {len(specs) - len(todo)} already complete, "
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
            print(f"probing: rendering frame 1 of {todo[0].clip_id} to estimate the cost ...", flush=True)
            p = cost.probe(todo[0], c["cluster"]["cpus_per_worker"], clipstore.Compression.from_config(c["store"]))
            cost.remember(c["cost"]["cache"], cost.cache_key(c, plan.definition_hash(plan.definition(c, model))), p)
            print(cost.report(p, cost.estimate(p, len(todo), plan.n_frames(c), c["cluster"]["workers"])))
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
    done, failed, stopped = run_ray(todo, c) if todo else ([], {}, None)
    if stopped is not None:   # no sheet, report or manifest: the next run, which resumes, writes them
        print(summary(c, len(specs), len(specs) - len(todo), done, failed, time.perf_counter() - start, None))
        print(f"stopped with {len(todo) - len(done) - len(failed)} clip(s) not rendered", flush=True)
        raise stopped
    sh = c["sheet"]
    sheet_path = contact_sheet.default_path(c)
    written_root = clipstore.open_store(c["store"]["path"])   # reopened: the workers wrote the clips
    sheet = contact_sheet.write(written_root, sheet_path, sh["clips"], sh["frames"], sh["cell"],
                                sh["crop"]) if sheet_path else None
    print(summary(c, len(specs), len(specs) - len(todo), done, failed, time.perf_counter() - start, sheet))
    folder = report.default_dir(c)
    written = report.write(written_root, folder, c, sheet) if folder else None
    if written:
        print(f"report: {written[0]} (parameters.png, parameters.md, contact_sheet.png)")
    # Every writer is done (run_ray has shut Ray down): snapshot the store for plain-zarr readers.
    m = clipstore.finalize(c["store"]["path"])
    print(f"manifest: {m['n_clips']} complete clips, {m['frames']} frames; consolidated metadata written")
    return EXIT_CLIPS_FAILED if failed else 0


if __name__ == "__main__":
    main()
