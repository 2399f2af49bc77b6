"""The camera: lens and framing numbers sampled from conf/camera/*.yaml. Where it stands is
resolved at render time from the posed body (render.scene.add_camera)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from core.ranges import number

KEYS = ("focal_mm", "sensor_mm", "frame_height_m", "top_margin", "azimuth_deg", "elevation_deg", "roll_deg")


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {k: number(cfg[k], rng, f"camera.{k}") for k in KEYS}
    out["center_offset_m"] = [number(cfg["center_offset_m"], rng, "camera.center_offset_m") for _ in range(3)]
    return out
