"""`python -m pipelines.validate <store>`: check every clip of a store against the store contract.

Reads every frame of every array (so every chunk is proven readable and every checksum recorded
at write time is recomputed), prints a table, and exits 0 only when every clip is valid, 1 when
any is not, 2 when the path is not a store. It changes nothing unless asked: `--prune-incomplete`
deletes only clip groups that lack `complete: true`; `--finalize` writes the manifest and the
consolidated metadata when every clip is valid. The checks themselves live in `pipelines.store`,
the one module that knows the schema; this is the command line around them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from pipelines import store
from pipelines.cli import fail

EXIT_INVALID = 1


@dataclass
class Report:
    store: str
    clips: list[store.ClipCheck]
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def status(self, c: store.ClipCheck) -> str:
        if c.clip_id in self.removed:
            return "removed"
        return ("ok" if not c.notes else "ok*") if c.ok else "INVALID"

    @property
    def invalid(self) -> list[str]:
        return [c.clip_id for c in self.clips if not c.ok and c.clip_id not in self.removed]

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "ok": not self.invalid, "invalid": self.invalid, "removed": self.removed,
                "notes": self.notes,
                "clips": [{**dataclasses.asdict(c), "status": self.status(c)} for c in self.clips]}


def validate(path: str, workers: int = 0, prune_incomplete: bool = False, finalize: bool = False) -> Report:
    """Check every clip of the store at `path` (`workers` threads, 0: one per CPU). Then, if asked:
    delete the clips lacking `complete: true`, and write the manifest and consolidated metadata
    (only when every remaining clip is valid). Raises store.StoreError when `path` is not a store."""
    root = store.open_store(path, mode="r+" if prune_incomplete or finalize else "r")
    manifest = store.manifest(root)
    ids = store.all_ids(root)
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        jobs = pool.map(lambda cid: store.check_clip(root, cid, manifest), ids)
        checks = list(tqdm(jobs, total=len(ids), unit="clip", desc="validate", file=sys.stderr, dynamic_ncols=True))
    report = Report(str(path), sorted(checks + store.manifest_only(root, manifest), key=lambda c: c.clip_id))
    listed = store.consolidated_ids(root)
    complete = [c.clip_id for c in checks if c.complete]
    if manifest is None:
        report.notes.append("no manifest: the store was never finalized")
    if listed is not None and listed != complete:
        report.notes.append(f"consolidated metadata lists {len(listed)} complete clips, the store holds "
                            f"{len(complete)}: plain-zarr readers see a stale snapshot (run with --finalize)")
    if prune_incomplete:
        report.removed = store.prune_incomplete(root)
    if finalize and not report.invalid:
        store.finalize(path)
        report.notes.append(f"finalized: manifest and consolidated metadata of {len(complete)} clips written")
    elif finalize:
        report.notes.append(f"not finalized: {len(report.invalid)} clips are invalid")
    return report


def table(report: Report) -> str:
    """One row per clip; a clip's further problems and notes continue on the lines below it."""
    head = ("clip", "frames", "size", "MiB", "status", "problems")
    rows = []
    for c in report.clips:
        size = f"{c.width}x{c.height}" if c.width is not None else "-"
        what = c.problems + [f"note: {n}" for n in c.notes]
        rows.append((c.clip_id, "-" if c.frames is None else str(c.frames), size, f"{c.bytes / 2**20:.2f}",
                     report.status(c), what[0] if what else ""))
        rows += [("", "", "", "", "", w) for w in what[1:]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r[:-1], widths)) + "  " + r[-1] for r in [head, *rows]]
    return "\n".join(line.rstrip() for line in lines)


def summary(report: Report) -> str:
    n = len(report.clips)
    lines = [f"{report.store}: {n} clips, {n - len(report.invalid) - len(report.removed)} valid, "
             f"{len(report.invalid)} invalid" + (f", {len(report.removed)} removed" if report.removed else "")]
    if any(report.status(c) == "ok*" for c in report.clips):
        lines.append("ok*: valid, with notes (in the problems column)")
    lines += [f"removed clips/{cid} (incomplete)" for cid in report.removed]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m pipelines.validate", description=__doc__.split("\n\n")[0])
    p.add_argument("store", help="the store: a folder or a URL")
    p.add_argument("--prune-incomplete", action="store_true",
                   help="delete clip groups without `complete: true` (only when no writer is running)")
    p.add_argument("--finalize", action="store_true",
                   help="when every clip is valid, write the manifest and consolidated metadata (as a render run does)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--workers", type=int, default=0, help="clips checked at once (0: one per CPU)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report = validate(args.store, args.workers, args.prune_incomplete, args.finalize)
    except store.StoreError as e:
        fail(str(e))
    print(table(report))
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return EXIT_INVALID if report.invalid else 0


if __name__ == "__main__":
    sys.exit(main())
