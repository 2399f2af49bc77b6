"""The checks `python -m pipelines.validate` runs: every clip of a store against the contract.

Each check reads every frame of every array, so it also proves each chunk readable and
recomputes the checksums recorded at write time; it never raises on a damaged clip, since damage
is what it reports. `validate` checks a whole store (and prunes or finalizes it when asked).
"""
from __future__ import annotations

import hashlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np
import zarr
from tqdm import tqdm

from clipstore.clips import all_ids, list_dir, open_store
from clipstore.failures import failures, log_beside
from clipstore.manifest import consolidated_ids, finalize, finalize_root, read_manifest
from clipstore.outputs import declared
from clipstore.schema import ALPHA_MAX, CLIPS, DIMS, REQUIRED, SOURCES, StoreError
from core import stops


@dataclass
class ClipCheck:
    """What validate found in one clip. Problems make it invalid; notes are said but do not."""
    clip_id: str
    complete: bool = False
    readable: bool = True   # False: its group metadata cannot be read, so it cannot even say whether it is complete
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems






def _frame_list(frames: list[int]) -> str:
    """0, 1, 2, 5 -> '0-2, 5': short even when a fault touches every frame of a long clip."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)




def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def _open_arrays(g: zarr.Group, root: zarr.Group, check: ClipCheck) -> dict[str, zarr.Array]:
    arrays = {}
    for name in list_dir(root, f"{CLIPS}/{check.clip_id}"):
        try:
            node = g[name]
        except Exception as e:  # noqa: BLE001 - a broken array is a finding, not a crash
            check.problems.append(f"{name}: cannot open ({type(e).__name__}: {_one_line(e)})")
            continue
        if isinstance(node, zarr.Array):
            arrays[name] = node
    return arrays


def _check_layout(arrays: Mapping[str, zarr.Array], expected: set[str], check: ClipCheck) -> tuple[int, int, int] | None:
    """Presence, and dtypes and shapes against each array's declaration (the one it recorded, else
    the outputs table's); returns the clip's (T, H, W), or None when no array gives it."""
    for name in sorted(expected - arrays.keys()):
        check.problems.append(f"{name}: array missing")
    for name, a in sorted(arrays.items()):
        o = declared(name, dict(a.attrs))
        if o is None:
            check.notes.append(f"{name}: an array no output declares")
            continue
        if a.dtype != np.dtype(o.dtype):
            check.problems.append(f"{name}: dtype {a.dtype}, expected {o.dtype}")
        if a.ndim != o.ndim:
            check.problems.append(f"{name}: shape {a.shape}, expected {o.ndim} axes")
        elif o.channels and a.shape[-1] != len(o.channels):
            check.problems.append(f"{name}: {a.shape[-1]} channels, expected {len(o.channels)}")
    lead_from = "alpha" if "alpha" in arrays else next(iter(sorted(arrays)), None)
    if lead_from is None:
        return None
    lead = arrays[lead_from].shape[:3]
    for name, a in sorted(arrays.items()):
        if a.ndim not in DIMS or a.shape[:3] != lead:
            check.problems.append(f"{name}: shape {a.shape}, expected leading (T, H, W) = {lead} as {lead_from}")
    return lead if len(lead) == 3 else None


def _check_against_spec(attrs: Mapping[str, Any], lead: tuple[int, int, int], check: ClipCheck) -> None:
    spec = attrs.get("spec") if isinstance(attrs.get("spec"), dict) else {}
    expected = spec.get("n_frames", attrs.get("n_frames"))
    if expected is None:
        check.notes.append("frame count not checked (no n_frames in spec or attrs)")
    elif lead[0] != expected:
        check.problems.append(f"{lead[0]} frames, the spec says {expected}")
    size = spec.get("cycles", {})
    if {"width", "height"} <= size.keys() and (size["height"], size["width"]) != lead[1:]:
        check.problems.append(f"{lead[2]}x{lead[1]} pixels, the spec says {size['width']}x{size['height']}")


def _value_faults(coverage: bool, x: np.ndarray) -> dict[str, tuple[float, float] | None]:
    """What is wrong with the values of one frame: NaN/inf in a float array, coverage out of range
    (0..1 for a float alpha a bad writer produced, 0..ALPHA_MAX otherwise), the latter with the
    frame's finite min and max."""
    faults: dict[str, tuple[float, float] | None] = {}
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        faults["NaN or inf"] = None
    if coverage:
        lo, hi = (0.0, 1.0) if x.dtype.kind == "f" else (0, ALPHA_MAX)
        if ((x < lo) | (x > hi)).any():  # NaN compares False: counted above, not here
            finite = x[np.isfinite(x)]
            faults[f"values outside {lo:g}..{hi:g}"] = (float(finite.min()), float(finite.max()))
    return faults


def _check_content(arrays: Mapping[str, zarr.Array], n_frames: int, check: ClipCheck) -> dict[str, str]:
    """Read every frame of every array once: readable chunks, values, colour under coverage.

    Returns the checksums of the arrays read in full, hashed frame by frame (equal to `checksum`
    of the whole array, while memory stays at one frame whatever the clip's length).
    """
    readable, hashers = {}, {}
    for name, a in arrays.items():
        if a.ndim not in DIMS or a.shape[0] != n_frames:
            continue  # already reported by the layout check
        if a.nchunks_initialized < a.nchunks:  # zarr would read the missing data as zeros
            check.problems.append(f"{name}: {a.nchunks - a.nchunks_initialized} of {a.nchunks} frame chunks "
                                  f"not stored (shard file missing)")
        else:
            readable[name], hashers[name] = a, hashlib.sha256()
    faults: dict[str, list[int]] = {}  # "<array>: <fault>" -> frames
    extremes: dict[str, tuple[float, float]] = {}  # the same key -> min, max over those frames
    coverage = {n for n, a in readable.items() if (o := declared(n, dict(a.attrs))) and o.convert == "coverage"}
    for t in range(n_frames):
        stops.check()
        frame = {}
        for name, a in list(readable.items()):
            try:
                frame[name] = a[t]
            except Exception as e:  # noqa: BLE001 - truncated or corrupt shards raise various errors
                check.problems.append(f"{name}: unreadable at frame {t} ({type(e).__name__}: {_one_line(e)})")
                del readable[name], hashers[name]
                continue
            hashers[name].update(np.ascontiguousarray(frame[name]))
            for fault, ext in _value_faults(name in coverage, frame[name]).items():
                key = f"{name}: {fault}"
                faults.setdefault(key, []).append(t)
                if ext:
                    old = extremes.get(key, ext)
                    extremes[key] = (min(old[0], ext[0]), max(old[1], ext[1]))
        if "alpha" in frame and "fgr" in frame:
            covered = frame["alpha"] > 0
            if covered.any() and not frame["fgr"][covered].any():
                faults.setdefault("fgr: all zero where alpha > 0 (colour lost)", []).append(t)
    for key, frames in faults.items():
        ext = f" (min {extremes[key][0]:g}, max {extremes[key][1]:g})" if key in extremes else ""
        check.problems.append(f"{key} in frames {_frame_list(frames)}{ext}")
    return {name: "sha256:" + h.hexdigest() for name, h in hashers.items()}


def _check_checksums(recorded: Any, computed: Mapping[str, str], check: ClipCheck) -> None:
    if not isinstance(recorded, dict):
        check.problems.append("no checksums recorded at write time")
        return
    for name, digest in sorted(computed.items()):
        if name not in recorded:
            check.problems.append(f"{name}: no checksum recorded at write time")
        elif recorded[name] != digest:
            check.problems.append(f"{name}: checksum mismatch (recorded {recorded[name][:19]}..., data {digest[:19]}...)")


def _check_manifest_entry(entry: Mapping[str, Any] | None, lead: tuple[int, int, int] | None,
                          sums: Mapping[str, str], check: ClipCheck) -> None:
    if entry is None:
        check.notes.append("not in manifest (run finalize: pipelines.validate --finalize)")
        return
    if lead is not None and (entry["frames"], entry["height"], entry["width"]) != lead:
        check.problems.append(f"manifest says {entry['frames']} frames of {entry['width']}x{entry['height']}, "
                              f"the store holds {lead[0]} of {lead[2]}x{lead[1]}")
    for name, rec in sorted(entry["arrays"].items()):
        if name in sums and rec["checksum"] != sums[name]:
            check.problems.append(f"{name}: manifest checksum differs from the clip's")


def check_clip(root: zarr.Group, clip_id: str, manifest: Mapping[str, Any] | None = None) -> ClipCheck:
    """Check one clip group against the store contract (and `manifest`, when the store has one).

    Reads every frame of every array, so it also proves each chunk is readable and recomputes the
    checksums recorded at write time. Never raises on a damaged clip: damage is what it reports.
    """
    check = ClipCheck(clip_id)
    try:
        g = root[CLIPS][clip_id]
        attrs = dict(g.attrs)
    except Exception as e:  # noqa: BLE001
        check.problems.append(f"clip group unreadable ({type(e).__name__}: {_one_line(e)})")
        check.readable = False
        return check
    check.complete = complete = attrs.get("complete") is True
    if not complete:
        check.problems.append("incomplete: no `complete: true` (its writer did not finish)")
    if attrs.get("clip_id") != clip_id:
        check.problems.append(f"attrs clip_id is {attrs.get('clip_id')!r}, not the group's name")
    if attrs.get("source") not in SOURCES:
        check.problems.append(f"attrs source is {attrs.get('source')!r}, expected one of {', '.join(SOURCES)}")
    fps = attrs.get("fps")
    if not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and fps > 0):
        check.problems.append(f"attrs fps is {fps!r}, expected a positive number")
    arrays = _open_arrays(g, root, check)
    entry = (manifest or {}).get("clips", {}).get(clip_id)
    recorded = attrs.get("checksums")
    expected = set(REQUIRED) | set(recorded if isinstance(recorded, dict) else ()) | set(entry["arrays"] if entry else ())
    lead = _check_layout(arrays, expected, check)
    if lead is None:
        return check
    check.frames, check.height, check.width = lead
    check.bytes = sum(a.nbytes_stored() for a in arrays.values())
    _check_against_spec(attrs, lead, check)
    computed = _check_content(arrays, lead[0], check)
    if complete:  # checksums are written together with `complete`, so an unfinished clip has none
        _check_checksums(recorded, computed, check)
        if manifest is not None:
            _check_manifest_entry(entry, lead, recorded if isinstance(recorded, dict) else {}, check)
    return check


def check_clips(root: zarr.Group, ids: list[str], manifest: Mapping[str, Any] | None = None, workers: int = 0,
                progress: bool = True) -> list[ClipCheck]:
    """`check_clip` of each of `ids`, `workers` threads at a time (0: one per CPU), in the order given."""
    pool = ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1)
    try:
        jobs = pool.map(lambda cid: check_clip(root, cid, manifest), ids)
        return list(tqdm(jobs, total=len(ids), unit="clip", desc="checking clips", file=sys.stderr,
                         dynamic_ncols=True, disable=not progress, delay=2))   # shown when it takes a while
    finally:   # on a stop, the clips not yet started are dropped; those under way end at their next frame
        pool.shutdown(cancel_futures=True)


def intact(root: zarr.Group, store: str, progress: bool = True) -> list[str]:
    """The store's complete clips, each read in full and checked against the contract and the
    checksums recorded when it was written (what validate runs); a StoreError naming the damaged
    ones and the fix, so that nothing damaged goes into a release, a training run or a benchmark
    (a chunk that still decodes would otherwise pass unseen)."""
    checks = check_clips(root, all_ids(root), read_manifest(root), progress=progress)
    damaged = [k for k in checks if not k.ok and (k.complete or not k.readable)]
    if damaged:
        named = "; ".join(f"{k.clip_id} ({k.problems[0]})" for k in damaged[:3])
        more = f"; and {len(damaged) - 3} more" if len(damaged) > 3 else ""
        raise StoreError(f"store {store}: {len(damaged)} damaged clip(s): {named}{more}; "
                         f"`python -m pipelines.validate {store} --prune-invalid` removes them, then render (or "
                         f"label) them again: the same command makes only what is missing")
    return [k.clip_id for k in checks if k.complete]


def manifest_only(root: zarr.Group, manifest: Mapping[str, Any] | None) -> list[ClipCheck]:
    """Clips the manifest lists that the store no longer holds: data lost since finalize."""
    present = set(all_ids(root))
    return [ClipCheck(cid, False, e["frames"], e["height"], e["width"], problems=["in the manifest but not in the store"])
            for cid, e in sorted((manifest or {}).get("clips", {}).items()) if cid not in present]


def prune(root: zarr.Group, ids: list[str]) -> list[str]:
    """Delete these clip groups; returns their ids. A manifest and consolidated metadata, when the
    store has them, are rewritten without them. Run it only when no writer is at work."""
    clips = root[CLIPS] if CLIPS in root else None
    removed = [cid for cid in ids if cid in set(all_ids(root))]
    for cid in removed:
        del clips[cid]
    if removed and (consolidated_ids(root) is not None or read_manifest(root) is not None):
        finalize_root(root)   # the snapshots listed the removed groups
    return removed


def prune_incomplete(root: zarr.Group) -> list[str]:
    """Delete the clip groups without `complete: true` (an unfinished clip may be one being
    written: run it only when no writer is at work); complete clips are not touched."""
    def complete(cid: str) -> bool:
        try:
            return root[CLIPS][cid].attrs.get("complete") is True
        except Exception:  # noqa: BLE001 - unreadable group metadata: it cannot say it is complete
            return False
    return prune(root, [cid for cid in all_ids(root) if not complete(cid)])


@dataclass
class Report:
    """What validate found in a store, and what it changed when asked to."""
    store: str
    clips: list[ClipCheck]
    removed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def status(self, c: ClipCheck) -> str:
        if c.clip_id in self.removed:
            return "removed"
        return ("ok" if not c.notes else "ok*") if c.ok else "INVALID"

    @property
    def invalid(self) -> list[str]:
        return [c.clip_id for c in self.clips if not c.ok and c.clip_id not in self.removed]

    def to_dict(self) -> dict[str, Any]:
        return {"store": self.store, "ok": not self.invalid, "invalid": self.invalid, "removed": self.removed,
                "notes": self.notes, "clips": [{**asdict(c), "status": self.status(c)} for c in self.clips]}


def validate(path: str, workers: int = 0, prune_incomplete_clips: bool = False, finalize_store: bool = False,
             progress: bool = True, prune_invalid: bool = False) -> Report:
    """Check every clip of the store at `path` (`workers` threads, 0: one per CPU). Then, if asked:
    delete the clips lacking `complete: true` (or every clip found invalid, complete or not: damaged
    data to render again), and write the manifest and consolidated metadata (only when every
    remaining clip is valid). Raises StoreError when `path` is not a store."""
    changes = prune_incomplete_clips or prune_invalid or finalize_store
    root = open_store(path, mode="r+" if changes else "r")
    recorded = read_manifest(root)
    checks = check_clips(root, all_ids(root), recorded, workers, progress)
    report = Report(str(path), sorted(checks + manifest_only(root, recorded), key=lambda c: c.clip_id))
    listed = consolidated_ids(root)
    complete = [c.clip_id for c in checks if c.complete]
    if recorded is None:
        report.notes.append("no manifest: the store was never finalized")
    if listed is not None and listed != complete:
        report.notes.append(f"consolidated metadata lists {len(listed)} complete clips, the store holds "
                            f"{len(complete)}: plain-zarr readers see a stale snapshot (run with --finalize)")
    log = log_beside(path)
    missing = sorted({f["job"] for f in failures(log)} - set(complete))
    if missing:   # a render or labelling attempt failed for them and no later one made them
        last = {f["job"]: f for f in failures(log)}
        report.notes.append(f"{log}: {len(missing)} clip(s) or video(s) failed and are not complete here: "
                            + "; ".join(f"{m} ({last[m]['error'][:80]})" for m in missing[:5]))
    if prune_invalid:
        lost = [c.clip_id for c in report.clips if c not in checks]   # listed only by the manifest
        report.removed = prune(root, [c.clip_id for c in checks if not c.ok])
        if lost:   # the manifest, written anew, no longer lists them
            finalize_root(root)
            report.removed += lost
    elif prune_incomplete_clips:
        report.removed = prune_incomplete(root)
    if finalize_store and not report.invalid:
        finalize(path)
        report.notes.append(f"finalized: manifest and consolidated metadata of {len(complete)} clips written")
    elif finalize_store:
        report.notes.append(f"not finalized: {len(report.invalid)} clips are invalid")
    return report
