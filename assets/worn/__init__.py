"""Things worn: drawn per clip from `worn.*` (conf/worn/), each kind one module here, drawn from its
own seed. On the head (glasses, hats, headphones, earrings): fitted to the body's own head in the
rest pose and carried by it; hats and headphones also act on the scalp hair (`press` keeps it out
of them). Round the neck (a scarf): draped by Blender's cloth solver over the person's other
meshes (`drape`), frame by frame.

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
import time

from assets import stage
from assets.clothing import fabric
from assets.hair import face as face_hair
from assets.hair.field import vertex_normals
from assets.shapes import Mesh, SceneObject
from assets import cloth
from assets.worn import earrings, glasses, hats, headphones, scarf
from core import ranges, seeds

WEARERS = ("anny",)     # bodies that know their eyes and ears (assets.body.PosedBody.face_sites, ears)
FRAMES = ("metal", "acetate")
LENSES = ("clear", "tinted", "sun", "mirrored")
HATS = ("beanie", "cap", "brimmed")
SKIP = {"share", "frames", "lenses", "metal", "acetate", "lens"}   # sections, not sizes
KINDS = ("glasses", "hat", "headphones", "earrings", "scarf")   # each drawn from its own seed
SHEER = ("chiffon", "tulle", "lace")             # scarf fabrics light passes through
FABRICS = SHEER + ("silk", "knit")
EYES = [23, 24]         # SMPL-X joints: every body model has them


def slab_reflectance(ior: float) -> float:
    """The share a thin clear slab reflects at normal incidence (both faces, Fresnel)."""
    r0 = ((ior - 1.0) / (ior + 1.0)) ** 2
    return 2.0 * r0 / (1.0 + r0)


def check(cfg: Mapping[str, Any]) -> None:
    """Kinds the weights name exist, and no lens can send back more light than reaches it."""
    ranges.weighted(cfg["hat"]["kinds"], np.random.default_rng(0), "worn.hat.kinds", HATS, "kinds")
    ranges.weighted(cfg["earrings"]["kinds"], np.random.default_rng(0), "worn.earrings.kinds", earrings.KINDS, "kinds")
    ranges.weighted(cfg["scarf"]["fabrics"], np.random.default_rng(0), "worn.scarf.fabrics", FABRICS, "fabrics")
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
    """{kind: record or None} for each of KINDS: whether the clip wears it, and if so every size and
    look drawn, each kind from its own seed. Glasses, headphones and earrings need a body that knows
    its eyes and ears; hats fit any head; headphones are not worn over a hat."""
    hat = _hat(cfg["hat"], seeds.derive(seed, "hat"))
    phones = _headphones(cfg["headphones"], seeds.derive(seed, "headphones"), body_kind)
    return {"glasses": _glasses(cfg["glasses"], seeds.derive(seed, "glasses"), body_kind), "hat": hat,
            "headphones": phones if hat is None else None,
            "earrings": _earrings(cfg["earrings"], seeds.derive(seed, "earrings"), body_kind),
            "scarf": _scarf(cfg["scarf"], seeds.derive(seed, "scarf"))}


def _scarf(c: Mapping[str, Any], seed: int) -> dict[str, Any] | None:
    rng = np.random.default_rng(seed)
    if not rng.uniform() < c["share"]:
        return None
    kind = ranges.weighted(c["fabrics"], rng, "worn.scarf.fabrics", FABRICS, "fabrics")
    sizes = _sizes(c, rng, "worn.scarf", {"share", "fabrics", "sheer", "translucency", "fabric", "solver"})
    look = fabric(c["fabric"][kind], rng, f"worn.scarf.fabric.{kind}")
    if kind in SHEER:
        sheer = _sizes(c["sheer"][kind], rng, f"worn.scarf.sheer.{kind}")
        material = {"kind": "sheer", "name": "scarf", "fabric": kind, **look, **sheer,
                    "translucency": ranges.number(c["translucency"], rng, "worn.scarf.translucency"),
                    "refracts": False, "part": "sheer"}
    else:
        material = {"kind": "fabric", "name": "scarf", "fabric": kind, **look, "part": "scarf"}
    solver = {**c["solver"]["common"], **c["solver"][kind]}
    return {"kind": kind, **sizes, "solver": solver, "material": material}


def _sizes(c: Mapping[str, Any], rng: np.random.Generator, where: str, skip=()) -> dict[str, float]:
    return {k: ranges.number(v, rng, f"{where}.{k}") for k, v in sorted(c.items()) if k not in skip}


def _headphones(h: Mapping[str, Any], seed: int, body_kind: str) -> dict[str, Any] | None:
    rng = np.random.default_rng(seed)
    if not (rng.uniform() < h["share"] and body_kind in WEARERS):
        return None
    sizes = _sizes(h, rng, "worn.headphones", {"share", "colours", "roughness", "coat"})
    material = {"kind": "flat", "name": "headphones", "part": "worn",
                "colour": [float(x) for x in ranges.draw(h["colours"], rng, "worn.headphones.colours")],
                "roughness": ranges.number(h["roughness"], rng, "worn.headphones.roughness"),
                "coat": ranges.number(h["coat"], rng, "worn.headphones.coat")}
    return {**sizes, "material": material}


def _earrings(e: Mapping[str, Any], seed: int, body_kind: str) -> dict[str, Any] | None:
    rng = np.random.default_rng(seed)
    if not (rng.uniform() < e["share"] and body_kind in WEARERS):
        return None
    kind = ranges.weighted(e["kinds"], rng, "worn.earrings.kinds", earrings.KINDS, "kinds")
    sizes = _sizes(e[kind], rng, f"worn.earrings.{kind}")
    material = {"kind": "flat", "name": "earrings", "part": "worn", "metallic": 1.0,
                "colour": [float(x) for x in ranges.draw(e["colours"], rng, "worn.earrings.colours")],
                "roughness": ranges.number(e["roughness"], rng, "worn.earrings.roughness")}
    return {"kind": kind, **sizes, "pierce_up": ranges.number(e["pierce_up"], rng, "worn.earrings.pierce_up"),
            "clearance": float(e["clearance"]), "material": material}


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


def _fit(kind: str, spec: Any, posed: Any):
    """The clip's hat or headphones, fitted once: their objects and the hair's press both ask."""
    rec = spec.worn.get(kind)
    if rec is None or (kind == "headphones" and posed.ears is None):
        return None
    key = (hashlib.sha1(posed.rest_vertices.tobytes()).hexdigest(), json.dumps(rec, sort_keys=True))
    if _fitted.get(kind, (None,))[0] != key:
        fitted = hats.fit(posed.rest_vertices, posed.head, posed.rest_joints[EYES], rec) if kind == "hat" else \
            headphones.fit(posed.rest_vertices, posed.head, posed.ears, rec)
        _fitted[kind] = (key, fitted)
    return _fitted[kind][1]


_fitted: dict = {}   # per kind, the last one fitted, by its body's rest shape and its record


def objects(spec: Any, posed: Any) -> list[SceneObject]:
    """The worn things of a clip, in world coordinates, riding on the head."""
    ride = stage.rigid_to_world(posed.head_transform.astype(np.float64))

    def on_head(name: str, vertices: np.ndarray, faces: np.ndarray, material: dict, stats: dict | None = None):
        return SceneObject(name, "worn", "head", ("head",), Mesh(faces, stage.to_world(vertices)), (material,),
                           transform=ride, stats=stats or {})

    out = []
    hat = _fit("hat", spec, posed)
    if hat is not None:
        out.append(dataclasses.replace(on_head("hat", hat.vertices, hat.faces, spec.worn["hat"]["material"], hat.record),
                                       collides_with=("head", "hair")))
    phones = _fit("headphones", spec, posed)
    if phones is not None:
        out.append(dataclasses.replace(on_head("headphones", phones.vertices, phones.faces,
                                               spec.worn["headphones"]["material"], phones.record),
                                       collides_with=("head", "hair")))
    e = spec.worn.get("earrings")
    if e is not None and posed.ears is not None:
        fit = earrings.fit(posed.rest_vertices, posed.ears, e)
        out.append(on_head("earrings", fit.vertices, fit.faces, e["material"], fit.record))
    g = spec.worn.get("glasses")
    if g is None or posed.face_sites is None:
        return out
    fit = glasses.fit(posed.rest_vertices, posed.head, posed.face_sites[1], g, _face_hair_points(spec, posed))
    stats = {"frame": g["frame"], "lens": g["lens_material"]["lens"], "opacity": g["lens_material"]["opacity"],
             **fit.record}
    return out + [on_head("glasses_frame", fit.frame_vertices, fit.frame_faces, g["frame_material"], stats),
                  on_head("glasses_lenses", fit.lens_vertices, fit.lens_faces, g["lens_material"])]


def drape(spec: Any, posed: Any, person: list[SceneObject]) -> list[SceneObject]:
    """The clip's scarf, if it wears one, draped by the cloth solver over the person's meshes (the
    body and its garments), in world coordinates frame by frame."""
    p = spec.worn.get("scarf")
    if p is None:
        return []
    meshes = [o for o in person if isinstance(o.shape, Mesh) and o.shape.vertices.ndim == 3]
    surface = np.concatenate([o.shape.vertices for o in meshes], axis=1)
    joints = stage.to_world(posed.joints)
    verts, faces, pinned = scarf.shape(surface[0], joints[0], p)
    normals = np.concatenate([vertex_normals(o.shape.vertices[0].astype(np.float64), o.shape.faces) for o in meshes])
    verts = scarf.clear_of(verts, surface[0], normals, p["clearance"])
    # what it may touch: the meshes' faces near where it starts, and below it as far as its ends may fall
    lo, hi = verts.min(axis=0) - 0.15, verts.max(axis=0) + 0.15
    lo[2] -= p["length"] / 2
    colliders = []
    for o in meshes:
        v = o.shape.vertices
        near = ((v[0][o.shape.faces] > lo) & (v[0][o.shape.faces] < hi)).all(axis=(1, 2))
        used = np.unique(o.shape.faces[near])
        remap = np.full(len(v[0]), -1)
        remap[used] = np.arange(len(used))
        colliders.append(cloth.Collider(remap[o.shape.faces[near]], v[:, used]))
    goal = scarf.goals(verts[pinned], surface)
    goals = np.repeat(verts[None], spec.n_frames, axis=0)
    goals[:, pinned] = goal
    settle = int(round(p["settle_s"] * spec.fps))
    start = time.perf_counter()
    frames = cloth.simulate(faces, verts, pinned, goals, colliders, spec.fps, settle, p["solver"])
    stats = {"kind": p["kind"], "vertices": len(verts), "pinned": int(pinned.sum()), "settle_frames": settle,
             "simulate_s": round(time.perf_counter() - start, 3)}
    return [SceneObject("scarf", "worn", "simulated", tuple(o.name for o in meshes), Mesh(faces, frames),
                        (p["material"],), stats=stats)]


def press(spec: Any, posed: Any, person: list[SceneObject]) -> list[SceneObject]:
    """The person's objects with the scalp hair kept out of a hat (hidden under it) and headphones
    (under the band, out of the cups), if the clip wears them: every frame's strands taken into the
    head's rest frame, pressed, taken back."""
    hat, phones = _fit("hat", spec, posed), _fit("headphones", spec, posed)
    if hat is None and phones is None:
        return person
    ride = stage.rigid_to_world(posed.head_transform.astype(np.float64))

    def pressed(world: np.ndarray, t: int | None) -> np.ndarray:
        m = np.eye(4) if t is None else ride[min(t, len(ride) - 1)]
        local = stage.from_world((world.reshape(-1, 3) - m[:3, 3]) @ m[:3, :3])
        if hat is not None:
            local = hats.press(hat, local, spec.worn["hat"]["margin"])
        if phones is not None:
            h = spec.worn["headphones"]
            local = headphones.press(phones, local, h["margin"], h["press_falloff"])
        back = stage.to_world(local) @ m[:3, :3].T + m[:3, 3]
        return back.reshape(world.shape).astype(np.float32)

    worn_names = tuple(n for n, f in (("hat", hat), ("headphones", phones)) if f is not None)
    out = []
    for o in person:
        if o.role == "hair" and o.per_frame:   # the simulated scalp strands (brows and lashes lie under neither)
            posed_at = functools.lru_cache(maxsize=3)(lambda t, f=o.shape.posed: pressed(f(t), t))
            shape = dataclasses.replace(o.shape, rest=pressed(o.shape.rest, None), posed=posed_at)
            o = dataclasses.replace(o, shape=shape, collides_with=o.collides_with + worn_names)
        out.append(o)
    return out
