"""Things worn on the head: drawn per clip from `worn.*` (conf/worn/), fitted to the body's own head
in the rest pose and carried by it. Each kind is one module here (glasses, hats), drawn from its
own seed. A hat also acts on the scalp hair: `press` hides the hair under it.

A see-through part (a lens) is a thin surface of known straight-through transmittance: alpha over
it is 1 minus the mean of that transmittance over R, G and B at the angle it is seen (the store's
alpha rule, docs/store.md); what bends light on its way through is not modelled and recorded as
`refracts: false`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

import dataclasses
import functools
import hashlib
import json

from assets import stage
from assets.clothing import fabric
from assets.hair import face as face_hair
from assets.shapes import Mesh, SceneObject
from assets.worn import glasses, hats
from core import ranges, seeds

WEARERS = ("anny",)     # bodies that know where their eyes open (assets.body.PosedBody.face_sites)
FRAMES = ("metal", "acetate")
LENSES = ("clear", "tinted", "sun", "mirrored")
HATS = ("beanie", "cap", "brimmed")
SKIP = {"share", "frames", "lenses", "metal", "acetate", "lens"}   # sections, not sizes
EYES = [23, 24]         # SMPL-X joints: every body model has them


def slab_reflectance(ior: float) -> float:
    """The share a thin clear slab reflects at normal incidence (both faces, Fresnel)."""
    r0 = ((ior - 1.0) / (ior + 1.0)) ** 2
    return 2.0 * r0 / (1.0 + r0)


def check(cfg: Mapping[str, Any]) -> None:
    """Kinds the weights name exist, and no lens can send back more light than reaches it."""
    ranges.weighted(cfg["hat"]["kinds"], np.random.default_rng(0), "worn.hat.kinds", HATS, "kinds")
    g = cfg["glasses"]
    for key, known in (("frames", FRAMES), ("lenses", LENSES)):
        ranges.weighted(g[key], np.random.default_rng(0), f"worn.glasses.{key}", known, "kinds")
    reflect = slab_reflectance(min(ranges.ends(g["lens"]["ior"], "worn.glasses.lens.ior")))
    for kind in LENSES:
        lens = g["lens"][kind]
        top = max(ranges.ends(lens["transmittance"], f"worn.glasses.lens.{kind}.transmittance"))
        mirror = max(ranges.ends(lens["mirror"], f"worn.glasses.lens.{kind}.mirror"))
        if top + mirror > 1.0 - reflect + 1e-9:
            raise ValueError(f"worn.glasses.lens.{kind}: transmittance up to {top} plus mirror {mirror} exceeds "
                             f"{1 - reflect:.3f}, what a lens of index {min(ranges.ends(g['lens']['ior'], ''))} "
                             f"lets through after its surfaces reflect")


def _lens(c: Mapping[str, Any], kind: str, rng: np.random.Generator) -> dict[str, Any]:
    where = f"worn.glasses.lens.{kind}"
    k = c[kind]
    ior = ranges.number(c["ior"], rng, "worn.glasses.lens.ior")
    tau = ranges.number(k["transmittance"], rng, f"{where}.transmittance")
    tint = np.asarray(ranges.draw(k["tints"], rng, f"{where}.tints"), float)
    mirror = ranges.number(k["mirror"], rng, f"{where}.mirror")
    mirror_rgb = np.asarray(ranges.draw(k["mirror_colours"], rng, f"{where}.mirror_colours"), float) * mirror \
        if mirror > 0 else np.zeros(3)
    # the tint's mean is tau; no channel passes more than its surfaces and coating leave
    rgb = np.minimum(tau * tint / tint.mean(), 1.0 - slab_reflectance(ior) - mirror_rgb)
    return {"kind": "see_through", "name": "lens", "lens": kind, "transmittance": rgb.tolist(),
            "opacity": float(1.0 - rgb.mean()), "ior": ior, "mirror_rgb": mirror_rgb.tolist(),
            "roughness": ranges.number(c["roughness"], rng, "worn.glasses.lens.roughness"),
            "refracts": False, "part": "lens"}


def sample(cfg: Mapping[str, Any], seed: int, body_kind: str) -> dict[str, Any]:
    """{"glasses": record or None, "hat": record or None}: whether the clip wears each kind, and if
    so every size and look drawn, each kind from its own seed. Glasses need a body that knows where
    its eyes open; hats fit any head."""
    return {"glasses": _glasses(cfg["glasses"], seeds.derive(seed, "glasses"), body_kind),
            "hat": _hat(cfg["hat"], seeds.derive(seed, "hat"))}


def _hat(h: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    rng = np.random.default_rng(seed)
    if not rng.uniform() < h["share"]:
        return None
    kind = ranges.weighted(h["kinds"], rng, "worn.hat.kinds", HATS, "kinds")
    sizes = {k: ranges.number(v, rng, f"worn.hat.{kind}.{k}") for k, v in sorted(h[kind].items())}
    material = {"kind": "fabric", "name": "hat", **fabric(h["fabric"][kind], rng, f"worn.hat.fabric.{kind}"),
                "part": "worn"}
    return {"kind": kind, **sizes, "margin": float(h["margin"]), "material": material}


def _glasses(g: Mapping[str, Any], seed: int, body_kind: str) -> dict[str, Any] | None:
    rng = np.random.default_rng(seed)
    if not (rng.uniform() < g["share"] and body_kind in WEARERS):
        return None
    frame = ranges.weighted(g["frames"], rng, "worn.glasses.frames", FRAMES, "kinds")
    lens = ranges.weighted(g["lenses"], rng, "worn.glasses.lenses", LENSES, "kinds")
    sizes = {k: ranges.number(v, rng, f"worn.glasses.{k}") for k, v in sorted(g.items()) if k not in SKIP}
    f = g[frame]
    material = {"kind": "flat", "name": "glasses_frame", "frame": frame,
                "colour": [float(x) for x in ranges.draw(f["colours"], rng, f"worn.glasses.{frame}.colours")],
                "roughness": ranges.number(f["roughness"], rng, f"worn.glasses.{frame}.roughness"),
                "metallic": 1.0 if frame == "metal" else 0.0, "part": "worn"}
    if "coat" in f:
        material["coat"] = ranges.number(f["coat"], rng, f"worn.glasses.{frame}.coat")
    return {"frame": frame, **sizes, "frame_material": material, "lens_material": _lens(g["lens"], lens, rng)}


def _face_hair_points(spec: Any, posed: Any) -> np.ndarray | None:
    """The brows' and lashes' points (rest pose), as assets.hair.objects.face grows them."""
    p = spec.hair.get("face")
    if p is None:
        return None
    skin, rims = posed.face_sites
    fh = face_hair.grow(posed.rest_vertices, posed.faces, skin, rims, p, seeds.derive(spec.hair["seed"], "face"))
    return fh.points.reshape(-1, 3)


def _fit_hat(spec: Any, posed: Any) -> hats.Hat | None:
    """The clip's hat, fitted once: its object and the hair's press both ask for it."""
    h = spec.worn.get("hat")
    if h is None:
        return None
    key = (hashlib.sha1(posed.rest_vertices.tobytes()).hexdigest(), json.dumps(h, sort_keys=True))
    if _fitted.get("key") != key:
        _fitted.update(key=key, hat=hats.fit(posed.rest_vertices, posed.head, posed.rest_joints[EYES], h))
    return _fitted["hat"]


_fitted: dict = {}   # the last hat fitted, by its body's rest shape and its record


def objects(spec: Any, posed: Any) -> list[SceneObject]:
    """The worn things of a clip, in world coordinates, riding on the head."""
    ride = stage.rigid_to_world(posed.head_transform.astype(np.float64))
    out = []
    hat = _fit_hat(spec, posed)
    if hat is not None:
        h = spec.worn["hat"]
        out.append(SceneObject("hat", "worn", "head", ("head", "hair"), Mesh(hat.faces, stage.to_world(hat.vertices)),
                               (h["material"],), transform=ride, stats=hat.record))
    g = spec.worn.get("glasses")
    if g is None or posed.face_sites is None:
        return out
    fit = glasses.fit(posed.rest_vertices, posed.head, posed.face_sites[1], g, _face_hair_points(spec, posed))
    stats = {"frame": g["frame"], "lens": g["lens_material"]["lens"], "opacity": g["lens_material"]["opacity"],
             **fit.record}
    return out + [
        SceneObject("glasses_frame", "worn", "head", ("head",), Mesh(fit.frame_faces, stage.to_world(fit.frame_vertices)),
                    (g["frame_material"],), transform=ride, stats=stats),
        SceneObject("glasses_lenses", "worn", "head", ("head",), Mesh(fit.lens_faces, stage.to_world(fit.lens_vertices)),
                    (g["lens_material"],), transform=ride)]


def press(spec: Any, posed: Any, person: list[SceneObject]) -> list[SceneObject]:
    """The person's objects with the scalp hair hidden under the hat, if the clip wears one: every
    frame's strands taken into the head's rest frame, pressed inside the crown, taken back."""
    hat = _fit_hat(spec, posed)
    if hat is None:
        return person
    ride = stage.rigid_to_world(posed.head_transform.astype(np.float64))
    margin = spec.worn["hat"]["margin"]

    def pressed(world: np.ndarray, t: int | None) -> np.ndarray:
        m = np.eye(4) if t is None else ride[min(t, len(ride) - 1)]
        local = stage.from_world((world.reshape(-1, 3) - m[:3, 3]) @ m[:3, :3])
        back = stage.to_world(hats.press(hat, local, margin)) @ m[:3, :3].T + m[:3, 3]
        return back.reshape(world.shape).astype(np.float32)

    out = []
    for o in person:
        if o.role == "hair" and o.per_frame:   # the simulated scalp strands (brows and lashes lie under no hat)
            posed_at = functools.lru_cache(maxsize=3)(lambda t, f=o.shape.posed: pressed(f(t), t))
            shape = dataclasses.replace(o.shape, rest=pressed(o.shape.rest, None), posed=posed_at)
            o = dataclasses.replace(o, shape=shape, collides_with=o.collides_with + ("hat",))
        out.append(o)
    return out
