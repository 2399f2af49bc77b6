"""Draw a value from a range written in the Hydra config; the one home of the range syntax.

A range is a number (fixed), [lo, hi] (uniform float), {int: [lo, hi]} (uniform integer,
inclusive) or {choice: [...]} (one of the items). `where` is the config key, named in errors.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def _parse(spec: Any, where: str) -> tuple[str, Any]:
    """The range's kind (fixed, int, choice, uniform) and its values, or the error naming `where`."""
    if isinstance(spec, bool):
        raise ValueError(f"{where}: a boolean is not a number or a range")
    if isinstance(spec, (int, float)):
        return "fixed", spec
    if isinstance(spec, Mapping) and set(spec) == {"int"} and len(spec["int"]) == 2:
        lo, hi = (int(v) for v in spec["int"])
        if hi < lo:
            raise ValueError(f"{where}: range {{int: [{lo}, {hi}]}} has its low end above its high end")
        return "int", (lo, hi)
    if isinstance(spec, Mapping) and set(spec) == {"choice"} and len(spec["choice"]) > 0:
        return "choice", list(spec["choice"])
    if (isinstance(spec, Sequence) and not isinstance(spec, str) and len(spec) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)):
        lo, hi = float(spec[0]), float(spec[1])
        if hi < lo:
            raise ValueError(f"{where}: range [{lo}, {hi}] has its low end above its high end")
        return "uniform", (lo, hi)
    raise ValueError(f"{where}: {spec!r} is not a number, [lo, hi], {{int: [lo, hi]}} or {{choice: [...]}}")


def kind(spec: Any) -> str | None:
    """"fixed", "int", "choice" or "uniform" when `spec` is written as a range, else None (a section of
    keys, a text, a vector)."""
    try:
        return _parse(spec, "")[0]
    except (ValueError, TypeError):
        return None


def draw(spec: Any, rng: np.random.Generator, where: str) -> Any:
    kind, v = _parse(spec, where)
    if kind == "int":
        return int(rng.integers(v[0], v[1], endpoint=True))
    if kind == "choice":
        return v[int(rng.integers(len(v)))]
    if kind == "uniform":
        return float(rng.uniform(*v))
    return v


def ends(spec: Any, where: str) -> list[Any]:
    """Every value a range can reach at its ends (each item of a choice), so rules on the values can
    be checked before anything is drawn."""
    kind, v = _parse(spec, where)
    if kind == "fixed":
        return [v]
    return list(v)


def number(spec: Any, rng: np.random.Generator, where: str) -> float:
    """A range drawn as a float (a {choice: [...]} of numbers included)."""
    value = draw(spec, rng, where)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where}: {value!r} is not a number")
    return float(value)


def weighted(weights: Mapping[str, Any], rng: np.random.Generator, where: str,
             known: Sequence[str] | None = None, what: str = "names") -> str:
    """One name of a {name: weight} table, drawn in proportion to its weight (names sorted, so the
    draw does not depend on the config's key order); with `known`, a name outside it is an error
    that says which `what` there are."""
    unknown = sorted(set(weights) - set(known)) if known is not None else []
    if unknown:
        raise ValueError(f"{where} name unknown {what} {unknown}; known: {', '.join(known)}")
    names = sorted(weights)
    w = np.array([float(weights[n]) for n in names]) if names else np.zeros(0)
    if not names or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"{where} must be non-negative weights with a positive sum, got {dict(weights)}")
    return names[int(rng.choice(len(names), p=w / w.sum()))]
