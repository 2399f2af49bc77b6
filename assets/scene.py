"""A clip's scene from its resolved spec: the objects, the camera and the lights, in numpy.

The renderer is a pure function of this (and the spec's render settings). Each kind of object is
made by its own module, listed in PERSON (the person and what they wear) in the order they are
posed; the set is placed last, from the camera. Adding a kind of object is its module and its
line here (a hat also hides the hair under it: `worn.press`, once every object is made; a scarf is
draped over all the person's meshes by the cloth solver: `worn.drape`, last). Effects in the air
are placed once the camera is (they fill its view): in front of the person foreground, behind it
part of the set.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from assets import body, camera, clothing, effects, held, lighting, motions, stage, worn
from assets.hair import objects as hair_objects
from assets.shapes import Curves, SceneObject

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

    def parts(self) -> tuple[str, ...]:
        """Every coverage group the scene's objects write."""
        return tuple(dict.fromkeys(p for o in self.objects for p in o.parts))


def build(spec: Any) -> Scene:
    """The scene of a ClipSpec: the posed body and everything on it, framed and lit."""
    motion = motions.motion_frames(spec.motion, spec.n_frames, spec.fps)
    posed = body.pose_body(spec.body["model"], spec.body["betas"], motion, spec.body)
    person = worn.press(spec, posed, [o for make in PERSON for o in make(spec, posed)])   # hair under a hat
    person += worn.drape(spec, posed, person)    # a scarf, simulated over the rest
    vertices, joints = stage.to_world(posed.vertices), stage.to_world(posed.joints)
    # What rises above the crown at rest (the hair) is framed too.
    crown = float(stage.to_world(posed.rest_vertices)[:, 2].max())
    rest_tops = [float(o.shape.rest[..., 2].max()) for o in person if isinstance(o.shape, Curves) and o.transform is None]
    top_extra = max([0.0] + [t - crown for t in rest_tops])
    view = motions.view_deg(spec.motion)
    c = spec.cycles
    cam = camera.place(vertices, joints, top_extra, spec.camera, c["width"], c["height"], spec.fps, view)
    st = lighting.set_objects(spec.lighting["set"], vertices, np.asarray(cam.record["target"]),
                              np.asarray(cam.record["position"]))
    air = effects.objects(spec, cam, vertices)    # in front: foreground; behind: the set
    front, behind = [o for o in air if not o.plate], [o for o in air if o.plate]
    return Scene(tuple(person + front + st + behind), cam, lighting.place(spec.lighting, joints, view),
                 int(posed.vertices.shape[1]))
