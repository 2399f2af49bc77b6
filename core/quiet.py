"""Quiet by default: what libraries print goes to a log file, the terminal keeps our own lines.

Third-party chatter comes three ways: C/C++ code writing to file descriptor 2 (TensorFlow Lite,
glog, Cycles' CUDA/HIP probes, Ray), Python warnings and logging, and plain prints to stdout
(pymatting's solver notes). `routed` moves descriptor 2 onto the log file and gives `sys.stderr`
a fresh stream on a copy of the terminal's descriptor, so progress bars, error lines and
tracebacks, which Python writes through `sys.stderr`, still reach the user; warnings and the
root logger go to the log. `chatter` wraps a noisy call whose stdout is not ours.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

# Read by libraries when they load: set before any of them is imported by a task.
LIBRARY_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GLOG_minloglevel": "2", "DIFFUSERS_VERBOSITY": "error",
               "TRANSFORMERS_VERBOSITY": "error"}

_log: TextIO | None = None


@contextlib.contextmanager
def routed(log_path: Path) -> Iterator[Path]:
    """Everything libraries say goes to `log_path` while the block runs."""
    global _log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "a", buffering=1)
    for key, value in LIBRARY_ENV.items():
        os.environ.setdefault(key, value)
    sys.stdout.flush()
    sys.stderr.flush()
    terminal_fd = os.dup(2)
    os.dup2(log.fileno(), 2)
    saved = sys.stderr, warnings.showwarning
    terminal = io.TextIOWrapper(io.FileIO(terminal_fd, "w", closefd=False), line_buffering=True, errors="backslashreplace")
    sys.stderr = terminal
    warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: log.write(
        warnings.formatwarning(message, category, filename, lineno, line))
    root = logging.getLogger()
    terminal_handlers = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                         and not isinstance(h, logging.FileHandler)]
    for h in terminal_handlers:
        root.removeHandler(h)
    to_log = logging.StreamHandler(log)
    to_log.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
    root.addHandler(to_log)
    _log = log
    try:
        yield log_path
    finally:
        _log = None
        root.removeHandler(to_log)
        for h in terminal_handlers:
            root.addHandler(h)
        terminal.flush()
        sys.stderr, warnings.showwarning = saved
        os.dup2(terminal_fd, 2)
        os.close(terminal_fd)
        log.close()


@contextlib.contextmanager
def chatter() -> Iterator[None]:
    """A library call's prints to stdout, Python's and C's (Blender's log, Cycles' device probes),
    go to the log (when output is routed; else they show)."""
    if _log is None:
        yield
        return
    import ctypes
    sys.stdout.flush()
    terminal_fd = os.dup(1)
    os.dup2(_log.fileno(), 1)
    try:
        with contextlib.redirect_stdout(_log):
            yield
    finally:
        ctypes.CDLL(None).fflush(None)   # C's buffered prints land in the log, not later on the terminal
        os.dup2(terminal_fd, 1)
        os.close(terminal_fd)
