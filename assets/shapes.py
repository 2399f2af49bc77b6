"""What a scene object is: its shape, its motion, its materials and its place in the passes.

Every kind of object (the body, its garments, scalp hair, brows and lashes, the set; worn and held
things next) is made by its own module under assets/ as `SceneObject`s in world coordinates
(assets.stage), and the renderer builds whatever list it is given: it knows materials by their
kind and shapes by their type, never objects by name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

ROLES = ("person", "hair", "worn", "held", "set", "effect")
RIDES_ON = ("body", "head", "hand", "static", "simulated")


@dataclass(frozen=True)
class Mesh:
    """Triangles whose vertices are given per frame (T,V,3), or at rest (V,3) when the object is
    carried rigidly (`SceneObject.transform`)."""
    faces: np.ndarray
    vertices: np.ndarray
    uv: np.ndarray | None = None              # (F,3,2) texture coordinates per corner
    material_index: np.ndarray | None = None  # (F,) which of the object's materials each face wears


@dataclass(frozen=True)
class Curves:
    """Strands: their rest points (S,P,3) and, when they move on their own, the points of frame t
    (`posed`, computed when asked: simulated hair is posed frame by frame)."""
    rest: np.ndarray
    radius: np.ndarray                        # (S,P) metres
    melanin: np.ndarray                       # (S,) per strand (a dyed head: a brightness factor)
    posed: Callable[[int], np.ndarray] | None = None


@dataclass(frozen=True)
class Puffs:
    """Volume matter (steam, smoke) as soft spheres given per frame: centres (T,N,3), radius (T,N)
    and density at the centre (T,N, per metre), falling to 0 at the edge as (1 - (d/r)^2)^2; a
    puff not there has density 0 (assets.volumes)."""
    centres: np.ndarray
    radius: np.ndarray
    density: np.ndarray


@dataclass(frozen=True)
class SceneObject:
    name: str
    role: str                      # ROLES
    rides_on: str                  # RIDES_ON: what carries it through the clip
    collides_with: tuple[str, ...]  # what it was kept outside of when it was posed (a record)
    shape: Mesh | Curves | Puffs
    materials: tuple[dict, ...]    # render/materials.py kinds; each names its coverage group ("part", or None)
    transform: np.ndarray | None = None   # (T,4,4) rigid motion of a shape given at rest; (1,4,4): fixed
    plate: bool = False            # the background plate sees it (the set); the person's objects are not in it
    person: int | None = 0         # whose it is: 0 the target, k the clip spec's people.others[k - 1]; None: nobody's
    stats: dict = field(default_factory=dict)   # what the clip's metadata keeps of it

    @property
    def parts(self) -> tuple[str, ...]:
        """The coverage groups this object's materials write in the coverage pass."""
        return tuple(dict.fromkeys(m["part"] for m in self.materials if m.get("part")))

    @property
    def per_frame(self) -> bool:
        """Whether its points are set anew each frame (simulated strands, puffs), not keyed once."""
        return isinstance(self.shape, Puffs) or (isinstance(self.shape, Curves) and self.shape.posed is not None)

    def points(self, t: int) -> np.ndarray:
        """Its points (N,3) in world coordinates at frame t (vertices or strand points, flattened)."""
        s = self.shape
        if isinstance(s, Puffs):
            return s.centres[t]
        if isinstance(s, Curves):
            p = s.posed(t) if s.posed is not None else s.rest
        else:
            p = s.vertices if s.vertices.ndim == 2 else s.vertices[t]
        p = p.reshape(-1, 3)
        if self.transform is not None:
            m = self.transform[min(t, len(self.transform) - 1)]
            p = p @ m[:3, :3].T + m[:3, 3]
        return p
