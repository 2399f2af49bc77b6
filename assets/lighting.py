"""Lighting and the set: one kind of light per clip (a studio rig, Cycles' physical sky, or an
HDR-like room with a sun and a window), drawn from conf/lighting/*.yaml, a share of clips lit from
behind; and the set the person stands in (a floor, and for a studio a paper backdrop). Where the
lamps and the set stand is resolved from the posed body and the camera (`place`, `set_objects`),
in the world frame of assets.stage."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from assets import stage
from assets.shapes import Mesh, SceneObject
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


@dataclass(frozen=True)
class Rig:
    """The clip's lamps (name, type AREA or SUN, energy, temperature_k, matrix (4x4 world), size_m or
    angle_deg) and its world (the kind's background settings)."""
    lamps: tuple[dict, ...]
    world: dict


def _lamp(name: str, kind: str, energy: float, temperature_k: float, position: np.ndarray, target: np.ndarray,
          **extra: float) -> dict:
    return {"name": name, "type": kind, "energy": energy, "temperature_k": temperature_k,
            "matrix": stage.look_at(position, target), **extra}


def place(light: Mapping[str, Any], joints: np.ndarray, view_deg: float = 0.0) -> Rig:
    """The lamps aimed at the chest-to-head midpoint of the posed body (world-frame `joints`), placed
    about the stage's front (assets.stage.front)."""
    target = joints[:, stage.HEAD].mean(0) * 0.5 + joints[:, stage.SPINE3].mean(0) * 0.5
    front = stage.front(joints, view_deg)
    kind = light["kind"]
    if kind == "studio":
        lamps = tuple(_lamp(name, "AREA", light[name]["power_w"], light["color_temperature_k"],
                            target + light[name]["distance_m"] * stage.direction(front, light[name]["azimuth_deg"],
                                                                                 light[name]["elevation_deg"]),
                            target, size_m=light[name]["size_m"]) for name in ("key", "fill", "rim"))
        return Rig(lamps, {"kind": kind, "color": light["world_color"], "strength": light["world_strength"]})
    if kind == "sky":
        sun = stage.direction(front, light["sun_azimuth_deg"], 0.0)
        # measured in Blender: sun rotation 0 puts the sun towards +Y, 90 degrees towards +X
        return Rig((), {"kind": kind, "sun_rotation": math.atan2(sun[0], sun[1]), **light})
    sun = _lamp("sun", "SUN", light["sun_power"], light["sun_temperature_k"],
                target + stage.direction(front, light["sun_azimuth_deg"], light["sun_elevation_deg"]), target,
                angle_deg=light["sun_angle_deg"])
    window = _lamp("window", "AREA", light["window_power_w"], light["window_temperature_k"],
                   target + light["window_distance_m"] * stage.direction(front, light["window_azimuth_deg"],
                                                                         light["window_elevation_deg"]),
                   target, size_m=light["window_size_m"])
    return Rig((sun, window), {"kind": kind, **light})


def _plane(name: str, size: tuple[float, float], colour: tuple[float, float, float], matrix: np.ndarray) -> SceneObject:
    w, h = size[0] / 2, size[1] / 2
    corners = np.array([(-w, -h, 0.0), (w, -h, 0.0), (w, h, 0.0), (-w, h, 0.0)])
    return SceneObject(name, "set", "static", (), Mesh(np.array([[0, 1, 2], [0, 2, 3]]), corners),
                       ({"kind": "matte", "name": name, "colour": list(colour), "part": None},),
                       transform=matrix[None], plate=True)


def set_objects(st: Mapping[str, Any], vertices: np.ndarray, target: np.ndarray, camera_at: np.ndarray,
                behind_m: float = 0.0) -> list[SceneObject]:
    """A floor under the feet of the posed bodies (world-frame `vertices`) and, for a studio, a paper
    backdrop behind the person facing the camera (`behind_m` further when others stand that far
    behind them): they bounce light in every pass, and only the background plate shows them (the
    colour pass shows their shadows, as a catcher)."""
    floor_z = float(vertices[..., 2].min())
    out = [_plane("floor", (40.0, 40.0), (st["floor_albedo"],) * 3, stage.translation([0.0, 0.0, floor_z]))]
    if st["backdrop"]:
        away = np.asarray(target, float) - np.asarray(camera_at, float)
        away[2] = 0.0
        away /= max(np.linalg.norm(away), 1e-9)
        centre = np.asarray(target, float) + (st["backdrop_distance_m"] + behind_m) * away
        centre[2] = floor_z + 3.0
        facing = stage.look_at(centre, centre + away)   # its normal (+Z) towards the camera
        out.append(_plane("backdrop", (12.0, 6.0), tuple(st["backdrop_color"]), facing))
    return out
