"""Lighting: one kind per clip (a studio rig, Cycles' physical sky, or an HDR-like room with a sun
and a window), drawn from conf/lighting/*.yaml; a share of clips is lit from behind. Placement
relative to the body is resolved at render time (render.scene.add_lights)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from core import ranges
from core.ranges import number

KINDS = ("studio", "sky", "environment")
MAIN = {"studio": ("key", "azimuth_deg"), "sky": (None, "sun_azimuth_deg"), "environment": (None, "sun_azimuth_deg")}


def _studio(cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The fill is the key mirrored across the body at `fill.ratio` of its power; the rim takes
    the key's distance and size unless it has its own."""
    key = {k: number(v, rng, f"lighting.studio.key.{k}") for k, v in cfg["key"].items()}
    rim = {k: number(v, rng, f"lighting.studio.rim.{k}") for k, v in cfg["rim"].items()}
    rim.setdefault("distance_m", key["distance_m"])
    rim.setdefault("size_m", key["size_m"])
    fill = dict(key, power_w=key["power_w"] * number(cfg["fill"]["ratio"], rng, "lighting.studio.fill.ratio"),
                azimuth_deg=-key["azimuth_deg"], elevation_deg=key["elevation_deg"] / 2)
    jitter = cfg["world_color_jitter"]
    return {"key": key, "fill": fill, "rim": rim,
            "world_strength": number(cfg["world_strength"], rng, "lighting.studio.world_strength"),
            "world_color": np.clip(1.0 + rng.uniform(-jitter, jitter, 3), 0.0, None).tolist(),
            "color_temperature_k": number(cfg["color_temperature_k"], rng, "lighting.studio.color_temperature_k")}


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    kind = ranges.weighted(cfg["weights"], rng, "lighting.weights", KINDS, "kinds")
    if kind == "studio":
        out = _studio(cfg["studio"], rng)
    else:
        out = {k: number(v, rng, f"lighting.{kind}.{k}") for k, v in cfg[kind].items()}
    backlit = bool(rng.uniform() < cfg["backlit_share"])
    if backlit:  # the main light swings behind the person; a studio keeps its fill in front
        group, key = MAIN[kind]
        target = out[group] if group else out
        target[key] = number(cfg["backlit_azimuth_deg"], rng, "lighting.backlit_azimuth_deg")
    st = cfg["set"]
    tint = st["backdrop_tint"]
    backdrop = number(st["backdrop_albedo"], rng, "lighting.set.backdrop_albedo") * (1 + rng.uniform(-tint, tint, 3))
    out["set"] = {"floor_albedo": number(st["floor_albedo"], rng, "lighting.set.floor_albedo"),
                  "backdrop": kind == "studio",
                  "backdrop_color": np.clip(backdrop, 0.0, 1.0).tolist(),
                  "backdrop_distance_m": number(st["backdrop_distance_m"], rng, "lighting.set.backdrop_distance_m")}
    return {"kind": kind, "backlit": backlit, **out}
