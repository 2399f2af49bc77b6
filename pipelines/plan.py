"""Plan a dataset: (config, dataset seed, clip index) -> a fully resolved ClipSpec.

Each component draws from its own stream, hash(clip seed, component), so changing how hair is
sampled leaves bodies, motions, cameras and lights of every clip as they were.
"""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from assets import body as body_models
from assets import hair as hair_lib
from assets import motions, ranges
from pipelines import seeds
from pipelines.cli import UserError
from render.spec import ClipSpec

DEVICES = ("auto", "cpu", "gpu")
CURVE_SHAPES = ("THICK", "RIBBONS", "THICK_LINEAR")
HAIR_MODELS = ("CHIANG", "HUANG")
# Keys that say where and how a run executes, not what the dataset is.
NOT_DEFINITION = {"n_clips", "store", "cluster", "dry_run", "sheet", "hydra"}
EXECUTION_ONLY = {"cycles": ("device", "threads"), "body": ("cache_dir",)}


def clip_id(index: int) -> str:
    return f"clip{index:06d}"


def uniform(rng: np.random.Generator, value: Any, key: str) -> float:
    """A number drawn from a config range; a bad range is the user's error, naming its key."""
    try:
        return float(ranges.draw(value, rng, key))
    except ValueError as e:
        raise UserError(str(e)) from None


def _int(cfg: dict, key: str, minimum: int) -> int:
    """The integer at a dotted key, at least `minimum` (booleans are not integers here)."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int) or node < minimum:
        kind = "a positive" if minimum == 1 else "a non-negative"
        raise UserError(f"{key} must be {kind} integer, got {node!r}")
    return node


def _one_of(value: Any, allowed: Sequence[str], key: str) -> str:
    if value not in allowed:
        raise UserError(f"{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def check(cfg: dict) -> None:
    """Values that would otherwise fail deep inside a worker, checked up front."""
    for key in ("n_clips", "cycles.width", "cycles.height", "cycles.samples", "cluster.workers",
                "cluster.cpus_per_worker", "cluster.clips_per_worker"):
        _int(cfg, key, 1)
    for key in ("seed", "cycles.alpha_samples", "cycles.max_bounces"):
        _int(cfg, key, 0)
    fps, seconds = cfg["clip"]["fps"], cfg["clip"]["seconds"]
    if not isinstance(fps, (int, float)) or fps <= 0 or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise UserError(f"clip.fps and clip.seconds must be positive numbers, got {fps!r} and {seconds!r}")
    c = cfg["cycles"]
    _one_of(c["device"], DEVICES, "cycles.device")
    _one_of(c["curve_shape"], CURVE_SHAPES, "cycles.curve_shape")
    _one_of(c["hair_model"], HAIR_MODELS, "cycles.hair_model")
    if c["seed"] is not None and (not isinstance(c["seed"], int) or c["seed"] < 0):
        raise UserError(f"cycles.seed must be null or a non-negative integer, got {c['seed']!r}")
    if not isinstance(c["fgr_min_alpha"], (int, float)) or not 0 <= c["fgr_min_alpha"] < 1:
        raise UserError(f"cycles.fgr_min_alpha must be a number in [0, 1), got {c['fgr_min_alpha']!r}")
    if not isinstance(c["pixel_filter_width"], (int, float)) or c["pixel_filter_width"] <= 0:
        raise UserError(f"cycles.pixel_filter_width must be a positive number, got {c['pixel_filter_width']!r}")


def definition(cfg: dict, model: dict) -> dict:
    """The part of the config that defines the dataset (plus the body model's identity)."""
    d = {k: v for k, v in cfg.items() if k not in NOT_DEFINITION}
    for group, keys in EXECUTION_ONLY.items():
        d[group] = {k: v for k, v in d[group].items() if k not in keys}
    d["body"] = {**d["body"], "model_path": None, "model": {"kind": model["kind"], "sha256": model["sha256"]}}
    return d


def definition_hash(defn: dict) -> str:
    return hashlib.sha256(json.dumps(defn, sort_keys=True).encode()).hexdigest()[:16]


def n_frames(cfg: dict) -> int:
    return int(round(cfg["clip"]["fps"] * cfg["clip"]["seconds"]))


def _skin(rng: np.random.Generator, skin: dict) -> dict:
    tones = np.asarray(skin["tones"], float)
    tone = tones[rng.integers(len(tones))] * (1.0 + rng.uniform(-skin["jitter"], skin["jitter"], 3))
    return {"color": np.clip(tone, 0.0, 1.0).tolist(),
            "roughness": uniform(rng, skin["roughness"], "body.skin.roughness"),
            "subsurface_weight": uniform(rng, skin["subsurface_weight"], "body.skin.subsurface_weight")}


def _camera(rng: np.random.Generator, cam: dict) -> dict:
    out = {k: uniform(rng, cam[k], f"camera.{k}") for k in
           ("focal_mm", "sensor_mm", "frame_height_m", "top_margin", "azimuth_deg", "elevation_deg", "roll_deg")}
    out["center_offset_m"] = [uniform(rng, cam["center_offset_m"], "camera.center_offset_m") for _ in range(3)]
    return out


def _lighting(rng: np.random.Generator, light: dict) -> dict:
    key = {k: uniform(rng, v, f"lighting.key.{k}") for k, v in light["key"].items()}
    rim = {k: uniform(rng, v, f"lighting.rim.{k}") for k, v in light["rim"].items()}
    rim.setdefault("distance_m", key["distance_m"])
    rim.setdefault("size_m", key["size_m"])
    fill = dict(key, power_w=key["power_w"] * uniform(rng, light["fill"]["ratio"], "lighting.fill.ratio"),
                azimuth_deg=-key["azimuth_deg"], elevation_deg=key["elevation_deg"] / 2)
    jitter = light["world_color_jitter"]
    return {"key": key, "fill": fill, "rim": rim,
            "world_strength": uniform(rng, light["world_strength"], "lighting.world_strength"),
            "world_color": np.clip(1.0 + rng.uniform(-jitter, jitter, 3), 0.0, None).tolist(),
            "color_temperature_k": uniform(rng, light["color_temperature_k"], "lighting.color_temperature_k")}


def _motion(rng: np.random.Generator, m: dict, clip_seed: int) -> dict:
    amass = m.get("amass") or {}
    if amass.get("dir") and rng.uniform() < amass.get("fraction", 0.0):
        files = sorted(Path(amass["dir"]).expanduser().rglob("*.npz"))
        if not files:
            raise UserError(f"motion.amass.dir {amass['dir']} holds no .npz files")
        path = files[rng.integers(len(files))]
        return {"kind": "amass", "path": str(path), "start_frame": int(rng.integers(0, amass.get("max_start_frame", 1) + 1))}
    names = sorted(m["weights"])
    w = np.array([m["weights"][n] for n in names], float)
    if (w < 0).any() or w.sum() <= 0:
        raise UserError(f"motion.weights must be non-negative with a positive sum, got {m['weights']}")
    name = names[rng.choice(len(names), p=w / w.sum())]
    return {"kind": "procedural", "name": name,
            "params": motions.sample_params(name, seeds.rng(clip_seed, "motion", name), m["ranges"][name])}


def _hair(rng: np.random.Generator, h: dict, clip_seed: int) -> dict:
    params = hair_lib.sample_params(rng, h)
    material = {k: params.pop(k) for k in hair_lib.MATERIAL_KEYS if k in params}
    return {"geometry": params, "material": material, "seed": seeds.derive(clip_seed, "hair", "strands")}


def clip_spec(cfg: dict, index: int, model: dict) -> ClipSpec:
    clip_seed = seeds.derive(cfg["seed"], index)
    stream = lambda name: seeds.rng(clip_seed, name)  # noqa: E731
    b = cfg["body"]
    c = cfg["cycles"]
    cycles = {k: v for k, v in c.items() if k != "threads"}
    cycles["seed"] = c["seed"] if c["seed"] is not None else seeds.derive(clip_seed, "cycles") % 2**31
    return ClipSpec(
        clip_id=clip_id(index), index=index, seed=clip_seed,
        fps=float(cfg["clip"]["fps"]), n_frames=n_frames(cfg),
        body={"model": model, "betas": body_models.sample_betas(stream("betas"), b["n_betas"], b["betas_std"]),
              "skin": _skin(stream("skin"), b["skin"])},
        motion=_motion(stream("motion"), cfg["motion"], clip_seed),
        hair=_hair(stream("hair"), cfg["hair"], clip_seed),
        camera=_camera(stream("camera"), cfg["camera"]),
        lighting=_lighting(stream("lighting"), cfg["lighting"]),
        cycles=cycles,
    )


def plan(cfg: dict, model: dict) -> list[ClipSpec]:
    check(cfg)
    try:
        return [clip_spec(cfg, i, model) for i in range(cfg["n_clips"])]
    except ValueError as e:  # the samplers' word for a bad config value; it names the key
        raise UserError(str(e)) from None
