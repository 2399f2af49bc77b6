"""What produced a clip: package versions, the project's commit, and the digests of input files."""
from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("gvm-synth", "bpy", "numpy", "zarr", "smplx", "torch", "ray", "opencv-contrib-python")


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent  # the checkout: core/ sits at its top
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None


@functools.lru_cache(maxsize=1)
def software() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": versions,
            "git_commit": git_commit()}


def sha256(files: Path | list[Path], names: bool = False) -> str:
    """The hex sha256 of a file, or of several files' bytes in order (each preceded by its name
    when `names`: a folder of frames renamed is another input)."""
    h = hashlib.sha256()
    for f in [files] if isinstance(files, Path) else files:
        if names:
            h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
