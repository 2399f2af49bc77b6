"""A stop (SIGTERM, Ctrl-C) at any moment of any app: one line and the signal's exit status, never a
traceback, whatever code the signal lands in (imports, Hydra, numba, torch, zarr's threads, Ray).

Each app is started several times and stopped at a different moment each time: while it starts,
and at several points of its work. The resume-after-a-stop tests stay with each app's own tests.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from core import stops
from core.cli import compose, guarded, to_container
from tests.conftest import SMALL, write_store

ROOT = Path(__file__).resolve().parent.parent
DELAYS = (0.3, 2.5, 6.0)   # seconds after launch: imports, set-up, and the work itself
SHORT = {"pipelines.validate": (0.3, 1.5, 3.0),   # its work on the test store ends after about 5 s
         "pipelines.render": (0.3, 3.0, 9.0)}       # Ray starting, then Blender rendering in the workers


def stop_at(module: str, args: list[str], delay: float, tmp: Path, signum: int = signal.SIGTERM) -> str:
    """Start the app, signal it `delay` s later; it must have been running, and end within 10 s with
    the signal's status and a last line that says it stopped. Returns what it printed."""
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "app.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, *args, f"hydra.run.dir={tmp / 'h'}"] if module != "pipelines.validate"
                                else [sys.executable, "-m", module, *args], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    time.sleep(delay)
    assert proc.poll() is None, f"{module} ended before {delay} s: the point is not tested\n{log.read_text()[-1500:]}"
    proc.send_signal(signum)
    start = time.monotonic()
    proc.wait(30)
    text = log.read_text()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert proc.returncode == stops.EXIT_STATUS[signum], (delay, proc.returncode, text[-3000:])
    assert time.monotonic() - start < 10, (delay, text[-2000:])
    assert "Traceback" not in text and "Error" not in lines[-1], (delay, text[-3000:])
    assert lines[-1].startswith(f"stopped by {signal.Signals(signum).name}"), (delay, text[-2000:])
    return text


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    from gvm_train.model import build_model
    from gvm_train.pipeline import GVMPipeline
    path = tmp_path_factory.mktemp("model") / "model"
    GVMPipeline.from_model(build_model(to_container(compose("finetune", []))["model"])).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """A store and a real video large enough that each app works well past the last delay."""
    import cv2
    from matting.video import open_input
    tmp = tmp_path_factory.mktemp("inputs")
    frames = tmp / "frames"
    frames.mkdir()
    for i, f in enumerate(open_input("sample").frames(0, 60)):   # carphone at 4x: 704x576
        cv2.imwrite(str(frames / f"{i:04d}.png"), cv2.resize(f[..., ::-1], (704, 576), interpolation=cv2.INTER_CUBIC))
    return {"store": write_store(tmp / "s.zarr", 40, t=48, h=96, w=128), "video": str(frames)}


def _apps(run: Path, model: Path, inputs: dict[str, str], cache: str) -> dict[str, list[str]]:
    """Each app and its arguments for one run (its outputs under `run`)."""
    store, video = inputs["store"], inputs["video"]
    return {
        "pipelines.render": [*SMALL, "n_clips=3", f"store.path={run / 'r.zarr'}", f"body.cache_dir={cache}",
                             f"cluster.temp_dir={tempfile.mkdtemp(prefix='rt-', dir='/tmp')}"],   # short socket paths
        "matting.classical": [f"input={video}", f"output_dir={run / 'out'}"],
        "gvm_train.infer": [f"input={video}", f"checkpoint={model}", "threads=1", "short_side=256", f"output_dir={run / 'out'}"],
        "pipelines.pseudolabel": [f"input={video}", "segmenter=best", f"store.path={run / 'p.zarr'}"],
        "gvm_train.finetune": [f"data.stores=[{store}]", "train.steps=400", "train.val_every=0", "train.threads=1",
                               "train.tensorboard=false", f"output_dir={run / 'out'}"],
        "pipelines.publish": [f"store={store}", f"output_dir={run / 'release'}", "shard_bytes=1"],
        "pipelines.benchmark_set": [f"stores=[{store}]", "clips=all", f"output_dir={run / 'out'}"],
        "pipelines.validate": [store, "--workers", "1"],
    }


@pytest.mark.slow
@pytest.mark.parametrize("module", [pytest.param("pipelines.render", marks=[pytest.mark.ray, pytest.mark.blender]), "matting.classical", "gvm_train.infer", "pipelines.pseudolabel",
                                    "gvm_train.finetune", "pipelines.publish", "pipelines.benchmark_set",
                                    "pipelines.validate"])
def test_every_app_stops_cleanly_at_every_moment(module, tmp_path, model, inputs, cache_dir):
    for delay in SHORT.get(module, DELAYS):
        run = tmp_path / f"at{delay}"
        stop_at(module, _apps(run, model, inputs, cache_dir)[module], delay, run)
    if module == "gvm_train.infer":   # Ctrl-C is a stop too, with its own status
        run = tmp_path / "sigint"
        stop_at(module, _apps(run, model, inputs, cache_dir)[module], 4.0, run, signal.SIGINT)


@pytest.fixture
def handlers():
    """The test process's own signal handlers and stop record, put back after a test that stops itself."""
    saved = {s: signal.getsignal(s) for s in stops.EXIT_STATUS}
    yield
    stops._received.clear()
    for s, h in saved.items():
        signal.signal(s, h)


def test_a_stop_that_became_another_exception_is_still_a_stop(handlers, capsys):
    """What numba does to a KeyboardInterrupt raised inside its callback: the task ends in a
    SystemError; the signal was recorded, so the run ends as a stop."""
    def task() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except KeyboardInterrupt as e:
            raise SystemError("<built-in function> returned a result with an exception set") from e
        return 0
    assert guarded(task) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("stopped by SIGTERM")


def test_a_swallowed_stop_is_raised_at_the_next_safe_point(handlers):
    def task() -> int:
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        except KeyboardInterrupt:
            pass          # a library that swallows it
        stops.check()     # the loop's safe point
        raise AssertionError("the safe point did not stop the loop")
    assert guarded(task) == 130


def test_work_that_ends_normally_after_a_stop_still_reports_it(handlers, capsys):
    def task() -> int:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        except KeyboardInterrupt:
            pass
        return 0
    assert guarded(task) == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err


def test_a_stop_dropped_in_a_finalizer_is_raised_again(handlers):
    """Python prints and drops an exception raised in a weakref callback or __del__ (where a signal
    handler can run); the stop comes back from the code around it, with no traceback printed."""
    class Dying:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)   # the handler runs inside this finalizer

    def task() -> int:
        Dying()
        for _ in range(100):   # plain work with no safe point of its own
            time.sleep(0.01)
        raise AssertionError("the dropped stop never came back")
    assert guarded(task) == 143


def test_rays_own_sigterm_exit_is_a_stop(handlers):
    # ray.init installs a handler that exits with the signal's number while it connects.
    assert guarded(lambda: sys.exit(int(signal.SIGTERM))) == 143
