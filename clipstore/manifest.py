"""After a run: the manifest (a root attribute describing every complete clip) and zarr's
consolidated metadata, both snapshots for plain-zarr readers of a finished store."""
from __future__ import annotations

import os
import warnings
from typing import Any

import zarr

from collections import Counter

from clipstore.clips import complete_ids, open_store, read_clip
from clipstore.outputs import OUTPUTS, declared
from clipstore.schema import MANIFEST


def clip_entry(g: zarr.Group) -> dict[str, Any]:
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
    return finalize_root(open_store(path, mode="r+"))


def finalize_root(root: zarr.Group) -> dict[str, Any]:
    clips = {cid: clip_entry(read_clip(root, cid).group) for cid in complete_ids(root)}
    root.attrs[MANIFEST] = {"n_clips": len(clips), "frames": sum(c["frames"] for c in clips.values()),
                            "bytes": sum(c["bytes"] for c in clips.values()), "clips": clips}
    with warnings.catch_warnings():  # zarr flags consolidated metadata as not yet part of the v3 spec
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        zarr.consolidate_metadata(root.store)
    return root.attrs[MANIFEST]


def read_manifest(root: zarr.Group) -> dict[str, Any] | None:
    """The manifest finalize wrote, or None when the store was never finalized."""
    return root.attrs.get(MANIFEST)


def consolidated_ids(root: zarr.Group) -> list[str] | None:
    """Complete clips as a plain-zarr reader's consolidated view lists them; None without one."""
    try:
        view = zarr.open_group(root.store, mode="r", use_consolidated=True)
    except ValueError:  # no consolidated metadata in the store
        return None
    return complete_ids(view)


def outputs_held(root: zarr.Group, ids: list[str]) -> dict[str, tuple[int, str]]:
    """Each output these clips hold, in the outputs table's order: how many clips hold it, and what
    it is (its declaration's `about`, as the array recorded it)."""
    held: Counter = Counter()
    about: dict[str, str] = {}
    for cid in ids:
        for name, a in read_clip(root, cid).group.arrays():
            held[name] += 1
            o = declared(name, dict(a.attrs))
            about.setdefault(name, o.about if o is not None else "(no declaration)")
    order = [n for n in OUTPUTS if n in held] + sorted(set(held) - set(OUTPUTS))
    return {n: (held[n], about[n]) for n in order}
