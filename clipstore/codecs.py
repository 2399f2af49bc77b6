"""Lossless image codecs inside zarr v3 arrays: one image per chunk, through imagecodecs (libjxl, libwebp).

A store's frames are images (8-bit colour, 16-bit alpha, label and instance maps), stored one frame
per chunk; an image codec that models neighbouring pixels stores them in about half the bytes a
general-purpose compressor does (BENCHMARKS.md, `make bench-store`). zarr v3 has no image codec of its
own and imagecodecs registers its codecs for numcodecs (zarr v2) only, so this module holds the array-to-
bytes codecs zarr needs, named `imagecodecs_jpegxl` and `imagecodecs_webp` in each array's zarr.json.

This package's entry points (`zarr.codecs` in pyproject.toml) register them in every process where
gvm-synth is installed, so plain `zarr.open` reads such arrays. A reader without gvm-synth needs
`pip install zarr imagecodecs` and this one file, which imports nothing else of the project (a release
ships it as `zarr_imagecodecs.py`; importing it registers the codecs).
"""
from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from typing import Any

import imagecodecs
import numpy as np
import zarr.registry
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

DTYPES = (np.dtype("uint8"), np.dtype("uint16"))


@dataclass(frozen=True)
class _Image(ArrayBytesCodec):
    """A chunk holding one image, (1, H, W) or (1, H, W, C), stored by an image codec of imagecodecs."""
    is_fixed_size = False
    name = ""

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "_Image":
        _, conf = parse_named_configuration(data, cls.name, require_configuration=False)
        return cls(**{k: v for k, v in (conf or {}).items() if k != "lossless"})

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "configuration": {"lossless": True, **dataclasses.asdict(self)}}

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: Any) -> None:
        native = np.dtype(dtype.to_native_dtype() if hasattr(dtype, "to_native_dtype") else dtype)
        if not self.takes(native, shape[3] if len(shape) == 4 else 1) or len(shape) not in (3, 4):
            raise ValueError(f"{self.name}: cannot hold {native} arrays of shape {shape}")

    async def _encode_single(self, chunk_array, chunk_spec):
        a = chunk_array.as_numpy_array()
        if a.shape[0] != 1:
            raise ValueError(f"{self.name}: one image per chunk, got a chunk of {a.shape[0]}")
        data = await asyncio.to_thread(self.encode_image, np.ascontiguousarray(a[0]))
        return chunk_spec.prototype.buffer.from_bytes(bytes(data))

    async def _decode_single(self, chunk_bytes, chunk_spec):
        out = await asyncio.to_thread(self.decode_image, chunk_bytes.to_bytes())
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(np.asarray(out).reshape(chunk_spec.shape))

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: Any) -> int:
        raise NotImplementedError   # variable


@dataclass(frozen=True)
class JpegXL(_Image):
    """Lossless JPEG XL: uint8 or uint16, any number of channels (grey, colour, colour + extra
    channels). `effort` 1-9 trades encoding time for size."""
    effort: int
    name = "imagecodecs_jpegxl"

    @staticmethod
    def takes(dtype: np.dtype, channels: int) -> bool:
        return dtype in DTYPES

    def encode_image(self, frame: np.ndarray) -> bytes:
        return imagecodecs.jpegxl_encode(frame, lossless=True, effort=self.effort, numthreads=1)

    def decode_image(self, data: bytes) -> np.ndarray:
        return imagecodecs.jpegxl_decode(data, numthreads=1)


@dataclass(frozen=True)
class WebP(_Image):
    """Lossless WebP: 8-bit colour (3 or 4 channels) only, as small as JPEG XL at effort 3 on rendered
    frames and several times faster to decode. `level` 0-100 and `method` 0-6 trade encoding time for size."""
    level: int
    method: int
    name = "imagecodecs_webp"

    @staticmethod
    def takes(dtype: np.dtype, channels: int) -> bool:
        return dtype == np.dtype("uint8") and channels in (3, 4)

    def encode_image(self, frame: np.ndarray) -> bytes:
        return imagecodecs.webp_encode(frame, level=self.level, lossless=True, method=self.method, numthreads=1)

    def decode_image(self, data: bytes) -> np.ndarray:
        return imagecodecs.webp_decode(data)


CODECS = (JpegXL, WebP)


def register() -> None:
    for codec in CODECS:
        zarr.registry.register_codec(codec.name, codec)


register()
