"""Hierarchical seeds: every clip and every component of a clip draws from its own stream.

A seed is derived from a path of keys, (dataset seed, clip index, component name, ...), through a
cryptographic hash, so changing how one component samples never shifts the numbers another one
sees, and `seed=0` is an ordinary seed rather than "random".
"""
from __future__ import annotations

import hashlib

import numpy as np


def derive(*keys: int | str) -> int:
    """A 63-bit seed from a path of keys; stable across processes, platforms and Python versions."""
    text = "/".join(f"{type(k).__name__}:{k}" for k in keys)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def rng(*keys: int | str) -> np.random.Generator:
    return np.random.default_rng(derive(*keys))


def unit(*keys: int | str) -> float:
    """A number in [0, 1) from a path of keys: a stable coin for choices such as a clip's split."""
    return derive(*keys) / 2**63
