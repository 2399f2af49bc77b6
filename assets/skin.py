"""Skin: the body's Principled BSDF, sampled from conf/body/*.yaml (`body.skin`)."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from core.colour import individual_typology_angle
from core.ranges import number


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """A base colour picked from `tones` (linear RGB) and jittered per channel, roughness and
    subsurface weight from their ranges."""
    rng = np.random.default_rng(seed)
    tones = np.asarray(cfg["tones"], float)
    tone = tones[rng.integers(len(tones))] * (1.0 + rng.uniform(-cfg["jitter"], cfg["jitter"], 3))
    color = np.clip(tone, 0.0, 1.0)
    return {"color": color.tolist(), "ita_deg": float(individual_typology_angle(color)),  # recorded, not rendered
            "roughness": number(cfg["roughness"], rng, "body.skin.roughness"),
            "subsurface_weight": number(cfg["subsurface_weight"], rng, "body.skin.subsurface_weight"),
            "lips": list(cfg["lips"]), "nails": list(cfg["nails"])}
