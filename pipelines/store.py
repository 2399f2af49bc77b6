"""The clip store (format_version 1): the only module that knows the on-disk schema.

A zarr v3 group readable with plain zarr + numpy. Each clip is a group under `clips/`, written by
exactly one process, one frame per chunk and one shard per array, and it exists for readers only
once `complete: true` has been written to its attributes, which happens last.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import fsspec
import numpy as np
import zarr
import zarr.codecs
from zarr.core.sync import sync

FORMAT = "gvm-synth.clips"
FORMAT_VERSION = 1
CLIPS = "clips"

# Leading axes shared by every per-clip array; trailing ones named by array.
_DIMS = {3: ("t", "y", "x"), 4: ("t", "y", "x", "c")}
REQUIRED = {"fgr": (np.uint8, 4), "alpha": (np.uint16, 3)}
ALPHA_MAX = 65535


class StoreError(ValueError):
    """A store that cannot be used as asked; the message names the store and the problem."""


@dataclass(frozen=True)
class Compression:
    """Codec levels; colour is noise-like and barely compresses, alpha compresses 25-40x."""
    colour_clevel: int = 3
    mask_clevel: int = 3

    def codec(self, dtype: np.dtype) -> zarr.abc.codec.BytesBytesCodec:
        if np.dtype(dtype) == np.uint8:
            return zarr.codecs.BloscCodec(cname="zstd", clevel=self.colour_clevel, shuffle="bitshuffle")
        return zarr.codecs.ZstdCodec(level=self.mask_clevel)


# A local folder opens through zarr's LocalStore; a URL (s3://, gs://, file://, memory://, ...) through
# zarr's fsspec store, whose credentials and endpoints come from fsspec's own configuration
# (FSSPEC_<PROTOCOL>_<KEY> variables or ~/.config/fsspec). A file:// store, like a local one, makes
# its folders as it writes.
_URL_OPTIONS = {"file": {"auto_mkdir": True}, "local": {"auto_mkdir": True}}


def _location(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str, str | Path, dict[str, Any]]:
    """(filesystem, path on it, what zarr opens, zarr's extra keywords) for a store path or URL."""
    s = os.fspath(path)
    if "://" not in s:
        return fsspec.filesystem("file"), str(Path(s).absolute()), Path(s), {}  # absolute: fsspec would expand ~, zarr does not
    options = _URL_OPTIONS.get(s.split("://", 1)[0], {})
    try:
        fs, on_fs = fsspec.core.url_to_fs(s, **options)
    except (ImportError, ValueError) as e:  # e.g. s3:// without s3fs installed, an unknown protocol
        raise StoreError(f"store {s}: {e}") from None
    return fs, on_fs, s, {"storage_options": options}


def _check_not_file(path: str | os.PathLike) -> None:
    fs, p, _, _ = _location(path)
    if fs.exists(p) and not fs.isdir(p):
        raise StoreError(f"store path {path} is a file, not a zarr store folder")


def _check_format(root: zarr.Group, path: Path) -> None:
    fmt, version = root.attrs.get("format"), root.attrs.get("format_version")
    if fmt != FORMAT:
        raise StoreError(f"store {path} is not a {FORMAT} store (format={fmt!r})")
    if version != FORMAT_VERSION:
        raise StoreError(f"store {path} has format_version {version!r}; this code reads {FORMAT_VERSION}")


def create(path: str | os.PathLike, attrs: Mapping[str, Any]) -> zarr.Group:
    """Open the store at `path` for writing, creating it with `attrs` if it does not exist.

    An existing store keeps its attributes; callers compare them to decide whether they may add
    clips to it.
    """
    fs, p, target, kw = _location(path)
    _check_not_file(path)
    if fs.exists(f"{p}/zarr.json"):
        root = zarr.open_group(target, mode="r+", use_consolidated=False, **kw)
        _check_format(root, path)
    else:
        if fs.isdir(p) and fs.ls(p, detail=False):
            raise StoreError(f"store path {path} is a non-empty folder that is not a zarr store")
        root = zarr.open_group(target, mode="w-", **kw)
        root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, **attrs})
    if CLIPS not in root:
        root.create_group(CLIPS)
    return root


def open_store(path: str | os.PathLike, mode: str = "r") -> zarr.Group:
    fs, p, target, kw = _location(path)
    _check_not_file(path)
    if not fs.exists(f"{p}/zarr.json"):
        raise StoreError(f"store {path} does not exist")
    # Never the consolidated view: it is a snapshot that cannot see clips written after it.
    root = zarr.open_group(target, mode=mode, use_consolidated=False, **kw)
    _check_format(root, path)
    return root


def _clips(root: zarr.Group) -> zarr.Group:
    return root[CLIPS] if CLIPS in root else zarr.group()


def complete_ids(root: zarr.Group) -> list[str]:
    """Ids of the clips that exist for readers, sorted."""
    return sorted(name for name, g in _clips(root).groups() if g.attrs.get("complete") is True)


def incomplete_ids(root: zarr.Group) -> list[str]:
    """Groups left by writers that did not finish; readers must ignore them."""
    return sorted(name for name, g in _clips(root).groups() if g.attrs.get("complete") is not True)


def checksum(a: np.ndarray) -> str:
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _validate_arrays(clip_id: str, arrays: Mapping[str, np.ndarray]) -> None:
    for name, (dtype, ndim) in REQUIRED.items():
        if name not in arrays:
            raise StoreError(f"clip {clip_id}: array {name!r} is missing")
        a = arrays[name]
        if a.dtype != dtype or a.ndim != ndim:
            raise StoreError(f"clip {clip_id}: {name} must be {np.dtype(dtype)} with {ndim} axes, "
                             f"got {a.dtype} {a.shape}")
    lead = arrays["alpha"].shape
    for name, a in arrays.items():
        if a.shape[:3] != lead or a.ndim not in _DIMS:
            raise StoreError(f"clip {clip_id}: {name} has shape {a.shape}, expected leading (T,H,W)={lead}")


def write_clip(root: zarr.Group, clip_id: str, arrays: Mapping[str, np.ndarray],
               attrs: Mapping[str, Any], compression: Compression = Compression(),
               overwrite: bool = False) -> dict[str, str]:
    """Write one clip and mark it complete last; returns the per-array checksums.

    A leftover incomplete group of the same id is replaced. A complete clip is never replaced
    unless `overwrite` is set.
    """
    _validate_arrays(clip_id, arrays)
    clips = root[CLIPS]
    if clip_id in clips and clips[clip_id].attrs.get("complete") is True and not overwrite:
        raise StoreError(f"clip {clip_id} is already complete in the store; refusing to overwrite it")
    g = clips.create_group(clip_id, overwrite=True)
    g.attrs.update({**attrs, "clip_id": clip_id, "complete": False})
    sums = {}
    for name, a in arrays.items():
        arr = g.create_array(name, shape=a.shape, dtype=a.dtype, chunks=(1, *a.shape[1:]),
                             shards=a.shape, compressors=compression.codec(a.dtype),
                             dimension_names=_DIMS[a.ndim], fill_value=0)
        arr[...] = a
        sums[name] = checksum(a)
    g.attrs.update({"checksums": sums, "complete": True})
    return sums


@dataclass(frozen=True)
class Clip:
    """A complete clip, read lazily: arrays are zarr arrays, index them to read frames."""
    clip_id: str
    attrs: dict[str, Any]
    group: zarr.Group

    def __getitem__(self, name: str) -> zarr.Array:
        return self.group[name]

    @property
    def arrays(self) -> list[str]:
        return sorted(name for name, _ in self.group.arrays())

    @property
    def n_frames(self) -> int:
        return self.group["alpha"].shape[0]

    def alpha_float(self, frames: slice | Iterable[int] = slice(None)) -> np.ndarray:
        return self.group["alpha"][frames].astype(np.float32) / ALPHA_MAX


def read_clip(root: zarr.Group, clip_id: str) -> Clip:
    clips = _clips(root)
    if clip_id not in clips or clips[clip_id].attrs.get("complete") is not True:
        raise StoreError(f"clip {clip_id} is not a complete clip of this store")
    g = clips[clip_id]
    return Clip(clip_id, dict(g.attrs), g)


# --- After a run: the manifest and the consolidated metadata -------------------------------------

MANIFEST = "manifest"  # root attribute written by finalize


def _clip_entry(g: zarr.Group) -> dict[str, Any]:
    """A complete clip's manifest record. Checksums are the ones recorded at write time: finalize
    must stay cheap after every run, and validate is what recomputes them from the data."""
    arrays = dict(g.arrays())
    t, h, w = arrays["alpha"].shape[:3]
    sums = g.attrs.get("checksums", {})
    return {"source": g.attrs.get("source"), "fps": g.attrs.get("fps"), "frames": t, "height": h, "width": w,
            "bytes": sum(a.nbytes_stored() for a in arrays.values()),
            "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape), "checksum": sums.get(name)}
                       for name, a in sorted(arrays.items())}}


def finalize(path: str | os.PathLike) -> dict[str, Any]:
    """Write the manifest (root attribute `manifest`) and the consolidated metadata; returns the manifest.

    Call it only once every writer is done: both are snapshots of the store as it is now, and a
    consolidated view cannot see clips written after it (the readers here never use it; it is for
    plain-zarr readers of a finished store and for fast listing). The next finalize after new clips
    rewrites both. The content depends on the clips only, so finalizing an unchanged store again
    writes the same manifest.
    """
    return _finalize(open_store(path, mode="r+"))


def _finalize(root: zarr.Group) -> dict[str, Any]:
    clips = {cid: _clip_entry(read_clip(root, cid).group) for cid in complete_ids(root)}
    root.attrs[MANIFEST] = {"n_clips": len(clips), "frames": sum(c["frames"] for c in clips.values()),
                            "bytes": sum(c["bytes"] for c in clips.values()), "clips": clips}
    with warnings.catch_warnings():  # zarr flags consolidated metadata as not yet part of the v3 spec
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(root.store)
    return root.attrs[MANIFEST]


def manifest(root: zarr.Group) -> dict[str, Any] | None:
    """The manifest finalize wrote, or None when the store was never finalized."""
    return root.attrs.get(MANIFEST)


def consolidated_ids(root: zarr.Group) -> list[str] | None:
    """Complete clips as a plain-zarr reader's consolidated view lists them; None without one."""
    try:
        view = zarr.open_group(root.store, mode="r", use_consolidated=True)
    except ValueError:  # no consolidated metadata in the store
        return None
    return complete_ids(view)


# --- Validation: every clip against the contract -------------------------------------------------

@dataclass
class ClipCheck:
    """What validate found in one clip. Problems make it invalid; notes are said but do not."""
    clip_id: str
    complete: bool = False
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _list_dir(root: zarr.Group, prefix: str) -> list[str]:
    """Names under a key prefix, read from the store itself: zarr's own listing parses every
    child's metadata and fails as a whole on one corrupt clip, which validate must survive."""
    async def names() -> list[str]:
        return [k async for k in root.store.list_dir(prefix)]
    return sorted(n for n in sync(names()) if n != "zarr.json")


def all_ids(root: zarr.Group) -> list[str]:
    """Every clip group in the store, complete or not, including ones whose metadata is broken."""
    return _list_dir(root, CLIPS) if CLIPS in root else []


def _frame_list(frames: list[int]) -> str:
    """0, 1, 2, 5 -> '0-2, 5': short even when a fault touches every frame of a long clip."""
    runs: list[list[int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _is_alpha(name: str) -> bool:
    return name == "alpha" or name.startswith("alpha_")


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:200]


def _open_arrays(g: zarr.Group, root: zarr.Group, check: ClipCheck) -> dict[str, zarr.Array]:
    arrays = {}
    for name in _list_dir(root, f"{CLIPS}/{check.clip_id}"):
        try:
            node = g[name]
        except Exception as e:  # noqa: BLE001 - a broken array is a finding, not a crash
            check.problems.append(f"{name}: cannot open ({type(e).__name__}: {_one_line(e)})")
            continue
        if isinstance(node, zarr.Array):
            arrays[name] = node
    return arrays


def _check_layout(arrays: Mapping[str, zarr.Array], expected: set[str], check: ClipCheck) -> tuple[int, int, int] | None:
    """Presence, dtypes and shapes; returns the clip's (T, H, W), or None when no array gives it."""
    for name in sorted(expected - arrays.keys()):
        check.problems.append(f"{name}: array missing")
    for name, (dtype, ndim) in REQUIRED.items():
        a = arrays.get(name)
        if a is not None and a.dtype != dtype:
            check.problems.append(f"{name}: dtype {a.dtype}, expected {np.dtype(dtype)}")
        if a is not None and a.ndim != ndim:
            check.problems.append(f"{name}: shape {a.shape}, expected {ndim} axes")
    if "fgr" in arrays and arrays["fgr"].shape[-1] != 3:
        check.problems.append(f"fgr: {arrays['fgr'].shape[-1]} channels, expected 3")
    lead_from = "alpha" if "alpha" in arrays else next(iter(sorted(arrays)), None)
    if lead_from is None:
        return None
    lead = arrays[lead_from].shape[:3]
    for name, a in sorted(arrays.items()):
        if a.ndim not in _DIMS or a.shape[:3] != lead:
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


def _value_faults(name: str, x: np.ndarray) -> dict[str, tuple[float, float] | None]:
    """What is wrong with the values of one frame: NaN/inf in a float array, alpha out of range
    (0..1 for a float alpha a bad writer produced, 0..ALPHA_MAX otherwise), the latter with the
    frame's finite min and max."""
    faults: dict[str, tuple[float, float] | None] = {}
    if x.dtype.kind == "f" and not np.isfinite(x).all():
        faults["NaN or inf"] = None
    if _is_alpha(name):
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
        if a.ndim not in _DIMS or a.shape[0] != n_frames:
            continue  # already reported by the layout check
        if a.nchunks_initialized < a.nchunks:  # zarr would read the missing data as zeros
            check.problems.append(f"{name}: {a.nchunks - a.nchunks_initialized} of {a.nchunks} frame chunks "
                                  f"not stored (shard file missing)")
        else:
            readable[name], hashers[name] = a, hashlib.sha256()
    faults: dict[str, list[int]] = {}  # "<array>: <fault>" -> frames
    extremes: dict[str, tuple[float, float]] = {}  # the same key -> min, max over those frames
    for t in range(n_frames):
        frame = {}
        for name, a in list(readable.items()):
            try:
                frame[name] = a[t]
            except Exception as e:  # noqa: BLE001 - truncated or corrupt shards raise various errors
                check.problems.append(f"{name}: unreadable at frame {t} ({type(e).__name__}: {_one_line(e)})")
                del readable[name], hashers[name]
                continue
            hashers[name].update(np.ascontiguousarray(frame[name]))
            for fault, ext in _value_faults(name, frame[name]).items():
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
        return check
    check.complete = complete = attrs.get("complete") is True
    if not complete:
        check.problems.append("incomplete: no `complete: true` (its writer did not finish)")
    if attrs.get("clip_id") != clip_id:
        check.problems.append(f"attrs clip_id is {attrs.get('clip_id')!r}, not the group's name")
    if attrs.get("source") not in ("synthetic", "pseudo"):
        check.problems.append(f"attrs source is {attrs.get('source')!r}, expected 'synthetic' or 'pseudo'")
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


def manifest_only(root: zarr.Group, manifest: Mapping[str, Any] | None) -> list[ClipCheck]:
    """Clips the manifest lists that the store no longer holds: data lost since finalize."""
    present = set(all_ids(root))
    return [ClipCheck(cid, False, e["frames"], e["height"], e["width"], problems=["in the manifest but not in the store"])
            for cid, e in sorted((manifest or {}).get("clips", {}).items()) if cid not in present]


def prune_incomplete(root: zarr.Group) -> list[str]:
    """Delete the clip groups without `complete: true`; returns their ids. Complete clips are not
    touched; a manifest and consolidated metadata, when the store has them, are rewritten. Run it
    only when no writer is at work: an unfinished clip may be one being written."""
    clips = root[CLIPS] if CLIPS in root else None
    removed = []
    for cid in all_ids(root):
        try:
            complete = clips[cid].attrs.get("complete") is True
        except Exception:  # noqa: BLE001 - unreadable group metadata: it cannot say it is complete
            complete = False
        if not complete:
            del clips[cid]
            removed.append(cid)
    if removed and consolidated_ids(root) is not None:  # the snapshot listed the removed groups
        _finalize(root)
    return removed
