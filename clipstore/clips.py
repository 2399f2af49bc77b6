"""Clips in a store: create and open stores, write a clip (marked complete last), read clips.

Each clip is a group under `clips/`, written by exactly one process, one frame per chunk and one
shard per array, and it exists for readers only once `complete: true` has been written to its
attributes, which happens last.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import zarr
from zarr.core.sync import sync

from clipstore.location import locate
from clipstore.schema import CLIPS, DIMS, FORMAT, FORMAT_VERSION, REQUIRED, SOURCES, TYPED, Compression, StoreError
from core.colour import alpha_float


def _check_not_file(path: str | os.PathLike) -> None:
    fs, p, _, _ = locate(path)
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
    fs, p, target, kw = locate(path)
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
    fs, p, target, kw = locate(path)
    _check_not_file(path)
    if not fs.exists(f"{p}/zarr.json"):
        if fs.isdir(p):
            what = "an empty folder" if not fs.ls(p, detail=False) else "a folder without zarr.json"
            raise StoreError(f"store {path} is {what}, not a {FORMAT} store (render or pseudolabel into it first)")
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
    for name, (dtype, ndim) in TYPED.items():
        a = arrays.get(name)
        if a is not None and (a.dtype != dtype or a.ndim != ndim):
            raise StoreError(f"clip {clip_id}: {name} must be {np.dtype(dtype)} with {ndim} axes, got {a.dtype} {a.shape}")
    lead = arrays["alpha"].shape
    for name, a in arrays.items():
        if a.shape[:3] != lead or a.ndim not in DIMS:
            raise StoreError(f"clip {clip_id}: {name} has shape {a.shape}, expected leading (T,H,W)={lead}")


def write_clip(root: zarr.Group, clip_id: str, arrays: Mapping[str, np.ndarray],
               attrs: Mapping[str, Any], compression: Compression | None = None,
               overwrite: bool = False) -> dict[str, str]:
    """Write one clip and mark it complete last; returns the per-array checksums.

    A leftover incomplete group of the same id is replaced. A complete clip is never replaced
    unless `overwrite` is set.
    """
    _validate_arrays(clip_id, arrays)
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
        arr = g.create_array(name, shape=a.shape, dtype=a.dtype, chunks=(1, *a.shape[1:]),
                             shards=a.shape, compressors=compression.codec(a.dtype),
                             dimension_names=DIMS[a.ndim], fill_value=0)
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
        return alpha_float(self.group["alpha"][frames])


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
