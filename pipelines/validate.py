"""`python -m pipelines.validate <store>`: check every clip of a store against the store contract.

Reads every frame of every array (so every chunk is proven readable and every checksum recorded
at write time is recomputed), prints a table, and exits 0 only when every clip is valid, 1 when
any is not, 2 when the path is not a store. It changes nothing unless asked: `--prune-incomplete`
deletes only clip groups that lack `complete: true`, `--prune-invalid` every clip found invalid
(damaged data, to render again); `--finalize` writes the manifest and the
consolidated metadata when every clip is valid. The checks themselves live in `clipstore.checks`,
beside the schema they check; this is the command line around them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import clipstore
from clipstore import Report
from core.checks import writable
from core.cli import ArgumentParser, UserError, fail, guarded
from pipelines.table import columns

EXIT_INVALID = 1


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
    return columns(head, rows)


def summary(report: Report) -> str:
    n = len(report.clips)
    lines = [f"{report.store}: {n} clips, {n - len(report.invalid) - len(report.removed)} valid, "
             f"{len(report.invalid)} invalid" + (f", {len(report.removed)} removed" if report.removed else "")]
    if any(report.status(c) == "ok*" for c in report.clips):
        lines.append("ok*: valid, with notes (in the problems column)")
    lines += [f"removed clips/{cid}" for cid in report.removed]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m pipelines.validate", description=__doc__.split("\n\n")[0])
    p.add_argument("store", help="the store: a folder or a URL")
    p.add_argument("--prune-incomplete", action="store_true",
                   help="delete clip groups without `complete: true` (only when no writer is running)")
    p.add_argument("--prune-invalid", action="store_true",
                   help="delete every clip group found invalid, complete or not (damaged data: render or label it "
                        "again; the same render command renders only what is missing)")
    p.add_argument("--finalize", action="store_true",
                   help="when every clip is valid, write the manifest and consolidated metadata (as a render run does)")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument("--workers", type=int, default=0, help="clips checked at once (0: one per CPU)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.workers < 0:
        fail(f"--workers must be 0 (one per CPU) or more, got {args.workers}")
    try:
        if args.json:
            writable(args.json, "--json", folder=False)
    except UserError as e:
        fail(str(e))
    try:
        report = clipstore.validate(args.store, args.workers, prune_incomplete_clips=args.prune_incomplete,
                                    finalize_store=args.finalize, prune_invalid=args.prune_invalid)
    except clipstore.StoreError as e:
        fail(str(e))
    print(table(report))
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return EXIT_INVALID if report.invalid else 0


if __name__ == "__main__":
    sys.exit(guarded(main))
