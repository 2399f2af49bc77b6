"""Plan a dataset: (config, dataset seed, clip index) -> a fully resolved ClipSpec.

Plan only derives seeds and assembles the record: each component (body, skin, motion, hair,
camera, lighting) is drawn by the sampler beside its asset in assets/, from its own config section
and its own seed, hash(clip seed, component), so changing how hair is sampled leaves bodies,
motions, cameras and lights of every clip as they were.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from assets import body, camera, clothing, effects, hair, held, lighting, motions, people, skin, worn
from clipstore.outputs import enabled
from core import seeds
from core.checks import at, integer, is_number, number, one_of
from core.conf import CONF_DIR
from core.errors import UserError
from render.spec import ClipSpec

DEVICES = ("auto", "cpu", "gpu", "optix", "cuda")
CURVE_SHAPES = ("THICK", "RIBBONS", "THICK_LINEAR")
HAIR_MODELS = ("CHIANG", "HUANG")
PIXEL_FILTERS = ("BLACKMAN_HARRIS", "GAUSSIAN", "BOX")
SAMPLING_PATTERNS = ("TABULATED_SOBOL", "BLUE_NOISE")
# Keys that say where and how a run executes, not what the dataset is.
NOT_DEFINITION = {"n_clips", "store", "cluster", "dry_run", "cost", "sheet", "report", "verbose", "hydra"}
EXECUTION_ONLY = {"cycles": ("device", "threads"), "body": ("cache_dir",)}


def clip_id(index: int) -> str:
    return f"clip{index:06d}"


def check(cfg: dict) -> None:
    """Values that would otherwise fail deep inside a worker, checked up front."""
    for key in ("n_clips", "cycles.width", "cycles.height", "cycles.samples", "cluster.workers",
                "cluster.cpus_per_worker", "cluster.clips_per_worker", "cost.probe_pixels"):
        integer(at(cfg, key), key, 1)
    for key in ("seed", "cycles.alpha_samples", "cycles.max_bounces"):
        integer(at(cfg, key), key, 0)
    if not (is_number(cfg["cluster"]["connect_timeout_s"]) and cfg["cluster"]["connect_timeout_s"] > 0):
        raise UserError(f"cluster.connect_timeout_s must be a positive number, got {cfg['cluster']['connect_timeout_s']!r}")
    fps, seconds = cfg["clip"]["fps"], cfg["clip"]["seconds"]
    if not (is_number(fps) and fps > 0 and is_number(seconds) and seconds > 0):
        raise UserError(f"clip.fps and clip.seconds must be positive numbers, got {fps!r} and {seconds!r}")
    if n_frames(cfg) < 1:
        raise UserError(f"clip.seconds={seconds} at clip.fps={fps} is {fps * seconds:.2f} frames: a clip needs at least one")
    c = cfg["cycles"]
    one_of(c["device"], DEVICES, "cycles.device")
    one_of(c["curve_shape"], CURVE_SHAPES, "cycles.curve_shape")
    one_of(c["hair_model"], HAIR_MODELS, "cycles.hair_model")
    one_of(c["pixel_filter"], PIXEL_FILTERS, "cycles.pixel_filter")
    one_of(c["sampling_pattern"], SAMPLING_PATTERNS, "cycles.sampling_pattern")
    if c["seed"] is not None and (not isinstance(c["seed"], int) or c["seed"] < 0):
        raise UserError(f"cycles.seed must be null or a non-negative integer, got {c['seed']!r}")
    if not is_number(c["fgr_min_alpha"]) or not 0 <= c["fgr_min_alpha"] < 1:
        raise UserError(f"cycles.fgr_min_alpha must be a number in [0, 1), got {c['fgr_min_alpha']!r}")
    if not is_number(c["pixel_filter_width"]) or c["pixel_filter_width"] <= 0:
        raise UserError(f"cycles.pixel_filter_width must be a positive number, got {c['pixel_filter_width']!r}")
    number(cfg["lighting"]["backlit_share"], "lighting.backlit_share", 0, 1)
    number(cfg["cost"]["quick_above_s"], "cost.quick_above_s", 0)
    one_of(cfg["cost"]["estimate"], (True, False), "cost.estimate")
    presets = sorted(p.stem for p in (CONF_DIR / "preset").glob("*.yaml"))
    one_of(cfg["cost"]["quick_preset"], presets, "cost.quick_preset")
    amass = cfg["motion"]["amass"]
    number(amass["fraction"], "motion.amass.fraction", 0, 1)
    if amass["dir"] and amass["fraction"] > 0 and not Path(amass["dir"]).expanduser().is_dir():
        raise UserError(f"motion.amass.dir: {amass['dir']} is not a folder")
    if amass["dir"] and amass["fraction"] == 0:
        raise UserError(f"motion.amass.dir={amass['dir']} applies only with motion.amass.fraction > 0 (the share of "
                        f"clips given an AMASS motion); here it is 0")
    try:
        clothing.check(cfg["clothing"])
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        hair.check(cfg["hair"])
        worn.check(cfg["worn"])
        held.check(cfg["held"])
        effects.check(cfg["effects"])
        people.check(cfg["cast"])
        enabled(cfg["outputs"])
    except ValueError as e:
        raise UserError(str(e)) from None


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


def person(cfg: dict, seed, model: dict, index: int | None, motion_cfg: dict | None = None) -> dict:
    """One person's components, each from its own seed (`seed(name)`): body shape and skin, the thing
    held (which decides the motion when there is one), the motion, hair, clothing, things worn."""
    motion_cfg = motion_cfg or cfg["motion"]
    holding = held.sample(cfg["held"], seed("held"), motion_cfg)
    return {"body": {"model": model, **body.sample(cfg["body"], seed("betas"), model["kind"]),
                     "skin": skin.sample(cfg["body"]["skin"], seed("skin"))},
            "motion": holding["motion"] if holding else motions.sample(motion_cfg, seed("motion")),
            "hair": hair.sample(cfg["hair"], seed("hair"), index),
            "clothing": clothing.sample(cfg["clothing"], seed("clothing"), model["kind"]),
            "worn": worn.sample(cfg["worn"], seed("worn"), model["kind"]),
            "held": holding}


def standing(motion_cfg: dict) -> dict:
    """The motion config without the walk across: in a clip of several people only the walker walks."""
    return {**motion_cfg, "weights": {k: v for k, v in motion_cfg["weights"].items() if k != people.WALKER}}


def others(cfg: dict, clip_seed: int, model: dict, target: dict, crowd: dict) -> list[dict]:
    """The people beside the target (`crowd`: people.sample), each drawn as the target is from its
    own seed hash(clip seed, "person<k>"). Nobody walks off their spot but a walk_past's walker,
    who walks across; the air moves everyone's hair alike (the target's wind); at most one thing
    held steams (its coverage is the one volume a person owns: docs/store.md)."""
    out, steaming = [], bool(target["held"] and target["held"].get("steam"))
    for k, place in enumerate(crowd["places"], start=1):
        own = seeds.derive(clip_seed, f"person{k}")
        walking = place["role"] == "walker"
        motion_cfg = {**cfg["motion"], "weights": {people.WALKER: 1.0}} if walking else standing(cfg["motion"])
        p = person({**cfg, "held": {**cfg["held"], "share": 0.0}} if walking else cfg,
                   lambda name: seeds.derive(own, name), model, None, motion_cfg)   # noqa: B023
        if p["held"] and p["held"].get("steam"):
            if steaming:
                p["held"] = {**p["held"], "steam": None}
            steaming = True
        p["hair"]["dynamics"]["wind"] = target["hair"]["dynamics"]["wind"]
        out.append({**p, "place": place})
    return out


def clip_spec(cfg: dict, index: int, model: dict) -> ClipSpec:
    """Clip `index` of the dataset: each component drawn by its own sampler (beside its asset) from
    its own config section and its own seed, hash(clip seed, component)."""
    clip_seed = seeds.derive(cfg["seed"], index)
    seed = lambda name: seeds.derive(clip_seed, name)  # noqa: E731
    c = cfg["cycles"]
    cycles = {k: v for k, v in c.items() if k != "threads"}
    cycles["seed"] = c["seed"] if c["seed"] is not None else seed("cycles") % 2**31
    crowd = people.sample(cfg["cast"], seed("people"))
    target = person(cfg if crowd["count"] == 1 else {**cfg, "motion": standing(cfg["motion"])}, seed, model, index)
    outputs = {name: o.attrs for name, o in enabled(cfg["outputs"]).items()}
    if "instances" in outputs:   # one channel per person, written where there are several
        if crowd["count"] == 1:
            del outputs["instances"]
        else:
            outputs["instances"]["channels"] = [f"person{k}" for k in range(crowd["count"])]
    cam = cfg["camera"]
    if crowd["layout"] == "walk_past":   # room for someone to walk between the camera and the target
        wide = {k: v for k, v in cam["framing"]["weights"].items() if k != "close_up"}
        if sum(wide.values()) > 0:
            cam = {**cam, "framing": {**cam["framing"], "weights": wide}}
    return ClipSpec(
        clip_id=clip_id(index), index=index, seed=clip_seed,
        fps=float(cfg["clip"]["fps"]), n_frames=n_frames(cfg),
        **target,
        camera=camera.sample(cam, seed("camera")),
        lighting=lighting.sample(cfg["lighting"], seed("lighting")),
        effects=effects.sample(cfg["effects"], seed("effects")),
        cycles=cycles,
        outputs=outputs,
        people={"count": crowd["count"], "layout": crowd["layout"], "clearance": cfg["cast"]["clearance"],
                "framing": cfg["cast"]["framing"],
                "others": others(cfg, clip_seed, model, target, crowd)},
    )


def plan(cfg: dict, model: dict) -> list[ClipSpec]:
    check(cfg)
    try:
        return [clip_spec(cfg, i, model) for i in range(cfg["n_clips"])]
    except ValueError as e:  # the samplers' word for a bad config value; it names the key
        raise UserError(str(e)) from None


def resolve_model(cfg: dict) -> dict:
    """The body model the config names (assets.body.resolve_model), or one line saying what is wrong."""
    b = cfg["body"]
    try:
        return body.resolve_model(b["model_path"], b["gender"], Path(b["cache_dir"]).expanduser(), b["model"])
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"body: {e}") from None
