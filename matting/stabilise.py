"""Temporal stabilisation of per-frame mattes: in the unknown band, each frame's alpha is blended
with the previous (stabilised) alpha carried along the optical flow, where the flow's warp of
the previous frame agrees with this one (occlusions and fast motion keep the frame's own alpha).

Per-frame matting solves every frame alone, so the band flickers from frame to frame; the flow
carries what the last frame decided to where it now is, and the photometric check keeps the
blend away from wherever the flow is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from core.checks import require_keys
from matting.flow import DIS_PRESETS, dis_flow, warp

KEYS = ("enabled", "weight", "sigma", "flow_preset")


@dataclass
class Carried:
    """What frame t sees of frame t-1 through the flow (t >= 1); the temporal score reuses it."""
    alpha: np.ndarray        # (H, W) the previous alpha warped onto frame t
    confidence: np.ndarray   # (H, W) in [0, 1]: photometric agreement of the warp
    flow: np.ndarray         # (H, W, 2) from frame t to where its pixels were in t-1


def check(cfg: Mapping[str, Any]) -> dict[str, Any]:
    c = require_keys(cfg, KEYS, "temporal")
    if c["flow_preset"] not in DIS_PRESETS:
        raise ValueError(f"temporal.flow_preset: {c['flow_preset']!r} is not one of {', '.join(DIS_PRESETS)}")
    if not 0 <= c["weight"] < 1 or not c["sigma"] > 0:
        raise ValueError(f"temporal.weight must be in [0, 1) and temporal.sigma positive, got {c['weight']!r}, {c['sigma']!r}")
    return c


def carry(frame_prev: np.ndarray, frame: np.ndarray, alpha_prev: np.ndarray, cfg: Mapping[str, Any]) -> Carried:
    flow = dis_flow(frame, frame_prev, cfg["flow_preset"])      # where each pixel of this frame was
    seen = warp(frame_prev, flow).astype(np.float32)
    err = np.abs(frame.astype(np.float32) - seen).mean(axis=-1) / 255.0
    return Carried(warp(alpha_prev, flow), np.exp(-(err / cfg["sigma"]) ** 2).astype(np.float32), flow)


def stabilise(frames: np.ndarray, alpha: np.ndarray, band: np.ndarray,
              cfg: Mapping[str, Any]) -> tuple[np.ndarray, list[Carried | None]]:
    """(stabilised alpha (T, H, W), what each frame saw of the last); frames uint8 (T, H, W, 3),
    alpha float32 (T, H, W), band bool (T, H, W). Outside the band alpha is left as it is; with
    `enabled` false only the carried views are computed (for the score)."""
    c = check(cfg)
    out = alpha.astype(np.float32).copy()
    carried: list[Carried | None] = [None]
    for t in range(1, len(out)):
        seen = carry(frames[t - 1], frames[t], out[t - 1], c)
        carried.append(seen)
        if c["enabled"]:
            w = c["weight"] * seen.confidence
            out[t] = np.where(band[t], (1 - w) * out[t] + w * seen.alpha, out[t])
    for t in range(1, len(out)):   # the views the score sees are of the alphas as they end up
        carried[t].alpha = warp(out[t - 1], carried[t].flow)
    return out, carried
