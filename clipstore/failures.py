"""The failure log beside a store: every failed attempt to make one of its clips, kept.

`<store>.failures.jsonl`, one JSON object a line: the run, the job (a clip id, or a video that
pseudo-labelling could not label), the attempt within that run, the error, its traceback, and
where it ran (node, host, pid) and when. Workers append to it (one write a line), the drivers'
summaries name it, and validate reports the clips it holds that the store still lacks.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

from clipstore.location import beside

SUFFIX = ".failures.jsonl"


def log_beside(store_path: str, local_dir: str | None = None) -> Path:
    """The log beside a store on this machine's disk (a cluster shares it); for a store behind a URL,
    under `local_dir` (clipstore.location.beside), written by the driver and by workers on this machine."""
    return beside(store_path, SUFFIX, local_dir)


def failures(log: Path | None) -> list[dict]:
    """Every failed attempt the log holds, oldest first ([] without one; a torn line is skipped)."""
    if log is None or not log.is_file():
        return []
    out = []
    for line in log.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def record(log: Path | None, run: str, job: str, error: BaseException | str, trace: str = "",
           node: str | None = None) -> dict:
    """Append one failed attempt (in one write: workers on many nodes may append at once); its
    attempt number counts this run's earlier records of the same job."""
    entry = {"run": run, "job": job, "error": error if isinstance(error, str) else f"{type(error).__name__}: {error}",
             "traceback": trace, "node": node, "host": platform.node(), "pid": os.getpid(),
             "time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if log is None:
        return {**entry, "attempt": None}
    entry["attempt"] = 1 + sum(1 for f in failures(log) if f["run"] == run and f["job"] == job)
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(entry) + "\n").encode())
    finally:
        os.close(fd)
    return entry
