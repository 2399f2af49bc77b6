"""Lighting: a key, fill and rim area-light rig and a dim world, sampled from
conf/lighting/*.yaml. Placement relative to the body is resolved at render time."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from core.ranges import number


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The fill is the key mirrored across the body at `fill.ratio` of its power; the rim takes
    the key's distance and size unless it has its own."""
    rng = np.random.default_rng(seed)
    key = {k: number(v, rng, f"lighting.key.{k}") for k, v in cfg["key"].items()}
    rim = {k: number(v, rng, f"lighting.rim.{k}") for k, v in cfg["rim"].items()}
    rim.setdefault("distance_m", key["distance_m"])
    rim.setdefault("size_m", key["size_m"])
    fill = dict(key, power_w=key["power_w"] * number(cfg["fill"]["ratio"], rng, "lighting.fill.ratio"),
                azimuth_deg=-key["azimuth_deg"], elevation_deg=key["elevation_deg"] / 2)
    jitter = cfg["world_color_jitter"]
    return {"key": key, "fill": fill, "rim": rim,
            "world_strength": number(cfg["world_strength"], rng, "lighting.world_strength"),
            "world_color": np.clip(1.0 + rng.uniform(-jitter, jitter, 3), 0.0, None).tolist(),
            "color_temperature_k": number(cfg["color_temperature_k"], rng, "lighting.color_temperature_k")}
