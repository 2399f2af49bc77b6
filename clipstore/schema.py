"""The store contract (format_version 1) as constants: what a reader of the store may rely on.

A zarr v3 group; under `clips/` one group per clip with `fgr` uint8 (T, H, W, 3) straight sRGB,
`alpha` uint16 (T, H, W) linear coverage and optional arrays of the same leading (T, H, W), each
declared in the outputs table (clipstore.outputs) and carrying its declaration in its attrs;
clip attrs `clip_id`, `source`, `fps`, `spec`, `software`, `checksums` and `complete: true`,
written last. shared/DESIGN.md states the contract in prose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import zarr
import zarr.codecs

from clipstore.outputs import OUTPUTS
from core.colour import ALPHA_MAX  # noqa: F401 (re-exported: part of the contract, alpha 0..ALPHA_MAX)
from core.conf import load as load_conf
from core.errors import UserError

FORMAT = "gvm-synth.clips"
FORMAT_VERSION = 1
CLIPS = "clips"
# Where a clip's alpha comes from: rendered, pseudo-labelled real video, or a binary
# segmentation mask (trainers treat its edge as unknown).
SOURCES = ("synthetic", "pseudo", "segmentation")
# Dtype and number of axes of every array the outputs table declares (clipstore.outputs), and of
# those every clip has.
TYPED = {n: (np.dtype(o.dtype), o.ndim) for n, o in OUTPUTS.items()}
REQUIRED = {n: TYPED[n] for n, o in OUTPUTS.items() if o.required}
# Leading axes shared by every per-clip array; trailing ones named by array.
DIMS = {3: ("t", "y", "x"), 4: ("t", "y", "x", "c")}
MANIFEST = "manifest"  # root attribute written by finalize


class StoreError(UserError):
    """A store that cannot be used as asked; the message names the store and the problem. Bad input
    like any other (core.errors): an app that meets one ends with its one line."""


@dataclass(frozen=True)
class Compression:
    """Codec levels (conf/storage/: colour_clevel, mask_clevel); colour is noise-like and barely
    compresses, alpha compresses 25-40x."""
    colour_clevel: int
    mask_clevel: int

    @classmethod
    def from_config(cls, store_cfg: Mapping[str, Any]) -> "Compression":
        """From the `store:` config section."""
        return cls(colour_clevel=int(store_cfg["colour_clevel"]), mask_clevel=int(store_cfg["mask_clevel"]))

    @classmethod
    def default(cls) -> "Compression":
        """The levels conf/storage/local.yaml sets."""
        return cls.from_config(load_conf("storage/local"))

    def codec(self, kind: str) -> zarr.abc.codec.BytesBytesCodec:
        """The compressor for an output's declared codec (clipstore.outputs.CODECS)."""
        if kind == "colour":
            return zarr.codecs.BloscCodec(cname="zstd", clevel=self.colour_clevel, shuffle="bitshuffle")
        return zarr.codecs.ZstdCodec(level=self.mask_clevel)
