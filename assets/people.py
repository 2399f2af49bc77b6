"""Several people in one clip: how many, the layout they stand in, and where each one stands.

The first person is the target: the camera frames them and the lights and exposure follow them, as
in a clip of one. The others are drawn as the target is (pipelines.plan draws each person's body,
clothing, hair, worn and held things and motion from that person's own seed); this module draws the
count and the layout (`sample`), and once every body is posed places the others around the target
(`placement`, a rigid motion per frame in the world frame, applied to a posed body by `place`).
Layouts are given relative to the target and the camera: the stage's front (towards the camera) and
its side. Bodies are then pushed apart (`separate`) until every pair, with its clothing, keeps
`cast.clearance` in every frame: a drawn layout never makes two people interpenetrate.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np
from scipy.spatial import cKDTree

from assets import stage
from core import ranges

LAYOUTS = {"side_by_side": 2, "behind": 2, "walk_past": 2, "group": 3}   # layout -> fewest people it takes
COUNTS = {"two": 2, "three": 3, "four": 4}
WALKER = "walk_across"   # the walker's motion; no one else walks off their spot in a clip of several


def check(cfg: Mapping[str, Any]) -> None:
    """What conf/rules/values.yaml cannot say: the names, and a layout for every count drawn."""
    ranges.weighted(cfg["counts"], np.random.default_rng(0), "cast.counts", tuple(COUNTS), "counts")
    for name, w in cfg["counts"].items():
        if w > 0 and not any(cfg["layouts"].get(k, 0) > 0 for k, least in LAYOUTS.items() if least <= COUNTS[name]):
            raise ValueError(f"cast.layouts: no layout with a positive weight takes {COUNTS[name]} people")
    ranges.weighted(cfg["layouts"], np.random.default_rng(0), "cast.layouts", tuple(LAYOUTS), "layouts")


def sample(cfg: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """The clip's number of people and, with more than one, their layout and where each of the
    others stands relative to the target: `places[k - 1]` for person k."""
    rng = np.random.default_rng(seed)
    if not rng.uniform() < cfg["share"]:
        return {"count": 1, "layout": None, "places": []}
    count = COUNTS[ranges.weighted(cfg["counts"], rng, "cast.counts", tuple(COUNTS), "counts")]
    fits = {k: w for k, w in cfg["layouts"].items() if LAYOUTS[k] <= count}
    layout = ranges.weighted(fits, rng, "cast.layouts", tuple(LAYOUTS), "layouts")
    n = lambda key, where: ranges.number(key, rng, f"cast.{where}")  # noqa: E731
    places: list[dict[str, Any]] = []
    row = []   # lateral offsets of the people in a row beside the target (0 is the target)

    def in_row() -> dict[str, Any]:
        # Alternate sides, each next to the last one on its side.
        side = 1.0 if len(places) % 2 == 0 else -1.0
        edge = max([0.0] + [side * x for x in row if side * x > 0])
        row.append(side * (edge + n(cfg["spacing"], "spacing")))
        return {"role": "row", "side": row[-1], "depth": 0.0, "turn_deg": -math.copysign(n(cfg["turn_deg"], "turn_deg"), row[-1])}

    for k in range(1, count):
        if layout == "side_by_side" or (layout == "walk_past" and k > 1):
            places.append(in_row())
        elif layout == "behind":
            side = (1.0 if k % 2 else -1.0) * n(cfg["behind"]["side"], "behind.side") * (1 + (k - 1) // 2)
            places.append({"role": "behind", "side": side, "depth": -n(cfg["behind"]["depth"], "behind.depth"),
                           "turn_deg": -math.copysign(n(cfg["turn_deg"], "turn_deg"), side)})
        elif layout == "walk_past":
            places.append({"role": "walker", "nearer": n(cfg["walk_past"]["nearer"], "walk_past.nearer"),
                           "gap": n(cfg["walk_past"]["gap"], "walk_past.gap"),
                           "offset_s": n(cfg["walk_past"]["offset_s"], "walk_past.offset_s"),
                           "direction": float(rng.choice([-1.0, 1.0]))})
        else:   # group: round a circle whose nearest point to the camera is the target's
            radius, gap = n(cfg["group"]["radius"], "group.radius"), n(cfg["group"]["gap_deg"], "group.gap_deg")
            angle = (1.0 if k % 2 else -1.0) * gap * (1 + (k - 1) // 2)
            places.append({"role": "circle", "radius": radius, "angle_deg": angle})
    return {"count": count, "layout": layout, "places": places}


def placement(place: Mapping[str, Any], joints: np.ndarray, own_floor: float, target_joints: np.ndarray,
              floor: float, camera_at: np.ndarray, speed: float = 0.0) -> np.ndarray:
    """Person k's rigid motion (T,4,4) in the world frame, from their posed joints (world, T,55,3)
    to where `place` puts them: relative to the target's mean pelvis, the stage's front (towards the
    camera at `camera_at`) and side; their lowest point (`own_floor`) on the target's `floor`. A
    walker (walk_across, `speed` m/s along their facing) crosses in front of the target `offset_s`
    after mid-clip."""
    centre = target_joints[:, 0].mean(0)
    front = camera_at - centre
    front[2] = 0.0
    distance = max(float(np.linalg.norm(front)), 1e-9)
    front /= distance
    side = np.cross(stage.UP, front)   # the target's left as the camera sees them face on
    own = joints[:, 0].mean(0)
    facing = stage.facing(joints)
    role = place["role"]
    if role == "walker":
        heading = place["direction"] * side
        depth = min(max(place["nearer"] * distance, place["gap"]), max(distance - place["gap"], place["gap"]))
        spot = centre + depth * front - heading * speed * place["offset_s"]
    elif role == "circle":
        a = math.radians(place["angle_deg"])
        middle = centre - place["radius"] * front
        spot = middle + place["radius"] * (math.cos(a) * front + math.sin(a) * side)
        heading = middle - spot
        heading = 0.4 * heading / max(np.linalg.norm(heading), 1e-9) + 0.6 * front   # half open to the camera
    else:
        spot = centre + place["side"] * side + place["depth"] * front
        heading = stage.direction(front, place["turn_deg"], 0.0)
    yaw = math.atan2(heading[1], heading[0]) - math.atan2(facing[1], facing[0])
    m = stage.translation([spot[0], spot[1], floor - own_floor]) @ stage.rotation("Z", yaw) @ stage.translation([-own[0], -own[1], 0.0])
    return np.repeat(m[None], len(joints), axis=0)


def place(posed: Any, world: np.ndarray) -> Any:
    """A posed body (SMPL-X frame) moved by a rigid world-frame motion per frame (T,4,4): its
    vertices, joints and the transforms that carry head and hand things."""
    c = np.eye(4)
    c[:3, :3] = stage.Y_UP_TO_Z_UP
    m = (c.T @ world @ c).astype(np.float32)   # the same motion on SMPL-X points
    move = lambda p: np.einsum("tij,tvj->tvi", m[:, :3, :3], p) + m[:, None, :3, 3]  # noqa: E731
    return dataclasses.replace(posed, vertices=move(posed.vertices).astype(np.float32),
                               joints=move(posed.joints).astype(np.float32),
                               head_transform=(m @ posed.head_transform).astype(np.float32),
                               hand_transform=(m[:, None] @ posed.hand_transform).astype(np.float32))


def gaps(a: np.ndarray, b: np.ndarray, within: float = np.inf) -> np.ndarray:
    """Per frame, the least distance between two point sets (T,N,3) and (T,M,3); a frame whose
    bounding boxes lie `within` or more apart gives that box distance instead (no search needed)."""
    out = np.empty(len(a))
    for t in range(len(a)):
        box = np.maximum(0.0, np.maximum(a[t].min(0) - b[t].max(0), b[t].min(0) - a[t].max(0)))
        out[t] = np.linalg.norm(box)
        if out[t] < within:
            out[t] = cKDTree(b[t]).query(a[t], k=1)[0].min()
    return out


def separate(points: list[np.ndarray], centres: list[np.ndarray], clearance: float, fixed: int = 1,
             rounds: int = 50) -> list[np.ndarray]:
    """Horizontal shifts (3,) that keep every pair of people's points (world, T,N,3: a body with its
    clothing) at least `clearance` apart in every frame. The first `fixed` people stay; each other
    one, in turn, moves straight away from whoever it comes too close to (from that one's mean
    position `centres`), until it is clear of everyone before it: a few centimetres beyond what
    would just do, as people keep a little room."""
    shifts = [np.zeros(3) for _ in points]
    for k in range(fixed, len(points)):
        step = clearance + 0.01
        for _ in range(rounds):
            worst = None
            for j in range(k):
                d = float(gaps(points[k] + shifts[k], points[j] + shifts[j], clearance).min())
                if d < clearance and (worst is None or d < worst[0]):
                    worst = (d, j)
            if worst is None:
                break
            d, j = worst
            away = (centres[k] + shifts[k]) - (centres[j] + shifts[j])
            away[2] = 0.0
            away /= max(np.linalg.norm(away), 1e-9)
            # Bodies inside each other are as near as bodies touching: steps grow while they stay too close.
            shifts[k] = shifts[k] + away * max(clearance - d + 0.01, step)
            step *= 1.5
        else:
            raise ValueError(f"person {k} could not be placed clear of the others in {rounds} rounds")
    return shifts
