"""The camera: lens, framing, shutter and move sampled from conf/camera/*.yaml. Where it stands is
resolved from the posed body (`place`, in the world frame of assets.stage); `path` turns the move
into per-frame offsets from that placement, and `Placement.project` maps world points to pixels."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from assets import stage
from core import ranges
from core.noise import smooth_noise
from core.ranges import number

KEYS = ("focal_mm", "sensor_mm", "top_margin", "azimuth_deg", "elevation_deg", "roll_deg")
FRAMINGS = ("close_up", "upper_body", "full_body")
MOVES = ("static", "handheld", "dolly", "orbit", "zoom")


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {k: number(cfg[k], rng, f"camera.{k}") for k in KEYS}
    out["center_offset_m"] = [number(cfg["center_offset_m"], rng, "camera.center_offset_m") for _ in range(3)]
    out["shutter"] = number(cfg["shutter"], rng, "camera.shutter")
    if not 0 <= out["shutter"] <= 1:
        raise ValueError(f"camera.shutter must lie in [0, 1] (a share of the frame interval), got {out['shutter']}")
    kind = ranges.weighted(cfg["move"]["weights"], rng, "camera.move.weights", MOVES, "moves")
    per = cfg["move"].get(kind) or {}
    out["move"] = {"kind": kind, **{k: ranges.draw(per[k], rng, f"camera.move.{kind}.{k}") for k in sorted(per)}}
    for k in ("exposure_target", "exposure_max_gain", "exposure_highlight", "exposure_highlight_percentile"):
        out[k] = number(cfg[k], rng, f"camera.{k}")
    if not 0 < out["exposure_highlight_percentile"] <= 100:
        raise ValueError(f"camera.exposure_highlight_percentile must lie in (0, 100], got {out['exposure_highlight_percentile']}")
    if not out["exposure_highlight"] > 0:
        raise ValueError(f"camera.exposure_highlight must be positive (linear colour), got {out['exposure_highlight']}")
    fr = cfg["framing"]
    out["framing"] = ranges.weighted(fr["weights"], rng, "camera.framing.weights", FRAMINGS, "framings")
    out["frame_height_m"] = number(fr[out["framing"]], rng, f"camera.framing.{out['framing']}")
    out["dof"] = bool(rng.uniform() < cfg["dof_share"])
    out["f_stop"] = number(cfg["f_stop"], rng, "camera.f_stop")
    return out


@dataclass(frozen=True)
class Path:
    """Per-frame offsets from the resolved placement, in the camera's own terms."""
    rotate_deg: np.ndarray    # (T,3) yaw, pitch, roll added to the aim
    shift_m: np.ndarray       # (T,3) right, up, back in the camera frame
    distance: np.ndarray      # (T,) factor on the camera-to-aim distance
    azimuth_deg: np.ndarray   # (T,) orbit about the vertical through the aim point
    focal: np.ndarray         # (T,) factor on the focal length


def path(move: Mapping[str, Any], n_frames: int, fps: float) -> Path:
    t = np.arange(n_frames) / fps
    u = t / max(t[-1], 1e-9)
    ease = u * u * (3 - 2 * u)                  # starts and stops gently, as a dolly grip would
    zero3, one = np.zeros((n_frames, 3)), np.ones(n_frames)
    kind = move["kind"]
    rotate, shift, distance, azimuth, focal = zero3, zero3, one, np.zeros(n_frames), one
    if kind == "handheld":
        n = smooth_noise(t, move["freq_hz"], int(move["seed"]), 0, dims=6)
        rotate, shift = move["rotate_deg"] * n[:, :3], move["shift_m"] * n[:, 3:]
    elif kind == "dolly":
        distance = 1 + move["distance"] * ease
    elif kind == "orbit":
        azimuth = move["azimuth_deg"] * ease
    elif kind == "zoom":
        focal = move["focal_ratio"] ** ease
    elif kind != "static":
        raise ValueError(f"camera move {kind!r} is not one of {', '.join(MOVES)}")
    return Path(rotate, shift, distance, azimuth, focal)


@dataclass(frozen=True)
class Placement:
    """Where the camera is in every frame (world frame, Blender's camera axes: -Z forward, Y up)."""
    matrix_world: np.ndarray      # (T,4,4)
    lens_mm: np.ndarray           # (T,)
    focus_m: np.ndarray | None    # (T,) focus distance with depth of field, else None
    sensor_mm: float              # sensor height (vertical fit)
    width: int
    height: int
    record: dict                  # what the clip's metadata keeps of it

    def project(self, points: np.ndarray, t: int) -> np.ndarray:
        """World points (N,3) in frame t -> pixel positions (N,2), x right and y down from the
        image's top-left corner."""
        m = np.linalg.inv(self.matrix_world[t])
        p = points @ m[:3, :3].T + m[:3, 3]
        f = self.lens_mm[t] / self.sensor_mm * self.height   # focal length in pixels (vertical sensor fit)
        z = np.minimum(p[:, 2], -1e-6)                         # in front of the camera: z < 0
        return np.stack([self.width / 2 + f * p[:, 0] / -z, self.height / 2 - f * p[:, 1] / -z], axis=1)


def place(vertices: np.ndarray, joints: np.ndarray, top_extra: float, cam: Mapping[str, Any], width: int,
          height: int, fps: float, view_deg: float = 0.0, shift: np.ndarray | None = None) -> Placement:
    """Frame head and upper body over the whole clip (world-frame `vertices` (T,V,3) and `joints`
    (T,55,3); `top_extra`: what rises above the crown, the hair), then apply the clip's move frame
    by frame. `view_deg`: the stage's front relative to the person's facing (assets.stage.front);
    `shift`: a horizontal move of the aim (and the camera with it) from the person towards others."""
    top = vertices[..., 2].max() + top_extra
    head = joints[:, stage.HEAD].mean(0)
    extent = cam["frame_height_m"]
    target = np.array([head[0], head[1], top + cam["top_margin"] * extent - extent / 2]) + np.asarray(cam["center_offset_m"])
    if shift is not None:
        target = target + np.asarray(shift, float)
    front = stage.front(joints, view_deg)
    half_fov = math.atan(cam["sensor_mm"] / 2 / cam["focal_mm"])
    distance = (extent / 2) / math.tan(half_fov)   # vertical sensor fit; a landscape frame keeps the same vertical extent
    move = path(cam["move"], len(vertices), fps)
    matrices, lenses, focus = [], [], []
    for t in range(len(vertices)):
        position = target + distance * move.distance[t] * stage.direction(front, cam["azimuth_deg"] + move.azimuth_deg[t],
                                                                          cam["elevation_deg"])
        aim = stage.look_at(position, target)
        yaw, pitch, roll = np.radians(move.rotate_deg[t])
        shake = (stage.rotation("Z", math.radians(cam["roll_deg"]) + roll) @ stage.rotation("Y", yaw)
                 @ stage.rotation("X", pitch))
        shifted = position + aim[:3, :3] @ move.shift_m[t]
        aim[:3, 3] = shifted
        matrices.append(aim @ shake)
        lenses.append(cam["focal_mm"] * float(move.focal[t]))
        focus.append(float(np.linalg.norm(joints[t, stage.EYES].mean(axis=0) - shifted)))   # on the eyes as they move
    matrices, lenses = np.array(matrices), np.array(lenses)
    base = target + distance * stage.direction(front, cam["azimuth_deg"], cam["elevation_deg"])
    record = {"position": base.tolist(), "target": target.tolist(), "distance_m": distance,
              "matrix_world": matrices[0].tolist(), "sensor_fit": "VERTICAL", "lens_mm": float(lenses[0]),
              "sensor_height_mm": cam["sensor_mm"], "width": width, "height": height, "move": cam["move"]["kind"],
              "shutter": cam["shutter"], "framing": cam["framing"],
              "dof": {"f_stop": cam["f_stop"], "focus_m": focus[0]} if cam["dof"] else None,
              "frames": {"matrix_world": matrices.tolist(), "lens_mm": lenses.tolist()}}
    return Placement(matrices, lenses, np.array(focus) if cam["dof"] else None, cam["sensor_mm"], width, height, record)
