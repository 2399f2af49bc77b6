"""The completion record of a folder output: `run.json`, written last, read by one helper.

A folder that some step fills (a matting run, a benchmark clip, a prediction set) counts as done
only when it holds `run.json`, and only for the settings that record names: a rerun with the
same settings finds it and skips the work, a rerun with other settings redoes it. The record is
written atomically after everything else, so a killed step never leaves a folder that looks
finished. (Clips in a store use the store contract's own `complete: true` attribute instead.)
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RECORD = "run.json"


def _normal(x: Any) -> Any:
    """As JSON would give it back (tuples as lists, keys as strings)."""
    return json.loads(json.dumps(x, default=str))


def read(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The record of a finished folder, or None (not finished, or a record that cannot be read)."""
    try:
        record = json.loads((Path(folder) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def is_done(folder: str | os.PathLike, settings: Mapping[str, Any] | None = None) -> bool:
    """Whether `folder` is finished, and (given `settings`) finished with exactly these values for
    their keys; the record may hold more (timings, counts)."""
    record = read(folder)
    if record is None:
        return False
    return settings is None or all(record.get(k) == v for k, v in _normal(dict(settings)).items())


def mark(folder: str | os.PathLike, record: Mapping[str, Any]) -> Path:
    """Write the record: the last file a step writes into its folder."""
    path = Path(folder) / RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{RECORD}.part")
    tmp.write_text(json.dumps(_normal(dict(record)), indent=2) + "\n")
    os.replace(tmp, path)
    return path


def clear(folder: str | os.PathLike) -> None:
    """The folder stops counting as done (before a step starts rewriting it)."""
    (Path(folder) / RECORD).unlink(missing_ok=True)
