"""Checks of config sections: the numbers live in conf/, the code only knows which keys exist."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def require_keys(cfg: Mapping[str, Any] | None, keys: Sequence[str], section: str) -> dict[str, Any]:
    """The section as a dict; an unknown or a missing key is an error naming it, never a default."""
    out = dict(cfg or {})
    unknown = sorted(set(out) - set(keys))
    if unknown:
        raise ValueError(f"{section}: unknown key(s) {', '.join(unknown)} (known: {', '.join(keys)})")
    missing = [k for k in keys if k not in out]
    if missing:
        raise ValueError(f"{section}: missing key(s) {', '.join(missing)}")
    return out
