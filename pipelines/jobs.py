"""One job loop for every driver: a set of Ray tasks run to the end, whatever they do.

`run` joins the cluster (or starts a local one), runs one task per job with the retries and worker
recycling the `cluster` config asks for, shows progress in the jobs' own units (a task reports
them as it goes), cancels what is under way on a stop, and shuts Ray down. Every failed attempt
is kept, not only printed: the worker appends it, with its traceback, to the failure log beside
the store (clipstore.failures); an attempt that dies with its worker is logged by the driver when
Ray gives up on it. The drivers' summaries and validate read the log back.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import clipstore.location
from clipstore.failures import failures, record
from core import stops
from core.cli import UserError

REPO = Path(__file__).resolve().parent.parent


# --- the cluster ------------------------------------------------------------------------------------

def _runtime_env(cl: dict) -> dict:
    """What the workers need: the variables that reach the driver's stores (an object store's endpoint
    and credentials) and, on a joined cluster, this checkout's code, uploaded.

    Ray's working_dir, not py_modules: with py_modules Ray still puts the driver's current folder
    first on the workers' sys.path, so a node holding an older copy at that path would run it.
    A local cluster shares this machine's files and gets no code.
    """
    env = {"env_vars": clipstore.location.environment()}
    if not cl["address"] or not cl["ship_code"]:
        return env
    if not (REPO / "pyproject.toml").is_file():
        raise UserError(f"cluster.ship_code: {REPO} is not a source checkout; install the project on every node "
                        f"and set cluster.ship_code=false")
    return {**env, "working_dir": str(REPO), "excludes": list(cl["ship_excludes"])}  # .gitignore'd paths stay too


def check_reachable(address: str, timeout: float) -> None:
    """A host:port (or ray://host:port) must answer within `timeout` seconds: Ray itself retries
    a silent address for ever, deaf to SIGTERM while it does. "auto" is Ray's to resolve."""
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
        ray.init(address="local", num_cpus=cl["workers"] * cl["cpus_per_worker"], _temp_dir=cl["temp_dir"],
                 runtime_env=_runtime_env(cl), **kwargs)


# --- the loop ----------------------------------------------------------------------------------------

class Counts:
    """A Ray actor's state: units done (frames) per job under way, reported by the tasks as they
    go, read by the driver for its progress bar (a default clip runs for most of an hour)."""

    def __init__(self) -> None:
        self.units: dict[str, int] = {}

    def report(self, key: str, n: int) -> None:
        self.units[key] = n

    def snapshot(self) -> dict[str, int]:
        return dict(self.units)


def attempt(fn: Callable, key: str, log: str | None, run: str, counts: Any, *args: Any) -> Any:
    """One try of a job, inside a worker: `fn(*args, progress=...)`; a failure is logged with its
    traceback before Ray sees it (and retries it, if the cluster config says so)."""
    import ray
    tell = None if counts is None else (lambda n: counts.report.remote(key, n))
    try:
        return fn(*args, progress=tell)
    except Exception as e:
        record(Path(log) if log else None, run, key, e, traceback.format_exc(), ray.get_runtime_context().get_node_id())
        raise


@dataclass(frozen=True)
class Job:
    key: str                 # what the job is called in progress lines and the failure log (a clip id, a video)
    size: int                # units of work (frames), for the progress bar
    args: tuple              # what the task gets, before progress=


@dataclass
class Outcome:
    done: list[Any] = field(default_factory=list)           # what each finished task returned
    failed: dict[str, str] = field(default_factory=dict)    # job key -> the last error, in one line
    stopped: BaseException | None = None                    # the stop that ended the run early
    run: str = ""                                           # this run's id in the failure log


def _why(e: Exception, cl: dict) -> str:
    """The failure in one line, with how often it was tried: a killed worker's job is always
    retried, one whose own code raised only with retry_exceptions."""
    from ray.exceptions import RayTaskError
    tries = 1 + cl["max_retries"] if cl["retry_exceptions"] or not isinstance(e, RayTaskError) else 1
    cause = getattr(e, "cause", None) or e
    return f"{type(cause).__name__}: {' '.join(str(cause).split())[:300]} ({tries} tries)"


def run(fn: Callable, jobs: list[Job], cl: dict, log: Path | None, desc: str, unit: str = "frame",
        noun: str = "jobs", max_calls: int = 0, show: bool = True) -> Outcome:
    """Run `fn` once per job on the cluster `cl` (conf/cluster/); see the module docstring. The bar
    counts `unit`s and names the jobs `noun`; `max_calls`: a worker process is replaced after that
    many jobs (0: never)."""
    import ray
    from ray.exceptions import RayTaskError
    from tqdm import tqdm

    out = Outcome(run=f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}")
    connect(cl)
    stops.install()   # ray.init installs its own SIGTERM handler, which would exit without a summary
    task = ray.remote(num_cpus=cl["cpus_per_worker"], max_calls=max_calls, max_retries=cl["max_retries"],
                      retry_exceptions=cl["retry_exceptions"])(attempt).options(name=fn.__name__)   # "ray::<fn>" in ps
    counts = ray.remote(num_cpus=0)(Counts).remote()
    pending = {task.remote(fn, j.key, str(log) if log else None, out.run, counts, *j.args): j for j in jobs}
    finished = 0   # units of jobs that ended (done or failed)
    drawn = time.monotonic()
    try:
        with tqdm(total=sum(j.size for j in jobs), unit=unit, desc=desc, file=sys.stderr, dynamic_ncols=True,
                  disable=not show) as bar:
            bar.set_postfix({noun: f"0/{len(jobs)}", "failed": 0})
            while pending:
                # A bounded wait: the loop comes back to Python at least once a second, so a signal is handled.
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                stops.check()
                if ready:
                    job = pending.pop(ready[0])
                    finished += job.size
                    try:
                        out.done.append(ray.get(ready[0]))
                    except Exception as e:  # noqa: BLE001 - one job's failure must not stop the run
                        stops.check()
                        out.failed[job.key] = _why(e, cl)
                        if not isinstance(e, RayTaskError):   # the worker died: it could not log the attempt
                            record(log, out.run, job.key, out.failed[job.key])
                        bar.write(f"{job.key} failed: {out.failed[job.key]}", file=sys.stderr)
                    bar.set_postfix({noun: f"{len(out.done)}/{len(jobs)}", "failed": len(out.failed)}, refresh=False)
                try:
                    under_way = ray.get(counts.snapshot.remote(), timeout=10.0)
                except ray.exceptions.RayError:   # a timeout or a lost actor: the bar is a convenience, never a reason to stop
                    under_way = {}
                # A retried job starts again from 0, so the bar is set, not advanced; redrawn when it
                # moved, else every 10 s for the clock (a log file gets no line a second).
                n = finished + sum(min(under_way.get(j.key, 0), j.size) for j in pending.values())
                if n != bar.n or ready or time.monotonic() - drawn > 10.0:
                    bar.n, drawn = n, time.monotonic()
                    bar.refresh()
    except BaseException as e:
        if not stops.stopping(e):
            raise
        out.stopped = e
        for ref in pending:
            ray.cancel(ref, force=True)
    finally:
        ray.shutdown()
        stops.install()
    return out


def failed_lines(outcome: Outcome, log: Path | None) -> list[str]:
    """The summary's lines for the jobs that failed, each with its attempts in the log."""
    logged = failures(log)
    lines = []
    for key, why in sorted(outcome.failed.items()):
        n = sum(1 for f in logged if f["run"] == outcome.run and f["job"] == key)
        lines.append(f"FAILED {key}: {why}" + (f"; {n} attempt(s) with tracebacks in {log}" if n else ""))
    return lines
