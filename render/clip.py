"""render_clip(spec): the renderer as a pure function of a ClipSpec.

The scene (objects, camera, lights) comes from assets.scene, the pictures from one Cycles scene
(render.scene), and the result is the spec's outputs in the store's dtypes, what each records of
the clip beside its declaration, and what the render itself resolved (device, camera, seconds).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from assets import scene as scenes
from render.scene import build_and_render
from render.spec import ClipSpec


@dataclass(frozen=True)
class RenderedClip:
    arrays: dict[str, np.ndarray]   # every output of the spec: fgr uint8 (T,H,W,3), alpha uint16 (T,H,W), ...
    attrs: dict[str, dict]          # per output, what it records beside its declaration (a legend, ...)
    info: dict                      # device, Cycles seconds per pass, resolved camera, the objects' records


def render_clip(spec: ClipSpec, threads: int = 0, on_frame: Callable[[int], None] | None = None) -> RenderedClip:
    """The clip's arrays and render record; `on_frame(n)` hears of each finished frame."""
    scene = scenes.build(spec)
    out = build_and_render(spec, scene, threads=threads, on_frame=on_frame)
    hair = {k: v for o in scene.objects if o.role == "hair" and o.person == 0 for k, v in o.stats.items()}   # the target's
    info = {"device": out.device, "cycles_seconds": sum(out.seconds.values()), "pass_seconds": out.seconds,
            "camera": out.camera, "pose_seconds": out.pose_seconds, "hair": hair, "body_vertices": scene.body_vertices,
            "objects": [{"name": o.name, "role": o.role, "rides_on": o.rides_on, "collides_with": list(o.collides_with),
                         "parts": list(o.parts), "plate": o.plate, "person": o.person,
                         **({"stats": o.stats} if o.stats else {})}
                        for o in scene.objects]}
    return RenderedClip(out.arrays, out.attrs, info)
