"""The store contract (format_version 1) as constants: what a reader of the store may rely on.

A zarr v3 group; under `clips/` one group per clip with `fgr` uint8 (T, H, W, 3) straight sRGB,
`alpha` uint16 (T, H, W) linear coverage and optional arrays of the same leading (T, H, W)
(`alpha_hair` uint16, `bgr` uint8 (T, H, W, 3) background plate, or others);
attrs `clip_id`, `source`, `fps`, `spec`, `software`, `checksums` and `complete: true`, written
last. shared/DESIGN.md states the contract in prose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import zarr
import zarr.codecs

from core.colour import ALPHA_MAX  # noqa: F401 (re-exported: part of the contract, alpha 0..ALPHA_MAX)
from core.conf import load as load_conf

FORMAT = "gvm-synth.clips"
FORMAT_VERSION = 1
CLIPS = "clips"
# Where a clip's alpha comes from: rendered, pseudo-labelled real video, or a binary
# segmentation mask (trainers treat its edge as unknown).
SOURCES = ("synthetic", "pseudo", "segmentation")
# Arrays every clip has: dtype and number of axes.
REQUIRED = {"fgr": (np.uint8, 4), "alpha": (np.uint16, 3)}
# Optional arrays the contract names: the hair's share of alpha, and the background plate (the same
# camera and light with the person removed, straight sRGB like fgr).
OPTIONAL = {"alpha_hair": (np.uint16, 3), "bgr": (np.uint8, 4)}
TYPED = {**REQUIRED, **OPTIONAL}
COLOUR = ("fgr", "bgr")   # three channels
# Leading axes shared by every per-clip array; trailing ones named by array.
DIMS = {3: ("t", "y", "x"), 4: ("t", "y", "x", "c")}
MANIFEST = "manifest"  # root attribute written by finalize


class StoreError(ValueError):
    """A store that cannot be used as asked; the message names the store and the problem."""


def is_alpha(name: str) -> bool:
    """Arrays holding coverage (alpha, alpha_hair, ...): uint16 0..ALPHA_MAX."""
    return name == "alpha" or name.startswith("alpha_")


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

    def codec(self, dtype: np.dtype) -> zarr.abc.codec.BytesBytesCodec:
        if np.dtype(dtype) == np.uint8:
            return zarr.codecs.BloscCodec(cname="zstd", clevel=self.colour_clevel, shuffle="bitshuffle")
        return zarr.codecs.ZstdCodec(level=self.mask_clevel)
