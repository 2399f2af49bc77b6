"""Lossless JPEG XL inside zarr v3 arrays: one image per chunk, through imagecodecs' libjxl.

A store's frames are images (8-bit colour, 16-bit alpha, label and instance maps), stored one frame
per chunk; an image codec that models neighbouring pixels stores them in about half the bytes a
general-purpose compressor does (BENCHMARKS.md, `make bench-store`). zarr v3 has no image codec of its
own and imagecodecs registers its codecs for numcodecs (zarr v2) only, so this module is the array-to-
bytes codec zarr needs, named `imagecodecs_jpegxl` in each array's zarr.json.

This package's entry point (`zarr.codecs` in pyproject.toml) registers it in every process where
gvm-synth is installed, so plain `zarr.open` reads such arrays. A reader without gvm-synth needs
`pip install zarr imagecodecs` and this one file, which imports nothing else of the project (a release
ships it as `zarr_jpegxl.py`; importing it registers the codec).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import imagecodecs
import numpy as np
import zarr.registry
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

NAME = "imagecodecs_jpegxl"
DTYPES = (np.dtype("uint8"), np.dtype("uint16"))


@dataclass(frozen=True)
class JpegXL(ArrayBytesCodec):
    """Lossless JPEG XL of a chunk holding one image: (1, H, W) or (1, H, W, C), uint8 or uint16, any C
    (grey, colour, colour + extra channels). `effort` 1-9 trades encoding time for size; decoding any
    effort gives back the same array, byte for byte."""
    effort: int = 3

    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JpegXL":
        _, conf = parse_named_configuration(data, NAME, require_configuration=False)
        return cls(effort=int((conf or {}).get("effort", 3)))

    def to_dict(self) -> dict[str, Any]:
        return {"name": NAME, "configuration": {"lossless": True, "effort": self.effort}}

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        native = np.dtype(dtype.to_native_dtype() if hasattr(dtype, "to_native_dtype") else dtype)
        if native not in DTYPES:
            raise ValueError(f"{NAME}: arrays of uint8 or uint16 only, not {native}")
        if len(shape) not in (3, 4):
            raise ValueError(f"{NAME}: (T, H, W) or (T, H, W, C) arrays only, not {len(shape)} dimensions")

    async def _encode_single(self, chunk_array, chunk_spec):
        a = chunk_array.as_numpy_array()
        if a.shape[0] != 1:
            raise ValueError(f"{NAME}: one image per chunk, got a chunk of {a.shape[0]}")
        frame = np.ascontiguousarray(a[0])
        data = await asyncio.to_thread(imagecodecs.jpegxl_encode, frame, lossless=True, effort=self.effort, numthreads=1)
        return chunk_spec.prototype.buffer.from_bytes(bytes(data))

    async def _decode_single(self, chunk_bytes, chunk_spec):
        out = await asyncio.to_thread(imagecodecs.jpegxl_decode, chunk_bytes.to_bytes(), numthreads=1)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(np.asarray(out).reshape(chunk_spec.shape))

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: Any) -> int:
        raise NotImplementedError   # variable


def register() -> None:
    zarr.registry.register_codec(NAME, JpegXL)


register()
