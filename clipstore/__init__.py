"""The clip store: the one fixed interface of gvm-synth (format_version 1).

Renderers, pseudo-labellers, trainers, validators and publishers all read and write clips
through this package, and nothing else knows the on-disk schema. It imports neither Ray nor
Hydra, so any tool can use it.

    import clipstore
    root = clipstore.open_store("data/synth.zarr")
    clip = clipstore.read_clip(root, clipstore.complete_ids(root)[0])
"""
from clipstore.checks import ClipCheck, Report, check_clip, check_clips, intact, manifest_only, prune_incomplete, validate
from clipstore.clips import (Clip, all_ids, checksum, complete_ids, copy_clip, create, creatable, incomplete_ids, open_store,
                             read_clip, write_clip)
from clipstore.location import absolute, is_url
from clipstore.outputs import CLASS_LABELS, CLASSES, OUTPUTS, PARTS, Output, class_labels, class_masks, declared
from clipstore.manifest import consolidated_ids, finalize, outputs_held, read_manifest
from clipstore.schema import (ALPHA_MAX, CLIPS, FORMAT, FORMAT_VERSION, MANIFEST, REQUIRED, SOURCES, Compression,
                              StoreError)

__all__ = [
    "CLASS_LABELS", "CLASSES", "OUTPUTS", "PARTS", "Output", "class_labels", "class_masks", "declared", "ALPHA_MAX", "CLIPS", "FORMAT", "FORMAT_VERSION", "MANIFEST", "REQUIRED", "SOURCES", "Clip", "ClipCheck",
    "Compression", "copy_clip", "Report", "StoreError", "absolute", "all_ids", "check_clip", "check_clips", "checksum", "intact", "complete_ids",
    "consolidated_ids", "create", "creatable", "finalize", "outputs_held", "incomplete_ids", "is_url", "manifest_only", "open_store",
    "prune_incomplete", "read_clip", "read_manifest", "validate", "write_clip",
]
