"""What config values must be, checked for every app before its work starts.

Two checks, one line each when they fail, naming the key:
- every value is of its default's kind: a yes/no for a yes/no, a number for a number, a text for a
  text, a list for a list, a range (a number, [lo, hi], {int: [lo, hi]} or {choice: [...]}) for a
  range; a key whose default is null takes anything;
- conf/rules/values.yaml's rules, by dotted key, for whatever config
  holds that key: the same key means the same thing in every app that composes it. A key whose
  rule lists the values it takes (`one of ...`) skips the kind check. A range's every end obeys its
  key's rules.

Rules: `> x`, `>= x`, `< x`, `<= x`, `[a, b]` (inclusive), `int` (a whole number), `multiple of n`,
`one of a, b`, `weights` (non-negative numbers, some positive), `folder` / `file` (null, or one
that exists), `only with <key>[=<v>|<v>...]` (setting it to anything but its default needs that
key set, or at one of those values: an option that does not apply is an error, not ignored),
`items <rule>` (every item of a list), `length n`, `length >= n`. `*` in a key stands for any part of it.
"""
from __future__ import annotations

import fnmatch
import functools
import re
from pathlib import Path
from typing import Any, Mapping

from core import ranges
from core.checks import is_number
from core.conf import load
from core.errors import UserError


@functools.lru_cache(maxsize=1)
def table() -> dict[str, list[str]]:
    """conf/rules/values.yaml: dotted key (glob) -> its rules."""
    return {k: [v] if isinstance(v, str) else list(v) for k, v in load("rules/values").items()}


def _nodes(d: Any, prefix: str = "", leaves: bool = True) -> dict[str, Any]:
    """Dotted key -> value of every leaf (a range written as a mapping, {int: ...}, is one), and with
    `leaves=False` of every section too."""
    if isinstance(d, Mapping) and d and ranges.kind(dict(d)) is None:
        out = {} if leaves or not prefix else {prefix[:-1]: d}
        for k, v in d.items():
            out.update(_nodes(v, f"{prefix}{k}.", leaves))
        return out
    return {prefix[:-1]: d}


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a yes/no (true or false)"
    if is_number(v):
        return "a number"
    if isinstance(v, str):
        return "a text"
    if isinstance(v, Mapping) and ranges.kind(dict(v)) is None:
        return "a section of keys"
    if isinstance(v, (list, tuple)) and ranges.kind(list(v)) is None:
        return "a list"
    return "a range"


def _fits(value: Any, default: Any) -> bool:
    """Whether `value` is of `default`'s kind: a range default takes any range, a number among them,
    and a number default a range too (a sampled key may be fixed by default and ranged by a user)."""
    want = _kind(default)
    if want in ("a range", "a number"):
        return ranges.kind(value) is not None
    if want == "a list":   # a list default also takes a range-looking list ([0.2, 0.4] of two numbers)
        return isinstance(value, (list, tuple))
    return want in ("null", _kind(value))


def _values(v: Any) -> list[Any]:
    """What a rule judges: a range's every end, or the value itself."""
    kind = ranges.kind(v) if isinstance(v, (Mapping, list, tuple)) else None
    return ranges.ends(v, "") if kind in ("int", "choice", "uniform") else [v]


def _obeys(rule: str, v: Any, key: str, cfg: Mapping, default: Any) -> str | None:
    """None when `v` obeys `rule`, else what it must be."""
    rule = rule.strip()
    if m := re.fullmatch(r"only with ([\w.]+)(?:=(.+))?", rule):
        present = _nodes(cfg, leaves=False)
        if m.group(1) not in present and m.group(2) is not None:
            return None   # an app without that key: the same name means something else there
        other = present.get(m.group(1))
        applies = other is not None if m.group(2) is None else \
            str(other).lower() in [a.strip().lower() for a in m.group(2).split("|")]
        if v != default and not applies:
            needs = f"{m.group(1)}={m.group(2)}" if m.group(2) else f"{m.group(1)} set"
            return f"left at its default ({default!r}): it applies only with {needs} (here {m.group(1)}={other!r})"
        return None
    if v is None and rule not in ("weights",) and not rule.startswith(("length", "items")):
        return None   # null: unset, which the app reads as its own default
    if rule.startswith("items "):
        if not isinstance(v, (list, tuple)):
            return "a list"
        for item in v:
            if (why := _obeys(rule[6:], item, key, cfg, None)) is not None:
                return f"a list whose items are each {why}"
        return None
    if m := re.fullmatch(r"length (>= )?(\d+)", rule):
        n, least = int(m.group(2)), bool(m.group(1))
        ok = isinstance(v, (list, tuple)) and (len(v) >= n if least else len(v) == n)
        return None if ok else f"a list of {'at least ' if least else ''}{n} item(s)"
    if rule == "weights":
        ok = (isinstance(v, Mapping) and all(is_number(x) and x >= 0 for x in v.values())
              and any(x > 0 for x in v.values()))
        return None if ok else "non-negative weights, at least one positive"
    if rule in ("folder", "file"):
        if v is None:
            return None
        p = Path(str(v)).expanduser()
        return None if (p.is_dir() if rule == "folder" else p.is_file()) else f"an existing {rule} (or null)"
    if rule.startswith("one of "):
        allowed = [x.strip() for x in rule[7:].split(",")]
        return None if all(str(x).lower() in [a.lower() for a in allowed] for x in _values(v)) else rule
    for x in _values(v):
        if m := re.fullmatch(r"multiple of (\d+)", rule):
            if not (is_number(x) and float(x) % int(m.group(1)) == 0):
                return rule
            continue
        if rule == "int":
            if not (is_number(x) and float(x).is_integer()):
                return "a whole number"
            continue
        if not is_number(x):
            return f"a number {rule}"
        if m := re.fullmatch(r"\[\s*([-\d.e]+)\s*,\s*([-\d.e]+)\s*\]", rule):
            if not float(m.group(1)) <= x <= float(m.group(2)):
                return f"in {rule}"
        elif m := re.fullmatch(r"(>=|>|<=|<)\s*([-\d.e]+)", rule):
            bound = float(m.group(2))
            ok = {">=": x >= bound, ">": x > bound, "<=": x <= bound, "<": x < bound}[m.group(1)]
            if not ok:
                return rule
        else:
            raise ValueError(f"conf/rules/values.yaml: rule {rule!r} of {key} is not one this code knows")
    return None


def check(cfg: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
    """Every value of an app's `cfg` against its `defaults` (the app's config as shipped) and the rules."""
    rules, shipped, leaves = table(), _nodes(defaults, leaves=False), _nodes(cfg)
    nodes = {**leaves, **_nodes(cfg, leaves=False)}   # leaves first: a value's own rule names it, not its section
    for key, v in nodes.items():
        own = [r for pattern, rs in rules.items() if fnmatch.fnmatchcase(key, pattern) for r in rs]
        listed = any(r.startswith("one of ") for r in own)   # a list of the values it takes says its kinds too
        if not listed and key in leaves and key in shipped and not _fits(v, shipped[key]):
            raise UserError(f"{key} must be {_kind(shipped[key])} like its default {shipped[key]!r}, got {v!r}")
        for rule in own:
            if (why := _obeys(rule, v, key, cfg, shipped.get(key))) is not None:
                raise UserError(f"{key} must be {why}, got {v!r}")
