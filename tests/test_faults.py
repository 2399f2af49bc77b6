"""Faults, for real: the render driver in a subprocess, its worker or itself killed with SIGKILL,
or the driver stopped with SIGTERM.

Each test renders 2 clips of 4 frames at 64 px on a local Ray cluster of its own (about 6 s a
clip on 2 cores). Only processes these tests started are ever signalled.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

import clipstore
from clipstore.failures import failures
from pipelines import plan
from core.cli import compose, to_container
from pipelines.plan import resolve_model
from tests.conftest import SMALL

pytestmark = [pytest.mark.blender, pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
WORKER = "ray::render_and_store"  # the process title Ray gives a worker while it runs a clip


@pytest.fixture
def ray_tmp():
    """A short Ray temp dir: its socket paths must stay under the 107-byte limit."""
    path = tempfile.mkdtemp(prefix="rt-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def driver(store_path: Path, ray_tmp: str, cache_dir: str, *overrides: str,
           url: str | None = None) -> tuple[subprocess.Popen, Path]:
    """`python -m pipelines.render` in its own session (process group), output to a log file;
    `url` names the store at `store_path` another way (file://...)."""
    log = store_path.parent / f"{store_path.name}.{time.monotonic_ns()}.log"
    args = [*SMALL, f"store.path={url or store_path}", f"body.cache_dir={cache_dir}", f"cluster.temp_dir={ray_tmp}",
            f"sheet.path={store_path.parent / 'sheet.png'}", *overrides]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.render", *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "RAY_AUTH_MODE": "disabled"},
                                start_new_session=True)
    return proc, log


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return log.read_text()


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def rendering(pid: int) -> list[psutil.Process]:
    """The workers under driver `pid` that are inside a clip now."""
    out = []
    for p in descendants(pid):
        try:
            if " ".join(p.cmdline()).startswith(WORKER):
                out.append(p)
        except psutil.Error:
            pass
    return out


def complete(path: Path) -> list[str]:
    return clipstore.complete_ids(clipstore.open_store(path)) if (path / "zarr.json").exists() else []


def assert_valid(path: Path, ids: list[str]) -> None:
    """Exactly `ids` are complete, and each passes the store's own check (every frame read back,
    checksums recomputed and compared with the ones written with the clip)."""
    root = clipstore.open_store(path)
    assert clipstore.complete_ids(root) == ids
    for cid in ids:
        check = clipstore.check_clip(root, cid)
        assert check.ok, (cid, check.problems)


def clip_files(path: Path, ids: list[str]) -> dict[str, str]:
    return {str(f.relative_to(path)): hashlib.sha256(f.read_bytes()).hexdigest()
            for cid in ids for f in sorted((path / "clips" / cid).rglob("*")) if f.is_file()}


def wait_for(condition, timeout: float, proc: subprocess.Popen, log: Path, what: str):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if (value := condition()):
            return value
        assert proc.poll() is None, f"driver ended before {what}:\n{log.read_text()}"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()}")


def test_worker_killed_mid_clip_is_retried(tmp_path, ray_tmp, cache_dir):
    path = tmp_path / "store.zarr"
    proc, log = driver(path, ray_tmp, cache_dir, "n_clips=2")
    victim = wait_for(lambda: rendering(proc.pid), 120, proc, log, "a worker inside a clip")[0]
    time.sleep(1.0)  # well inside the clip: Blender is loaded and rendering
    assert complete(path) == []  # with one worker, the first clip is the one it is on
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)
    # Readers during the rest of the run only ever see whole, valid clips.
    seen: set[str] = set()
    while proc.poll() is None:
        ids = complete(path)
        assert_valid(path, ids)
        seen |= set(ids)
        time.sleep(0.3)
    out = finish(proc, log)
    assert proc.returncode == 0, out
    assert "2 rendered, 0 failed" in out
    assert_valid(path, ["clip000000", "clip000001"])
    assert seen  # the polling did see clips appear while the driver ran


def test_driver_stopped_then_killed_then_resumed(tmp_path, ray_tmp, cache_dir):
    """SIGTERM mid-run: the driver stops within seconds with its summary and status 143; SIGKILL of
    its whole process tree mid-run; each time the rerun resumes, earlier clips byte-for-byte kept."""
    path = tmp_path / "store.zarr"
    proc, log = driver(path, ray_tmp, cache_dir, "n_clips=3")
    wait_for(lambda: complete(path) and rendering(proc.pid), 180, proc, log, "a complete clip and a busy worker")
    ray_processes = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    out = finish(proc, log, timeout=30)
    assert time.monotonic() - start < 10, out
    assert proc.returncode == 143, out
    assert "stopped by SIGTERM" in out and "Traceback" not in out
    assert re.search(r"clips: 3 planned, 0 already complete, \d rendered, 0 failed", out), out
    _, alive = psutil.wait_procs(ray_processes, timeout=30)   # the local cluster went with it
    assert not alive, [p.pid for p in alive]
    stopped_ids = complete(path)
    assert 1 <= len(stopped_ids) < 3
    assert_valid(path, stopped_ids)
    before = clip_files(path, stopped_ids)

    proc, log = driver(path, ray_tmp, cache_dir, "n_clips=3")
    # Killed while a later clip is being rendered. The driver's process group (it and the Ray
    # cluster it started) and the workers, each in a group of its own, all at once: on the
    # driver's death alone a worker lives on for a few seconds and may finish its clip, which
    # would leave this test nothing to resume.
    wait_for(lambda: rendering(proc.pid), 180, proc, log, "a busy worker")   # on a clip not yet complete
    time.sleep(1.0)
    ray_processes = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    for p in ray_processes:
        with contextlib.suppress(psutil.NoSuchProcess):  # psutil refuses a pid reused by another process
            p.send_signal(signal.SIGKILL)
    proc.wait(10)
    _, alive = psutil.wait_procs(ray_processes, timeout=30)
    assert not alive, [p.pid for p in alive]
    killed_ids = complete(path)
    assert len(killed_ids) < 3                     # a clip was under way
    assert clip_files(path, stopped_ids) == before
    before = clip_files(path, killed_ids)

    proc, log = driver(path, ray_tmp, cache_dir, "n_clips=3")
    out = finish(proc, log)
    assert proc.returncode == 0, out
    assert f"{len(killed_ids)} already complete, {3 - len(killed_ids)} to render" in out  # the plan line
    assert f"{3 - len(killed_ids)} rendered, 0 failed" in out
    assert_valid(path, ["clip000000", "clip000001", "clip000002"])
    assert clip_files(path, killed_ids) == before  # earlier clips byte-for-byte as they were


def test_task_leaves_a_complete_clip_alone(tmp_path, small_cfg):
    """A retried task whose earlier attempt wrote the clip and died before returning (or an
    orphaned worker that finished it) must not fail on, or touch, the complete clip."""
    from pipelines.render import render_and_store
    cfg = small_cfg()
    spec = plan.plan(cfg, resolve_model(cfg))[0]
    path = tmp_path / "store.zarr"
    root = clipstore.create(path, {})
    t, h, w = spec.n_frames, cfg["cycles"]["height"], cfg["cycles"]["width"]
    clipstore.write_clip(root, spec.clip_id, {"fgr": np.zeros((t, h, w, 3), np.uint8), "alpha": np.zeros((t, h, w), np.uint16)},
                     {"source": "synthetic", "fps": spec.fps})
    before = clip_files(path, [spec.clip_id])
    out = render_and_store(spec.to_dict(), str(path), {"colour_clevel": 3, "mask_clevel": 3}, 1)
    assert out["found_complete"] and out["clip_id"] == spec.clip_id
    assert clip_files(path, [spec.clip_id]) == before


def _short_motion(folder: Path) -> None:
    """An AMASS file in the right layout that is too short for any clip: a real input, not a hook."""
    folder.mkdir()
    np.savez(folder / "short.npz", poses=np.zeros((2, 156)), trans=np.zeros((2, 3)), mocap_framerate=120.0)


def test_clip_that_fails_on_its_own(tmp_path, ray_tmp, cache_dir):
    amass = tmp_path / "amass"
    _short_motion(amass)
    overrides = ["n_clips=2", f"motion.amass.dir={amass}", "motion.amass.fraction=0.5", "cluster.max_retries=1"]
    # A dataset seed whose plan sends exactly one of the two clips to the broken motion file.
    base = to_container(compose("render", [*SMALL, f"body.cache_dir={cache_dir}", *overrides]))
    model = resolve_model(base)
    for seed in range(50):
        kinds = [s.motion["kind"] for s in plan.plan({**base, "seed": seed}, model)]
        if kinds.count("amass") == 1:
            break
    bad, good = plan.clip_id(kinds.index("amass")), plan.clip_id(kinds.index("procedural"))

    path = tmp_path / "store.zarr"
    proc, log = driver(path, ray_tmp, cache_dir, *overrides, f"seed={seed}")
    out = finish(proc, log)
    assert proc.returncode == 1, out
    assert "1 rendered, 1 failed" in out
    line = next(ln for ln in out.splitlines() if ln.startswith("FAILED"))
    log = path.with_name("store.failures.jsonl")
    assert re.fullmatch(rf"FAILED {bad}: ValueError: AMASS motion file .*short\.npz is too short.* \(2 tries\); "
                        rf"2 attempt\(s\) with tracebacks in {log}", line), line
    assert_valid(path, [good])
    assert clipstore.incomplete_ids(clipstore.open_store(path)) == []  # it failed before writing anything
    # Every attempt is kept, with its traceback and where it ran; validate names the clip still missing.
    attempts = [f for f in failures(log) if f["job"] == bad]
    assert [f["attempt"] for f in attempts] == [1, 2] and len({f["run"] for f in attempts}) == 1
    assert all("too short" in f["error"] and "Traceback" in f["traceback"] and f["node"] for f in attempts)
    assert any(bad in n and "failures.jsonl" in n for n in clipstore.validate(str(path), progress=False).notes)
    # A rerun renders only what is missing (and the broken clip fails again, logged as a new run).
    kept = clip_files(path, [good])
    proc, log2 = driver(path, ray_tmp, cache_dir, *overrides, f"seed={seed}")
    out = finish(proc, log2)
    assert proc.returncode == 1 and "1 already complete, 1 to render" in out, out
    assert clip_files(path, [good]) == kept
    assert len({f["run"] for f in failures(log) if f["job"] == bad}) == 2
