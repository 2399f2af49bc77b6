"""A clip's scene from its resolved spec: the objects, the camera and the lights, in numpy.

The renderer is a pure function of this (and the spec's render settings). Each kind of object is
made by its own module, listed in PERSON (the person and what they wear) in the order they are
posed; the set is placed last, from the camera. Adding a kind of object is its module and its
line here (a hat also hides the hair under it: `worn.press`, once every object is made; a scarf is
draped over all the person's meshes by the cloth solver: `worn.drape`, last). Effects in the air
are placed once the camera is (they fill its view): in front of the person foreground, behind it
part of the set. The people beside the target (spec.people) are made the same way, each from their
own components, once the camera framing the target tells the layout where front is
(assets.people); every object records whose it is.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from assets import body, camera, clothing, effects, held, lighting, motions, people, stage, worn
from assets.hair import objects as hair_objects
from assets.shapes import Curves, Puffs, SceneObject

PERSON_FIELDS = ("body", "motion", "hair", "clothing", "worn", "held")   # a person's components in the clip spec
PERSON: tuple[Callable[[Any, body.PosedBody], list[SceneObject]], ...] = (
    body.objects,          # the skinned body: skin, eyes, mouth
    clothing.objects,      # top and bottom
    hair_objects.scalp,    # simulated scalp strands
    hair_objects.face,     # brows and lashes on the head
    worn.objects,          # hats, glasses, headphones and earrings on the head
    held.objects,          # a phone, cup, mug, book or tablet in one hand
)


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    camera: camera.Placement
    lights: lighting.Rig
    body_vertices: int
    seconds: dict = dataclasses.field(default_factory=dict)   # what making some of it took (`people`: the others)

    def parts(self) -> tuple[str, ...]:
        """Every coverage group the scene's objects write."""
        return tuple(dict.fromkeys(p for o in self.objects for p in o.parts))

    def instances(self) -> tuple[str, ...]:
        """Each person's own coverage group, in the people's order (none unless instances are written)."""
        return tuple(dict.fromkeys(m["instance"] for o in self.objects for m in o.materials if m.get("instance")))

    def volume_owner(self) -> str | None:
        """The person whose coverage takes the volumes' (which no shader writes): the one person
        owning a volume when every volume in the foreground is theirs, else nobody."""
        owners = {m.get("instance") for o in self.objects if isinstance(o.shape, Puffs) and not o.plate for m in o.materials}
        return next(iter(owners)) if len(owners) == 1 else None


def person_objects(spec: Any, posed: body.PosedBody) -> list[SceneObject]:
    """A posed person and everything on them."""
    made = worn.press(spec, posed, [o for make in PERSON for o in make(spec, posed)])   # hair under a hat
    return made + worn.drape(spec, posed, made)    # a scarf, simulated over the rest


def pose(spec: Any) -> body.PosedBody:
    motion = motions.motion_frames(spec.motion, spec.n_frames, spec.fps)
    return body.pose_body(spec.body["model"], spec.body["betas"], motion, spec.body)


def others(spec: Any, target: body.PosedBody, cam: camera.Placement) -> list[tuple[Any, body.PosedBody]]:
    """The people beside the target (spec.people.others), each as a clip spec of their own and
    their posed body, placed by the layout and pushed apart until every pair, with their clothing,
    keeps the clearance in every frame (assets.people)."""
    crowd = spec.people["others"]
    if not crowd:
        return []
    world = lambda p: stage.to_world(p.vertices)  # noqa: E731
    floor, joints = float(world(target)[..., 2].min()), stage.to_world(target.joints)
    views, posed = [], []
    for p in crowd:
        view = dataclasses.replace(spec, **{k: p[k] for k in PERSON_FIELDS})
        own = pose(view)
        speed = float(p["motion"].get("params", {}).get("speed", 0.0)) if p["place"]["role"] == "walker" else 0.0
        m = people.placement(p["place"], stage.to_world(own.joints), float(world(own)[..., 2].min()), joints, floor,
                             np.asarray(cam.record["position"]), speed)
        views.append(view)
        posed.append(people.place(own, m))
    solid = lambda v, b: np.concatenate([world(b)] + [o.shape.vertices for o in clothing.objects(v, b)], axis=1)  # noqa: E731
    points = [solid(spec, target)] + [solid(v, b) for v, b in zip(views, posed)]
    shifts = people.separate(points, [stage.to_world(b.joints)[:, 0].mean(0) for b in [target, *posed]],
                             spec.people["clearance"])
    return [(v, people.place(b, np.repeat(stage.translation(d)[None], spec.n_frames, axis=0)))
            for v, b, d in zip(views, posed, shifts[1:])]


def _owned(objects: list[SceneObject], k: int, instances: bool) -> list[SceneObject]:
    """Person k's objects, named and marked as theirs; with `instances`, their materials write the
    person's own coverage group too."""
    return [dataclasses.replace(o, name=o.name if k == 0 else f"person{k}.{o.name}", person=k,
                                materials=tuple({**m, "instance": f"person{k}"} for m in o.materials) if instances
                                else o.materials) for o in objects]


def build(spec: Any) -> Scene:
    """The scene of a ClipSpec: the posed people and everything on them, framed and lit."""
    posed = pose(spec)
    target = person_objects(spec, posed)
    vertices, joints = stage.to_world(posed.vertices), stage.to_world(posed.joints)
    # What rises above the crown at rest (the hair) is framed too.
    crown = float(stage.to_world(posed.rest_vertices)[:, 2].max())
    rest_tops = [float(o.shape.rest[..., 2].max()) for o in target if isinstance(o.shape, Curves) and o.transform is None]
    top_extra = max([0.0] + [t - crown for t in rest_tops])
    view = motions.view_deg(spec.motion)
    c = spec.cycles
    cam = camera.place(vertices, joints, top_extra, spec.camera, c["width"], c["height"], spec.fps, view)
    start = time.perf_counter()
    crowd = others(spec, posed, cam)
    standing = [stage.to_world(b.joints)[:, 0].mean(0) for p, (_, b) in zip(spec.people["others"], crowd)
                if p["place"]["role"] != "walker"]
    if standing:   # the aim moves sideways towards the middle of the people standing with the target (a two-shot)
        side = np.cross(stage.UP, np.asarray(cam.record["position"]) - np.asarray(cam.record["target"]))
        side /= max(np.linalg.norm(side), 1e-9)
        middle = np.mean([joints[:, 0].mean(0), *standing], axis=0) - joints[:, 0].mean(0)
        cam = camera.place(vertices, joints, top_extra, spec.camera, c["width"], c["height"], spec.fps, view,
                           spec.people["framing"] * float(np.dot(middle, side)) * side)
    everyone = [target] + [person_objects(v, b) for v, b in crowd]
    seconds = {"people": time.perf_counter() - start} if crowd else {}
    everyone = [_owned(objects, k, "instances" in spec.outputs) for k, objects in enumerate(everyone)]
    # The floor under everyone's feet; a backdrop as far behind the furthest person as behind a lone one.
    away = np.asarray(cam.record["target"]) - np.asarray(cam.record["position"])
    away[2] = 0.0
    away /= max(np.linalg.norm(away), 1e-9)
    behind = max([0.0] + [float(np.dot(stage.to_world(b.joints)[:, 0].mean(0) - joints[:, 0].mean(0), away)) for _, b in crowd])
    feet = np.concatenate([vertices] + [stage.to_world(b.vertices) for _, b in crowd], axis=1)
    st = lighting.set_objects(spec.lighting["set"], feet, np.asarray(cam.record["target"]),
                              np.asarray(cam.record["position"]), behind)
    air = effects.objects(spec, cam, vertices)    # in front of the target: foreground; behind: the set
    front, back = [o for o in air if not o.plate], [o for o in air if o.plate]
    nobody = tuple(dataclasses.replace(o, person=None) for o in front + st + back)   # the set and the air
    return Scene(tuple(o for objects in everyone for o in objects) + nobody, cam,
                 lighting.place(spec.lighting, joints, view), int(posed.vertices.shape[1]), seconds)
