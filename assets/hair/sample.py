"""A clip's hair drawn from the `hair:` config (conf/hair/default.yaml): style, geometry, material,
colour and motion. This module knows only the names of the parameters; conf/ holds the numbers."""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np

from assets.hair import colour
from assets.hair.groom import _INT_KEYS, GROW_KEYS, checked
from core import ranges, seeds

MATERIAL_KEYS = ("roughness", "radial_roughness", "coat", "ior", "random_roughness")
_DRAWN_HERE = ("fringe",)           # drawn from the style's fringe_share, not a range


def _style(cfg: Mapping[str, Any], rng: np.random.Generator, index: int | None = None) -> str:
    styles = cfg.get("styles") or {}
    if not styles:
        raise ValueError("hair config has no styles")
    weights = dict(cfg.get("style_weights") or {s: 1.0 for s in styles})
    pick = ranges.weighted(weights, rng, "hair.style_weights", sorted(styles), "styles")   # drawn either way: the streams stay aligned
    order = cfg.get("style_order", "random")
    if order == "cycle" and index is not None:
        on = [n for n in sorted(weights) if float(weights[n]) > 0]
        return on[index % len(on)]
    if order not in ("random", "cycle"):
        raise ValueError(f"hair.style_order must be random or cycle, got {order!r}")
    return pick


def _geometry(cfg: Mapping[str, Any], style: str, value: Callable[[Any, str], Any],
              roll: Callable[[], float]) -> dict[str, Any]:
    """The style's geometry params, each range resolved by `value(range, key)`, the fringe by `roll()`."""
    common = cfg.get("common") or {}
    dead = sorted(k for k in common if all(k in s for s in cfg["styles"].values()))
    if dead:   # a common value no style takes would be silently ignored
        raise ValueError(f"hair.common.{dead[0]} is set, but every style sets its own "
                         f"(hair.styles.<style>.{dead[0]}); set it per style"
                         + (" or scale all with hair.strand_scale" if dead[0] == "n_strands" else ""))
    style_ranges = {**common, **cfg["styles"][style]}
    missing = sorted((set(GROW_KEYS) - set(_DRAWN_HERE) | {"fringe_share"}) - set(style_ranges))
    if missing:
        raise ValueError(f"hair style {style!r} leaves params undefined: {missing}")
    out: dict[str, Any] = {"style": style}
    for k in sorted(style_ranges):
        out[k] = value(style_ranges[k], f"hair.{style}.{k}")
    out["fringe"] = int(roll() < float(out.pop("fringe_share")))
    scale = float(cfg["strand_scale"])
    if not scale > 0:
        raise ValueError(f"hair.strand_scale must be a positive number, got {scale}")
    if out["n_strands"] >= 1:   # a small scale still leaves a strand; a count below 1 is the groom's to refuse
        out["n_strands"] = max(1, int(round(out["n_strands"] * scale)))
    out["n_clumps"] = min(int(round(out["n_clumps"])), out["n_strands"])
    for k in _INT_KEYS:
        out[k] = int(round(out[k]))
    try:   # the groom's own rules, applied when the clip is planned rather than inside its worker
        checked({k: out[k] for k in GROW_KEYS})
    except ValueError as e:
        raise ValueError(f"hair style {style}: {e}") from None
    return out


def sample_params(rng: np.random.Generator | int, cfg: Mapping[str, Any], index: int | None = None) -> dict[str, Any]:
    """Pick a style (by `style_weights`) and draw every geometry param; a flat dict plus "style".
    Strand counts are scaled by `strand_scale` (1 for the dataset, less for quick previews).
    With `style_order: cycle` clip `index` takes the families with a positive weight in turn."""
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    style = _style(cfg, rng, index)
    return _geometry(cfg, style, lambda spec, where: ranges.draw(spec, rng, where), rng.random)


def check(cfg: Mapping[str, Any]) -> None:
    """Every style a clip can draw, at both ends of its ranges, against the groom's rules: a bad value
    in any style is refused when the dataset is planned, not only in the clips that happen to draw it."""
    _style(cfg, np.random.default_rng(0))   # the weights and the order, as drawing checks them
    face(cfg["face"], 0)
    styles = cfg["styles"]
    weights = dict(cfg.get("style_weights") or {s: 1.0 for s in styles})
    for style in sorted(s for s in styles if float(weights.get(s, 0)) > 0):
        for end, roll in ((0, 0.0), (-1, 1.0 - 1e-9)):   # low ends with a fringe, high ends without
            _geometry(cfg, style, lambda spec, where: ranges.ends(spec, where)[end], lambda: roll)


def face(cfg: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    """A clip's brows and lashes (`hair.face`): every range drawn, or None when they are off."""
    if not cfg["enabled"]:
        return None
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {k: v for k, v in cfg.items() if k not in ("enabled", "brows", "lashes")}
    for part in ("brows", "lashes"):
        out[part] = {k: ranges.draw(v, rng, f"hair.face.{part}.{k}") for k, v in sorted(cfg[part].items())}
    if int(out["points_per_strand"]) < 2:
        raise ValueError(f"hair.face.points_per_strand must be at least 2, got {out['points_per_strand']}")
    return out


def sample(cfg: Mapping[str, Any], seed: int, index: int | None = None) -> dict[str, Any]:
    """A clip's hair: geometry params (with the style), BSDF params, colour, motion, and the seeds
    the strands grow and move from."""
    rng = np.random.default_rng(seed)
    geometry = sample_params(rng, cfg, index)
    material = {k: ranges.draw(cfg["material"][k], rng, f"hair.material.{k}") for k in MATERIAL_KEYS}
    dyn = cfg["dynamics"]
    motion = {k: ranges.draw(v, rng, f"hair.dynamics.{k}") for k, v in sorted(dyn.items())
              if k not in ("wind",)}
    wind_cfg = dyn["wind"]
    wind = {k: ranges.draw(v, rng, f"hair.dynamics.wind.{k}") for k, v in sorted(wind_cfg.items())
            if k != "off_share"}
    if rng.random() < float(wind_cfg["off_share"]):
        wind["speed"] = 0.0
    wind["azimuth_deg"] = float(rng.uniform(0.0, 360.0))
    motion["wind"] = wind
    return {"geometry": geometry, "material": material,
            "colour": colour.sample(cfg["colour"], np.random.default_rng(seeds.derive(seed, "colour"))),
            "dynamics": motion, "face": face(cfg["face"], seeds.derive(seed, "face")),
            "seed": seeds.derive(seed, "strands"), "motion_seed": seeds.derive(seed, "hair_motion")}
