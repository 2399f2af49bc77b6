"""Checks of config values: the numbers live in conf/, the code only knows which keys exist and
what a value must be. Every failure is a UserError naming the key."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from core.errors import UserError


def require_keys(cfg: Mapping[str, Any] | None, keys: Sequence[str], section: str) -> dict[str, Any]:
    """The section as a dict; an unknown or a missing key is an error naming it, never a default."""
    out = dict(cfg or {})
    unknown = sorted(set(out) - set(keys))
    if unknown:
        raise UserError(f"{section}: unknown key(s) {', '.join(unknown)} (known: {', '.join(keys)})")
    missing = [k for k in keys if k not in out]
    if missing:
        raise UserError(f"{section}: missing key(s) {', '.join(missing)}")
    return out


def at(cfg: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key ("cycles.width")."""
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def is_number(v: Any) -> bool:
    """A real number; booleans are not numbers here."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def integer(value: Any, key: str, minimum: int = 0) -> int:
    """`value` if it is an integer of at least `minimum` (booleans are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
        raise UserError(f"{key} must be {kind}, got {value!r}")
    return value


def one_of(value: Any, allowed: Sequence[Any], key: str) -> Any:
    if value not in allowed:
        raise UserError(f"{key} must be one of {', '.join(map(str, allowed))}, got {value!r}")
    return value


def writable(path: Any, key: str, folder: bool = True) -> Path:
    """`path` as a Path, if an output folder (or file) can be made there: the nearest existing
    ancestor must be a writable folder and the path itself, if it exists, of the right kind.
    Checked before the work, so that a bad output place costs nothing."""
    p = Path(path).expanduser()
    if p.exists() and p.is_dir() != folder:
        raise UserError(f"{key}: {p} is {'a file, not a folder' if folder else 'a folder, not a file'}")
    parent = p if p.exists() and folder else p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(f"{key}: {p} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK):
        raise UserError(f"{key}: {p} cannot be created: {parent} is not writable")
    return p


def number(value: Any, key: str, low: float | None = None, high: float | None = None, above: bool = False) -> float:
    """`value` if it is a real number in [low, high] (above=True: strictly above `low`)."""
    ok = is_number(value) and (low is None or (value > low if above else value >= low)) and (high is None or value <= high)
    if not ok:
        bounds = ([f"> {low:g}" if above else f">= {low:g}"] if low is not None else []) + \
                 ([f"<= {high:g}"] if high is not None else [])
        raise UserError(f"{key} must be a number {' and '.join(bounds)}, got {value!r}".replace(" ,", ","))
    return value
