"""The clip store (format_version 1): the only module that knows the on-disk schema.

A zarr v3 group readable with plain zarr + numpy. Each clip is a group under `clips/`, written by
exactly one process, one frame per chunk and one shard per array, and it exists for readers only
once `complete: true` has been written to its attributes, which happens last.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import zarr
import zarr.codecs

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


def _check_not_file(path: Path) -> None:
    if path.exists() and not path.is_dir():
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
    path = Path(path)
    _check_not_file(path)
    if path.is_dir() and (path / "zarr.json").exists():
        root = zarr.open_group(path, mode="r+", use_consolidated=False)
        _check_format(root, path)
    else:
        if path.is_dir() and any(path.iterdir()):
            raise StoreError(f"store path {path} is a non-empty folder that is not a zarr store")
        root = zarr.open_group(path, mode="w-")
        root.attrs.update({"format": FORMAT, "format_version": FORMAT_VERSION, **attrs})
    if CLIPS not in root:
        root.create_group(CLIPS)
    return root


def open_store(path: str | os.PathLike, mode: str = "r") -> zarr.Group:
    path = Path(path)
    _check_not_file(path)
    if not (path / "zarr.json").exists():
        raise StoreError(f"store {path} does not exist")
    # Never the consolidated view: it is a snapshot that cannot see clips written after it.
    root = zarr.open_group(path, mode=mode, use_consolidated=False)
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
