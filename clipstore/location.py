"""Where a store lives: a local folder, or an fsspec URL (s3://, gs://, file://, memory://, ...).

A local folder opens through zarr's LocalStore; a URL through zarr's fsspec store, whose
credentials and endpoint come from `store.options` (`configure`), fsspec's own configuration
(FSSPEC_<PROTOCOL>_<KEY> variables or ~/.config/fsspec) or the cloud SDK's usual variables
(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). A file:// store, like a local one, makes its folders as it
writes. What must be a local file (a contact sheet, a report, the failure log, progress marks) lies
beside a local store, and for a store behind a URL under `store.local_dir` (`beside`).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec

from clipstore.schema import StoreError
from core.conf import load as load_conf

# s3: listings are not cached, so a clip another process (a Ray worker) wrote is seen at once
_URL_OPTIONS = {"file": {"auto_mkdir": True}, "local": {"auto_mkdir": True}, "s3": {"use_listings_cache": False}}
# what a process started from this one needs to reach the same stores: fsspec's and the cloud SDKs' variables
_ENVIRONMENT = ("FSSPEC_", "AWS_", "GOOGLE_", "GCSFS_", "AZURE_")
# whose errors mean a store behind a URL cannot be reached: no answer, no credentials, access refused
_REMOTE = ("botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google")


def is_url(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def absolute(path: str | os.PathLike) -> str:
    """A store path that means the same from any working folder (or machine, for a URL)."""
    return os.fspath(path) if is_url(path) else str(Path(path).expanduser().resolve())


def name(path: str | os.PathLike) -> str:
    """The store's last path component (`synth.zarr`), for a folder or a URL alike."""
    return os.fspath(path).rstrip("/").rsplit("/", 1)[-1]


def beside(path: str | os.PathLike, suffix: str, local_dir: str | os.PathLike | None = None) -> Path:
    """A local file or folder named after the store, `<store name less .zarr><suffix>` (a contact
    sheet, a report, the failure log): next to a store on this machine's disk, and for one behind a URL
    under `local_dir` (null: conf/storage/local.yaml's) at `<protocol>/<bucket and path>`, so two
    buckets' stores of one name keep theirs apart."""
    p = os.fspath(path)
    if is_url(p):
        protocol, rest = p.split("://", 1)
        if protocol in ("file", "local"):
            p = rest
        else:
            root = Path(local_dir if local_dir is not None else load_conf("storage/local")["local_dir"])
            p = str(root.expanduser() / protocol / rest.strip("/"))
    local = Path(p).expanduser()
    return local.with_name(local.name.removesuffix(".zarr") + suffix)


@contextmanager
def reaching(path: str | os.PathLike) -> Iterator[None]:
    """Around a store's first request: a store behind a URL that cannot be reached (nothing answers at
    the endpoint, no credentials, access refused) is one StoreError line, not the client's traceback."""
    try:
        yield
    except StoreError:
        raise
    except Exception as e:
        remote = type(e).__module__.split(".")[0] in _REMOTE or isinstance(e, (ConnectionError, TimeoutError, PermissionError))
        if not (is_url(path) and remote):
            raise
        raise StoreError(f"store {os.fspath(path)} cannot be reached: {' '.join(str(e).split())[:300] or type(e).__name__}") from None


def configure(path: str | os.PathLike, options: Mapping[str, Any] | None) -> None:
    """The filesystem options (`store.options`: endpoint_url, key, secret, ...) of a store behind a URL,
    for this process (fsspec's configuration, read whenever a filesystem is made) and every process it
    starts (FSSPEC_<PROTOCOL>, which fsspec reads when it loads): Ray workers, the apps a loop runs."""
    p = os.fspath(path)
    if options is not None and not isinstance(options, Mapping):
        raise StoreError(f"store.options must be the filesystem's options as key: value pairs (e.g. "
                         f"{{endpoint_url: http://host:9000, key: ..., secret: ...}}), got {options!r}")
    if not is_url(p) or not options:
        return
    protocol = p.split("://", 1)[0]
    merged = {**fsspec.config.conf.get(protocol, {}), **options}
    fsspec.config.conf[protocol] = merged
    os.environ[f"FSSPEC_{protocol.upper()}"] = json.dumps(merged)


def environment() -> dict[str, str]:
    """The variables a worker on another machine needs to reach the stores this process reaches."""
    return {k: v for k, v in os.environ.items() if k.startswith(_ENVIRONMENT)}


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
    with reaching(path):
        return fs.exists(on_fs)


def size_bytes(path: str | os.PathLike) -> int:
    """Bytes the store takes where it lives."""
    fs, on_fs, _, _ = locate(path)
    with reaching(path):
        return int(fs.du(on_fs)) if fs.exists(on_fs) else 0
