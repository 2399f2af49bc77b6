"""Hair colour: natural shades by their share among people, a few dyed, varied strand by strand.

Natural hair is drawn in the Principled Hair BSDF's melanin parametrisation (melanin: blond ..
black, redness: eumelanin .. pheomelanin); grey and white heads are a share of unpigmented strands
among pigmented ones, as they are on people, not one flat grey. Dyed hair uses the BSDF's direct
colour parametrisation. Every strand gets its own melanin factor, which the renderer reads as a
per-curve attribute.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from core import ranges


def sample(cfg: Mapping[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """A head's colour record from the `hair.colour` config."""
    dyed = rng.random() < float(cfg["dyed_share"])
    table = cfg["dyed"] if dyed else cfg["natural"]
    names = sorted(table)
    share = np.array([float(table[n]["share"]) for n in names])
    if (share < 0).any() or share.sum() <= 0:
        raise ValueError(f"hair.colour shares must be non-negative with a positive sum, got "
                         f"{dict(zip(names, share.tolist()))}")
    name = names[int(rng.choice(len(names), p=share / share.sum()))]
    entry = table[name]
    where = f"hair.colour.{'dyed' if dyed else 'natural'}.{name}"
    out: dict[str, Any] = {"kind": "dyed" if dyed else "natural", "name": name,
                           "strand_sigma": ranges.number(cfg["strand_sigma"], rng, "hair.colour.strand_sigma")}
    if dyed:
        base = np.asarray(entry["color"], dtype=float)
        jitter = ranges.number(cfg["dyed_jitter"], rng, "hair.colour.dyed_jitter")
        out["color"] = np.clip(base * np.exp(jitter * rng.standard_normal(3)), 0.0, 1.0).tolist()
        out["melanin"], out["melanin_redness"], out["unpigmented_share"] = 0.0, 0.0, 0.0
    else:
        out["melanin"] = ranges.number(entry["melanin"], rng, f"{where}.melanin")
        out["melanin_redness"] = ranges.number(entry["melanin_redness"], rng, f"{where}.melanin_redness")
        out["unpigmented_share"] = ranges.number(entry.get("unpigmented_share", 0.0), rng,
                                                 f"{where}.unpigmented_share")
        out["color"] = None
    return out


def strand_melanin(colour: Mapping[str, Any], n: int, seed: int) -> np.ndarray:
    """(n,) float32 melanin per strand: the head's value times a log-normal factor, 0 for the
    unpigmented share (grey and white heads); all ones of the factor for dyed hair."""
    rng = np.random.default_rng(seed)
    sigma = float(colour["strand_sigma"])
    factor = np.exp(sigma * rng.standard_normal(n) - 0.5 * sigma * sigma)
    if colour["kind"] == "dyed":
        return np.clip(factor, 0.0, 2.0).astype(np.float32)   # read as a brightness factor
    m = np.clip(float(colour["melanin"]) * factor, 0.0, 1.0)
    m[rng.random(n) < float(colour["unpigmented_share"])] = 0.0
    return m.astype(np.float32)
