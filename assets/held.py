"""Things held in one hand (a phone, a cup or mug, a book or tablet), carried by the wrist, and the
motion that uses each (a call, drinking, reading: assets.motions.HOLDING).

A clip holding something is given that thing's motion in place of the one drawn by weight, its
holding arm the hand it is in. Each thing is built in the hand's rest frame (SMPL-X T-pose: the
left hand's fingers along +X, the palm facing down -Y, the thumb forward +Z; the right hand's
mirrored in X) against the palm: the palm's centre is found on the body's own hand, between the
wrist and the middle finger's root, on the skin of its underside, and the thing lies `gap` off it.
The wrist's rigid motion (PosedBody.hand_transform) carries it through every frame. The fingers
curl by the motion's `grip`; they are not fitted round the thing, and may pass into its edges.

A phone lies along the fingers, its screen to the palm (at the ear, the screen faces the cheek); a
cup or mug stands across the palm, its axis along the thumb, its side in the palm; a book or tablet
lies on the upturned palm, its spine along the fingers.

A hot drink steams (a share of cups and mugs, conf/held `steam`): puffs rise from its surface
(assets.volumes) and, carried off by the air, trail behind the cup as it moves. Steam is matted
with the person who holds it (foreground, the `volume` coverage group).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from assets import motions, stage, volumes
from assets.shapes import Mesh, SceneObject
from assets.worn.mesh import join, loft, tube
from core import ranges, seeds

KINDS = ("phone", "cup", "mug", "book", "tablet")
MOTION = {"phone": "phone_call", "cup": "drink", "mug": "drink", "book": "read", "tablet": "read"}
WRIST, MIDDLE_ROOT = (20, 21), (28, 43)    # SMPL-X joints per side: the wrist, the middle finger's root
SIZES = {"phone": ("length", "width", "thickness", "corner"), "cup": ("height", "radius", "wall", "taper"),
         "mug": ("height", "radius", "wall", "taper", "handle"), "book": ("length", "width", "thickness", "corner"),
         "tablet": ("length", "width", "thickness", "corner")}


def check(cfg: Mapping[str, Any]) -> None:
    ranges.weighted(cfg["kinds"], np.random.default_rng(0), "held.kinds", KINDS, "kinds")


def sample(cfg: Mapping[str, Any], seed: int, motion_cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """Whether the clip holds something (`share`), and if so what, its sizes, its look, and the
    motion that uses it (its params from motion_cfg's ranges, its holding arm drawn here)."""
    rng = np.random.default_rng(seed)
    if not rng.uniform() < cfg["share"]:
        return None
    kind = ranges.weighted(cfg["kinds"], rng, "held.kinds", KINDS, "kinds")
    c = cfg[kind]
    sizes = {k: ranges.number(c[k], rng, f"held.{kind}.{k}") for k in SIZES[kind]}
    colour = [float(x) for x in ranges.draw(c["colours"], rng, f"held.{kind}.colours")]
    material = {"kind": "flat", "name": kind, "colour": colour, "part": "held",
                "roughness": ranges.number(c["roughness"], rng, f"held.{kind}.roughness")}
    name = MOTION[kind]
    params = motions.sample_params(name, seeds.rng(seed, name), motion_cfg["ranges"])
    steam = None
    if kind in ("cup", "mug") and rng.uniform() < cfg["steam"]["share"]:
        steam = {**volumes.sample(cfg["steam"], rng, "held.steam"), "preroll_s": float(cfg["steam"]["preroll_s"])}
    return {"kind": kind, **sizes, "gap": float(cfg["gap"]), "material": material,
            "motion": {"kind": "procedural", "name": name, "params": params}, "steam": steam}


def _box(length: float, width: float, thickness: float, corner: float) -> tuple[np.ndarray, np.ndarray]:
    """A box with rounded corners in its plane: length along X, width along Z, thickness along Y,
    its underside on y = 0, centred in X and Z."""
    a = np.linspace(0.0, 0.5 * np.pi, 5)
    r = min(corner, 0.49 * min(length, width))
    arcs = []
    for cx, cz, start in ((1, 1, 0.0), (-1, 1, 0.5 * np.pi), (-1, -1, np.pi), (1, -1, 1.5 * np.pi)):
        centre = np.array([cx * (0.5 * length - r), cz * (0.5 * width - r)])
        arcs.append(centre + r * np.stack([np.cos(start + a), np.sin(start + a)], 1))
    outline = np.concatenate(arcs)
    rings = np.stack([np.column_stack([outline[:, 0], np.full(len(outline), y), outline[:, 1]])
                      for y in (0.0, thickness)])
    return loft(rings, closed=False)


def _vessel(p: Mapping[str, Any], handle: bool) -> tuple[np.ndarray, np.ndarray]:
    """A cup (or a mug, with a handle): a tapered open shell with a floor, its axis along Y from
    y = 0 (the base) to `height`, its wall `wall` thick; the handle out along +X."""
    a = np.linspace(0.0, 2 * np.pi, 32, endpoint=False)
    ring = np.stack([np.cos(a), np.zeros_like(a), np.sin(a)], 1)
    h, r, w, taper = p["height"], p["radius"], p["wall"], p["taper"]
    outer = [(0.0, r * (1 - taper)), (h, r)]
    profile = [(0.0, 0.0)] + outer + [(h, r - w), (w, (r - w) * (1 - taper)), (w, 0.0)]
    rings = np.stack([ring * max(rad, 1e-4) + [0.0, y, 0.0] for y, rad in profile])
    parts = [loft(rings, closed=False, caps=False)]
    if handle:
        t = np.linspace(-0.5 * np.pi, 0.5 * np.pi, 12)
        reach = p["handle"]
        path = np.column_stack([r + reach * np.cos(t) - 0.002, 0.5 * h + 0.32 * h * np.sin(t), np.zeros_like(t)])
        parts.append(tube(path, 0.006, 0.004, np.array([0.0, 0.0, 1.0]), closed=False))
    return join(parts)


def _palm(posed: Any, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The palm's centre on the skin (rest pose) and the hand's rest axes (rows: along the fingers,
    out of the palm, the thumb's way)."""
    rj = posed.rest_joints.astype(np.float64)
    wrist, root = rj[WRIST[side]], rj[MIDDLE_ROOT[side]]
    along = (root - wrist) / np.linalg.norm(root - wrist)
    out = np.array([0.0, -1.0, 0.0])
    out -= (out @ along) * along
    out /= np.linalg.norm(out)
    thumb = np.cross(along, out) * (1.0 if side == 0 else -1.0)
    centre = 0.5 * (wrist + root)
    v = posed.rest_vertices.astype(np.float64)
    rel = v - centre
    near = (np.abs(rel @ along) < 0.02) & (np.abs(rel @ thumb) < 0.015)
    skin = centre + float((rel[near] @ out).max(initial=0.0)) * out     # the palm's skin under the centre
    return skin, np.stack([along, out, thumb])


def shape(p: Mapping[str, Any], palm: np.ndarray, axes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The held thing's mesh in the body's rest frame, against the palm at `palm` with the hand's
    `axes` (rows: along the fingers, out of the palm, the thumb's way)."""
    kind = p["kind"]
    along, out, thumb = axes
    if kind in ("phone", "book", "tablet"):
        v, f = _box(p["length"], p["width"], p["thickness"], p["corner"])
        # box X along the fingers, Y out of the palm, Z the thumb's way; a book's spine in the palm
        local = v @ np.stack([along, out, thumb])
        shift = 0.25 * p["length"] if kind == "phone" else 0.0
        return palm + p["gap"] * out + shift * along + local, f
    v, f = _vessel(p, handle=kind == "mug")
    # the vessel's axis along the thumb, its side in the palm (a mug's handle on the far side)
    local = v @ np.stack([out, thumb, np.cross(out, thumb)])
    return _base(p, palm, axes) + local, f


def _base(p: Mapping[str, Any], palm: np.ndarray, axes: np.ndarray) -> np.ndarray:
    """A cup's or mug's base centre (its rim's is `height` along the thumb from it)."""
    _, out, thumb = axes
    return palm + (p["gap"] + p["radius"]) * out - 0.5 * p["height"] * thumb


def objects(spec: Any, posed: Any) -> list[SceneObject]:
    """The held thing, if any, riding on its hand's wrist."""
    p = spec.held
    if not p:
        return []
    side = int(p["motion"]["params"]["arm"])
    palm, axes = _palm(posed, side)
    verts, faces = shape(p, palm, axes)
    ride = stage.rigid_to_world(posed.hand_transform[:, side].astype(np.float64))
    stats = {"kind": p["kind"], "hand": ("left", "right")[side], "motion": p["motion"]["name"]}
    out = [SceneObject(p["kind"], "held", "hand", ("hand",), Mesh(faces, stage.to_world(verts)), (p["material"],),
                       transform=ride, stats=stats)]
    if p.get("steam"):   # from the drink's surface, a little below the rim
        surface = stage.to_world((_base(p, palm, axes) + 0.85 * p["height"] * axes[2])[None])[0]
        source = np.einsum("tij,j->ti", ride[:, :3, :3], surface) + ride[:, :3, 3]
        m = p["steam"]
        puffs, steam_stats = volumes.puffs(m, source, spec.n_frames, spec.fps, m["preroll_s"])
        out.append(SceneObject("steam", "effect", "simulated", (), puffs, (m["material"],), stats=steam_stats))
    return out
