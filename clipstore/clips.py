"""Clips in a store: create and open stores, write a clip (marked complete last), read clips.

Each clip is a group under `clips/`, written by exactly one process, one frame per chunk and one
shard per array, and it exists for readers only once `complete: true` has been written to its
attributes, which happens last.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import zarr
from zarr.core.sync import sync

from clipstore.location import locate, reaching
from clipstore.outputs import OUTPUTS, Output, declared
from clipstore.schema import CLIPS, DIMS, FORMAT, FORMAT_VERSION, REQUIRED, SOURCES, Compression, StoreError
from core.colour import alpha_float


def _check_not_file(path: str | os.PathLike) -> None:
    fs, p, _, _ = locate(path)
    with reaching(path):   # the first request to a store behind a URL
        if fs.exists(p) and not fs.isdir(p):
            raise StoreError(f"store path {path} is a file, not a zarr store folder")


def _check_format(root: zarr.Group, path: Path) -> None:
    fmt, version = root.attrs.get("format"), root.attrs.get("format_version")
    if fmt != FORMAT:
        raise StoreError(f"store {path} is not a {FORMAT} store (format={fmt!r})")
    if version != FORMAT_VERSION:
        raise StoreError(f"store {path} has format_version {version!r}; this code reads {FORMAT_VERSION}")


def _open(path: str | os.PathLike, mode: str, **options: Any) -> zarr.Group:
    """zarr's group at `path`; its damaged metadata a StoreError naming the store."""
    fs, p, target, kw = locate(path)
    try:
        return zarr.open_group(target, mode=mode, **options, **kw)
    except (ValueError, KeyError, TypeError) as e:   # json.JSONDecodeError is a ValueError
        if mode == "w-":
            raise
        raise StoreError(f"store {path}: its zarr.json cannot be read ({type(e).__name__}: "
                         f"{' '.join(str(e).split())[:100]})") from None


def creatable(path: str | os.PathLike) -> bool:
    """Whether a store already exists at `path`; a StoreError when `create` would refuse the path (a
    file, a folder holding something else, a store of another format): checked before any work."""
    fs, p, target, kw = locate(path)
    _check_not_file(path)
    if fs.exists(f"{p}/zarr.json"):
        _check_format(_open(path, "r", use_consolidated=False), path)
        return True
    if fs.isdir(p) and fs.ls(p, detail=False):
        raise StoreError(f"store path {path} is a non-empty folder that is not a zarr store")
    return False


def create(path: str | os.PathLike, attrs: Mapping[str, Any]) -> zarr.Group:
    """Open the store at `path` for writing, creating it with `attrs` if it does not exist.

    An existing store keeps its attributes; callers compare them to decide whether they may add
    clips to it.
    """
    if creatable(path):
        root = _open(path, "r+", use_consolidated=False)
    else:
        root = _open(path, "w-")
        root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, **attrs})
    if CLIPS not in root:
        root.create_group(CLIPS)
    return root


def open_store(path: str | os.PathLike, mode: str = "r") -> zarr.Group:
    fs, p, target, kw = locate(path)
    _check_not_file(path)
    if not fs.exists(f"{p}/zarr.json"):
        if fs.isdir(p):
            what = "an empty folder" if not fs.ls(p, detail=False) else "a folder without zarr.json"
            raise StoreError(f"store {path} is {what}, not a {FORMAT} store (render or pseudolabel into it first)")
        raise StoreError(f"store {path} does not exist")
    # Never the consolidated view: it is a snapshot that cannot see clips written after it.
    root = _open(path, mode, use_consolidated=False)
    _check_format(root, path)
    return root


def _clips(root: zarr.Group) -> zarr.Group:
    return root[CLIPS] if CLIPS in root else zarr.group()


def _complete(root: zarr.Group) -> dict[str, bool]:
    """Each clip group's `complete` mark; a clip whose metadata cannot be read is a StoreError
    naming it (zarr's own listing fails as a whole on one damaged clip zarr.json)."""
    try:
        return {name: g.attrs.get("complete") is True for name, g in _clips(root).groups()}
    except Exception as e:   # noqa: BLE001 - find the clip to name
        for cid in all_ids(root):
            try:
                root[CLIPS][cid].attrs.get("complete")
            except Exception:   # noqa: BLE001
                raise StoreError(f"store {root.store}: clip {cid}: its metadata cannot be read ({type(e).__name__}); "
                                 f"`python -m pipelines.validate <store> --prune-invalid` removes it") from None
        raise


def complete_ids(root: zarr.Group) -> list[str]:
    """Ids of the clips that exist for readers, sorted."""
    return sorted(name for name, done in _complete(root).items() if done)


def incomplete_ids(root: zarr.Group) -> list[str]:
    """Groups left by writers that did not finish; readers must ignore them."""
    return sorted(name for name, done in _complete(root).items() if not done)


def checksum(a: np.ndarray) -> str:
    return "sha256:" + hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _validate_arrays(clip_id: str, arrays: Mapping[str, np.ndarray], decl: Mapping[str, Output]) -> None:
    for name in REQUIRED:
        if name not in arrays:
            raise StoreError(f"clip {clip_id}: array {name!r} is missing")
    for name, a in arrays.items():
        o = decl.get(name)
        if o is not None and (a.dtype != np.dtype(o.dtype) or a.ndim != o.ndim
                              or (o.channels and a.shape[-1] != len(o.channels))):
            raise StoreError(f"clip {clip_id}: {name} must be {o.dtype} of shape (T, H, W{', ' + str(len(o.channels)) if o.channels else ''}), "
                             f"got {a.dtype} {a.shape}")
    lead = arrays["alpha"].shape
    for name, a in arrays.items():
        if a.shape[:3] != lead or a.ndim not in DIMS:
            raise StoreError(f"clip {clip_id}: {name} has shape {a.shape}, expected leading (T,H,W)={lead}")


def write_clip(root: zarr.Group, clip_id: str, arrays: Mapping[str, np.ndarray],
               attrs: Mapping[str, Any], compression: Compression | None = None,
               overwrite: bool = False, outputs: Mapping[str, Output] | None = None,
               array_attrs: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, str]:
    """Write one clip and mark it complete last; returns the per-array checksums.

    Each array is written with its declaration (`outputs`, by default the outputs table) and its
    own `array_attrs` (a legend, frames without data) in its zarr attributes. A leftover
    incomplete group of the same id is replaced. A complete clip is never replaced unless
    `overwrite` is set.
    """
    decl = {**OUTPUTS, **(outputs or {})}
    _validate_arrays(clip_id, arrays, decl)
    if attrs.get("source") not in SOURCES:
        raise StoreError(f"clip {clip_id}: source {attrs.get('source')!r} is not one of {', '.join(SOURCES)}")
    compression = compression or Compression.default()
    clips = root[CLIPS]
    if clip_id in clips and clips[clip_id].attrs.get("complete") is True and not overwrite:
        raise StoreError(f"clip {clip_id} is already complete in the store; refusing to overwrite it")
    g = clips.create_group(clip_id, overwrite=True)
    g.attrs.update({**attrs, "clip_id": clip_id, "complete": False})
    sums = {}
    for name, a in arrays.items():
        o = decl.get(name)
        own = {k: v for k, v in o.attrs.items() if k != "name"} if o is not None else {}
        arr = g.create_array(name, shape=a.shape, dtype=a.dtype, chunks=(1, *a.shape[1:]),
                             shards=a.shape, **compression.codecs(o.codec if o else _codec(a.dtype), a.dtype, a.shape[3] if a.ndim == 4 else 1),
                             dimension_names=DIMS[a.ndim], fill_value=0,
                             attributes={**own, **((array_attrs or {}).get(name) or {})},
                             # every chunk stored, zeros too: a shard file that is missing is then damage,
                             # never an array that happens to be empty (an all-zero alpha)
                             config={"write_empty_chunks": True})
        arr[...] = a
        sums[name] = checksum(a)
    g.attrs.update({"checksums": sums, "complete": True})
    return sums


def _codec(dtype: np.dtype) -> str:
    """The codec of an array no declaration names: colour for bytes, masks for the rest."""
    return "colour" if np.dtype(dtype) == np.uint8 else "mask"


class Frames:
    """One array of a clip, read like the zarr array it wraps (index it for frames; shape, dtype and
    attrs pass through), whose damage is a StoreError naming the clip and the array: a shard file
    that is missing (zarr would read zeros), cut short or corrupt."""

    def __init__(self, clip_id: str, name: str, array: zarr.Array):
        self._clip_id, self._name, self._array, self._whole = clip_id, name, array, False

    def _damaged(self, why: str) -> StoreError:
        return StoreError(f"clip {self._clip_id}: {self._name} {why}; `python -m pipelines.validate <store>` names "
                          f"every damaged clip and --prune-invalid removes them")

    def __getitem__(self, key: Any) -> np.ndarray:
        if not self._whole:
            missing = self._array.nchunks - self._array.nchunks_initialized
            if missing:
                raise self._damaged(f"has {missing} of {self._array.nchunks} frame chunks missing")
            self._whole = True
        try:
            return self._array[key]
        except Exception as e:   # noqa: BLE001 - zarr and its codecs raise many kinds for a damaged shard
            raise self._damaged(f"cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None

    def __array__(self, dtype: Any = None) -> np.ndarray:
        return np.asarray(self[...], dtype=dtype)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._array, attr)


@dataclass(frozen=True)
class Clip:
    """A complete clip, read lazily: index an array (`clip["alpha"]`, a `Frames`) to read frames."""
    clip_id: str
    attrs: dict[str, Any]
    group: zarr.Group
    _opened: dict[str, Frames] = field(default_factory=dict, repr=False, compare=False)

    def __getitem__(self, name: str) -> Frames:
        if name not in self._opened:   # opened once: a loader reads the same arrays window after window
            self._opened[name] = Frames(self.clip_id, name, self.group[name])
        return self._opened[name]

    @property
    def arrays(self) -> list[str]:
        return sorted(name for name, _ in self.group.arrays())

    @property
    def n_frames(self) -> int:
        return self.group["alpha"].shape[0]

    def alpha_float(self, frames: slice | Iterable[int] = slice(None)) -> np.ndarray:
        return alpha_float(self.group["alpha"][frames])


def copy_clip(source: zarr.Group, out: zarr.Group, clip_id: str, attrs: Mapping[str, Any],
              compression: Compression | None = None,
              arrays: Mapping[str, np.ndarray] | None = None) -> dict[str, str]:
    """Write a complete clip of one store into another with `attrs`, every array's declaration and
    legend as recorded, compressed as `compression` says (a release shard, a codec benchmark);
    `arrays`: its arrays already read (a benchmark timing the write alone)."""
    clip = read_clip(source, clip_id)
    recorded = {n: dict(clip[n].attrs) for n in clip.arrays}
    arrays = {n: clip[n][:] for n in clip.arrays} if arrays is None else arrays
    return write_clip(out, clip_id, arrays, attrs, compression,
                      outputs={n: o for n in clip.arrays if (o := declared(n, recorded[n]))}, array_attrs=recorded)


def read_clip(root: zarr.Group, clip_id: str) -> Clip:
    clips = _clips(root)
    if clip_id not in clips or clips[clip_id].attrs.get("complete") is not True:
        raise StoreError(f"clip {clip_id} is not a complete clip of this store")
    g = clips[clip_id]
    return Clip(clip_id, dict(g.attrs), g)


def list_dir(root: zarr.Group, prefix: str) -> list[str]:
    """Names under a key prefix, read from the store itself: zarr's own listing parses every
    child's metadata and fails as a whole on one corrupt clip, which validate must survive."""
    async def names() -> list[str]:
        return [k async for k in root.store.list_dir(prefix)]
    return sorted(n for n in sync(names()) if n != "zarr.json")


def all_ids(root: zarr.Group) -> list[str]:
    """Every clip group in the store, complete or not, including ones whose metadata is broken."""
    return list_dir(root, CLIPS) if CLIPS in root else []
