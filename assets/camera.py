"""The camera: lens, framing, shutter and move sampled from conf/camera/*.yaml. Where it stands is
resolved at render time from the posed body (render.scene.add_camera); `path` turns the move into
per-frame offsets from that placement."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

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
