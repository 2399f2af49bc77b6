"""Where a store lives: a local folder, or an fsspec URL (s3://, gs://, file://, memory://, ...).

A local folder opens through zarr's LocalStore; a URL through zarr's fsspec store, whose
credentials and endpoints come from fsspec's own configuration (FSSPEC_<PROTOCOL>_<KEY> variables
or ~/.config/fsspec). A file:// store, like a local one, makes its folders as it writes.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec

from clipstore.schema import StoreError

_URL_OPTIONS = {"file": {"auto_mkdir": True}, "local": {"auto_mkdir": True}}


def is_url(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def absolute(path: str | os.PathLike) -> str:
    """A store path that means the same from any working folder (or machine, for a URL)."""
    return os.fspath(path) if is_url(path) else str(Path(path).expanduser().resolve())


def name(path: str | os.PathLike) -> str:
    """The store's last path component (`synth.zarr`), for a folder or a URL alike."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def beside(path: str | os.PathLike, suffix: str) -> Path | None:
    """A local file or folder next to the store, `<store name less .zarr><suffix>` (a contact sheet,
    a report); None for a store that is not on this machine's disk (memory://, s3://, ...)."""
    p = os.fspath(path)
    if is_url(p):
        if not p.startswith(("file://", "local://")):
            return None
        p = p.split("://", 1)[1]
    local = Path(p).expanduser()
    return local.with_name(local.name.removesuffix(".zarr") + suffix)


def locate(path: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str, str | Path, dict[str, Any]]:
    """(filesystem, path on it, what zarr opens, zarr's extra keywords) for a store path or URL."""
    s = os.fspath(path)
    if not is_url(s):
        # absolute: fsspec would expand ~, zarr does not
        return fsspec.filesystem("file"), str(Path(s).absolute()), Path(s), {}
    options = _URL_OPTIONS.get(s.split("://", 1)[0], {})
    try:
        fs, on_fs = fsspec.core.url_to_fs(s, **options)
    except (ImportError, ValueError) as e:  # e.g. s3:// without s3fs installed, an unknown protocol
        raise StoreError(f"store {s}: {e}") from None
    return fs, on_fs, s, {"storage_options": options}


def exists(path: str | os.PathLike) -> bool:
    fs, on_fs, _, _ = locate(path)
    return fs.exists(on_fs)


def size_bytes(path: str | os.PathLike) -> int:
    """Bytes the store takes where it lives."""
    fs, on_fs, _, _ = locate(path)
    return int(fs.du(on_fs)) if fs.exists(on_fs) else 0
