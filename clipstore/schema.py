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

from clipstore import codecs
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
IMAGE_CODECS = ("auto", "jpegxl", "none")   # store.image_codec
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
    """How arrays are stored (conf/storage/): 8- and 16-bit images (every output but the float ones:
    depth, flow) one frame per chunk with a lossless image codec (clipstore.codecs; `image_codec`
    auto: 8-bit colour as WebP, fast to read, the others as JPEG XL; jpegxl: JPEG XL for all), the
    rest, and every array with `image_codec: none`, with Blosc-zstd (noise-like colour) or Zstd (smooth
    masks and values). Readers need no setting: each array's zarr.json names its codecs, so stores
    written either way read the same."""
    colour_clevel: int
    mask_clevel: int
    image_codec: str
    jpegxl_effort: int
    webp_level: int
    webp_method: int

    @classmethod
    def from_config(cls, store_cfg: Mapping[str, Any]) -> "Compression":
        """From the `store:` config section."""
        if store_cfg["image_codec"] not in IMAGE_CODECS:
            raise StoreError(f"store.image_codec must be one of {', '.join(IMAGE_CODECS)}, got {store_cfg['image_codec']!r}")
        return cls(colour_clevel=int(store_cfg["colour_clevel"]), mask_clevel=int(store_cfg["mask_clevel"]),
                   image_codec=store_cfg["image_codec"], jpegxl_effort=int(store_cfg["jpegxl_effort"]),
                   webp_level=int(store_cfg["webp_level"]), webp_method=int(store_cfg["webp_method"]))

    @classmethod
    def default(cls) -> "Compression":
        """The settings conf/storage/local.yaml holds."""
        return cls.from_config(load_conf("storage/local"))

    def codecs(self, kind: str, dtype: np.dtype, channels: int) -> dict[str, Any]:
        """zarr's create_array keywords for an array of an output's declared codec kind
        (clipstore.outputs.CODECS), dtype and channels: its serializer and compressors."""
        dtype = np.dtype(dtype)
        if self.image_codec == "auto" and codecs.WebP.takes(dtype, channels):
            return {"serializer": codecs.WebP(level=self.webp_level, method=self.webp_method), "compressors": None}
        if self.image_codec != "none" and codecs.JpegXL.takes(dtype, channels):
            return {"serializer": codecs.JpegXL(effort=self.jpegxl_effort), "compressors": None}
        if kind == "colour":
            return {"compressors": zarr.codecs.BloscCodec(cname="zstd", clevel=self.colour_clevel, shuffle="bitshuffle")}
        return {"compressors": zarr.codecs.ZstdCodec(level=self.mask_clevel)}
