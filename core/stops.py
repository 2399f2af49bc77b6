"""Stop signals (Ctrl-C, SIGTERM), honoured at any moment of an app, whatever code is running.

While an app starts (imports, config) nothing has been done yet, so a stop ends the process at
once with one line (`starting`). Once its task runs (`install`), a stop raises KeyboardInterrupt
where the main thread is, so every `finally` and every driver's summary runs as for Ctrl-C. Code
that cannot take an exception raised inside it (numba's compiled callbacks, C extensions) turns
it into another one ("SystemError: ... returned a result with an exception set") or drops it
(a finalizer, a weakref callback: it is raised again a moment later); the signal is recorded
either way, so whatever ends the task after a stop is taken for the stop (`stopping`), and the
work loops' safe points raise it again (`check`) where a library swallowed it. The exit status is the shell's for that signal: 130 for SIGINT, 143 for SIGTERM.
"""
from __future__ import annotations

import os
import signal
import sys

EXIT_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}   # 128 + the signal's number, as shells report it
_received: list[signal.Signals] = []   # the stop signals this process got, in order


def _raise(signum: int, frame: object) -> None:
    _received.append(signal.Signals(signum))
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _again(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(_received[0].name)


def _unraisable(u: "sys.UnraisableHookArgs") -> None:
    """A stop raised inside a finalizer or a weakref callback (numba's type registry, for one) is
    printed and dropped by Python; raise it again a moment later, from code that can take it."""
    if isinstance(u.exc_value, KeyboardInterrupt) and _received:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        return
    sys.__unraisablehook__(u)


def _quit(signum: int, frame: object) -> None:
    os.write(2, f"stopped by {signal.Signals(signum).name} while starting: nothing was done\n".encode())
    os._exit(EXIT_STATUS[signal.Signals(signum)])


def starting() -> None:
    """Under `python -m <app>` (the package's __init__ runs while Python still looks for the
    module, sys.argv[0] being "-m"): a stop before the task runs ends the process at once."""
    if sys.argv[:1] == ["-m"]:
        for s in EXIT_STATUS:
            signal.signal(s, _quit)


def install() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt; called again after a library (Ray) took them."""
    for s in EXIT_STATUS:
        signal.signal(s, _raise)
    signal.signal(signal.SIGALRM, _again)
    sys.unraisablehook = _unraisable


def received() -> signal.Signals | None:
    """The first stop signal this process got, or None."""
    return _received[0] if _received else None


def stopping(e: BaseException) -> bool:
    """Whether `e` ends the work because of a stop: a KeyboardInterrupt, or anything raised once a
    stop signal arrived (the interrupt turned into another exception by the code it hit)."""
    if isinstance(e, SystemExit) and e.code == signal.SIGTERM and not _received:
        # Ray's own handler, in place while ray.init runs, exits with the signal's number.
        _received.append(signal.SIGTERM)
    return isinstance(e, KeyboardInterrupt) or received() is not None


def status() -> int:
    """The exit status of a stop: the first signal's, or Ctrl-C's for a plain KeyboardInterrupt."""
    return EXIT_STATUS[received() or signal.SIGINT]


def check() -> None:
    """A safe point of a work loop: raise the stop here if one arrived and was swallowed."""
    if _received:
        raise KeyboardInterrupt(_received[0].name)
