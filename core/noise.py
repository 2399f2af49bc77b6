"""Smooth band-limited noise: the one source of sway, jitter and shake over time."""
from __future__ import annotations

import numpy as np


def smooth_noise(t: np.ndarray, freq: float, seed: int, stream: int, dims: int = 3) -> np.ndarray:
    """Band-limited noise in [-1, 1]-ish: three incommensurate sinusoids per dimension."""
    rng = np.random.default_rng([int(seed), stream])
    ratios = np.array([1.0, 1.618, 2.414])        # incommensurate so the sum never repeats soon
    weights = np.array([0.6, 0.3, 0.2])
    phases = rng.uniform(0.0, 2 * np.pi, size=(dims, 3))
    jitter = rng.uniform(0.85, 1.15, size=(dims, 3))
    f = freq * ratios[None, :] * jitter            # (dims, 3)
    s = np.sin(2 * np.pi * f[None] * t[:, None, None] + phases[None])
    return (s * weights).sum(-1) / weights.sum() * 1.6
