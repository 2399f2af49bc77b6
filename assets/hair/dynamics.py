"""Secondary motion: the guide strands simulated against the moving head, body and wind; every
other strand follows its guide.

Guides are integrated with position-based dynamics at `substeps` per frame: explicit velocity
(gravity, air drag towards a turbulent wind, damping), a pull towards the head-rigid groom that
is strong at the root and weak at the tip (hair's bending stiffness: a strand keeps its groomed
shape but its tips swing and lag), inextensibility by follow-the-leader (each segment pulled back
to its length from the root outwards), then collisions: the head as a radial height field in the
head's own frame, the rest of the body per posed frame. The velocity correction of dynamic
follow-the-leader (Müller et al. 2012) keeps the leader-follower bias from damping the swing.
A pre-roll at the first frame's pose lets the hair settle before the clip starts.

Why this and not Blender's hair dynamics: Blender 5 has no particle-hair cloth solver for the new
Curves objects, and none of the maintained strand simulators (none ships on PyPI for Python 3.11
with numpy<2) collide with a posed body mesh; a few hundred guides in numpy cost well under a
second per clip. Children keep the groom's detail: each adds its guide's displacement, in the
head's frame, to its own rest shape, then is pushed out of the head and body itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from assets.hair.field import BodyField, HeadField, normalize

_G = np.array([0.0, -9.81, 0.0])


def _apply(m: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ m[:3, :3].T + m[:3, 3]


def _invert(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = m[:3, :3].T
    out[:3, 3] = -m[:3, :3].T @ m[:3, 3]
    return out


class Wind:
    """A uniform gusting wind plus a few travelling Fourier modes of turbulence (m/s)."""

    def __init__(self, w: Mapping[str, Any], rng: np.random.Generator):
        az, el = np.radians(float(w["azimuth_deg"])), np.radians(float(w["elevation_deg"]))
        self.direction = np.array([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)])
        self.speed, self.gust = float(w["speed"]), float(w["gust"])
        self.hz, self.turb = float(w["gust_hz"]), float(w["turbulence"])
        self.phase = rng.uniform(0, 2 * np.pi, 2)
        k = 2 * np.pi / float(w["turbulence_scale"])
        self.k = normalize(rng.standard_normal((3, 3))) * k            # wave vectors
        self.amp = normalize(rng.standard_normal((3, 3)))              # mode directions
        self.omega = 2 * np.pi * self.hz * rng.uniform(0.5, 2.0, 3)
        self.mode_phase = rng.uniform(0, 2 * np.pi, 3)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        if self.speed == 0:
            return np.zeros_like(x)
        g = 1 + self.gust * (0.6 * np.sin(2 * np.pi * self.hz * t + self.phase[0])
                             + 0.4 * np.sin(2 * np.pi * 2.3 * self.hz * t + self.phase[1]))
        mean = self.speed * max(g, 0.0) * self.direction
        waves = np.sin(x @ self.k.T + self.omega * t + self.mode_phase)    # (..., 3)
        return mean + self.speed * self.turb * (waves @ self.amp) / np.sqrt(3)


@dataclass(frozen=True)
class Body:
    """The posed body below the head, per frame, to collide with."""
    vertices: np.ndarray     # (T, V, 3) posed
    faces: np.ndarray
    keep: np.ndarray         # (V,) bool: not the head
    joints: np.ndarray       # (T, J, 3)
    parents: np.ndarray      # (J,) the kinematic tree
    reach: float
    margin: float
    _fields: dict = field(default_factory=dict, compare=False, repr=False)

    def field(self, t: int) -> BodyField:
        """Frame t's collider, built once: the simulation and the posing of every strand share it."""
        if t not in self._fields:
            self._fields[t] = BodyField(self.vertices[t], self.faces, self.keep, self.joints[t], self.parents,
                                        self.reach)
        return self._fields[t]


def simulate(guides: np.ndarray, head_transform: np.ndarray, head: HeadField, head_margin: float,
             body: Body, params: Mapping[str, Any], fps: float, seed: int,
             progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Guide strands (G, P, 3) in the rest frame -> their motion (T, G, P, 3) in the posed frame."""
    p = params
    rng = np.random.default_rng(seed)
    wind = Wind(p["wind"], rng)
    T = len(head_transform)
    H = head_transform.astype(np.float64)
    rest = guides.astype(np.float64)
    G, P = rest.shape[:2]
    seg = np.linalg.norm(np.diff(rest, axis=1), axis=-1)                 # (G, P-1)
    u = np.linspace(0.0, 1.0, P)[None, :, None]
    n_sub = int(p["substeps"])
    dt = 1.0 / (fps * n_sub)
    # Per-substep pull towards the groom, from the root's to the tip's.
    k = (p["stiffness_root"] * (1 - u) ** 2 + p["stiffness_tip"] * (1 - (1 - u) ** 2))
    damp = np.exp(-float(p["damping"]) * dt)
    drag, ftl = float(p["drag"]), float(p["ftl_damping"])

    x = _apply(H[0], rest)
    v = np.zeros_like(x)
    out = np.empty((T, G, P, 3), np.float32)
    n_pre = int(round(float(p["preroll_s"]) * fps))
    clock = -n_pre / fps
    for frame in range(-n_pre, T):
        t = max(frame, 0)
        prev = max(frame - 1, 0)
        bf = body.field(t)
        for s in range(n_sub):
            a = (s + 1) / n_sub
            m = (1 - a) * H[prev] + a * H[t]       # near-rigid between frames a substep apart
            target = _apply(m, rest)
            clock += dt
            v = v * damp + dt * (_G + drag * (wind(x, clock) - v))
            old = x
            y = x + dt * v
            y = y + k * (target - y)
            y[:, 0] = target[:, 0]
            # Follow-the-leader: each point back at its segment length from the one before.
            corr = np.zeros_like(y)
            for i in range(1, P):
                want = y[:, i - 1] + seg[:, i - 1, None] * normalize(y[:, i] - y[:, i - 1])
                corr[:, i] = want - y[:, i]
                y[:, i] = want
            # Collisions: the head in its own frame, then the body.
            inv = _invert(m)
            local, _ = head.push_out(_apply(inv, y), head_margin)
            y = _apply(m, local)
            y, _ = bf.push_out(y, body.margin)
            y[:, 0] = target[:, 0]
            v = (y - old) / dt
            v[:, :-1] -= ftl * corr[:, 1:] / dt
            x = y
        if frame >= 0:
            out[frame] = x
            if progress:
                progress(frame)
    return out


@dataclass(frozen=True)
class Motion:
    """Every strand at every frame, computed on demand from the guides' simulated displacement."""
    rest: np.ndarray              # (S, P, 3) rest frame
    guides: np.ndarray            # (G,) strand indices of the guides
    owner: np.ndarray             # (S,) index into `guides` of each strand's guide
    guide_offset: np.ndarray      # (T, G, P, 3) guide displacement in the head's frame
    head_transform: np.ndarray    # (T, 4, 4)
    head: HeadField
    head_margin: float
    body: Body

    @property
    def n_frames(self) -> int:
        return len(self.head_transform)

    def strands(self, t: int) -> np.ndarray:
        """(S, P, 3) float32 posed strands at frame t."""
        local = self.rest + self.guide_offset[t][self.owner]
        local[:, 1:] = self.head.push_out(local[:, 1:], self.head_margin)[0]
        m = self.head_transform[t].astype(np.float64)
        world = _apply(m, local)
        bf = self.body.field(t)
        tips = world[:, 1:]
        tips[...], hit = bf.push_out(tips, self.body.margin)
        # Again where pushed: a push out of one body part (an arm) can land in its neighbour (the chest).
        tips[hit] = bf.push_out(tips[hit], self.body.margin)[0]
        return world.astype(np.float32)


def move(rest: np.ndarray, guides: np.ndarray, owner: np.ndarray, head_transform: np.ndarray,
         head: HeadField, head_margin: float, body: Body, params: Mapping[str, Any], fps: float,
         seed: int) -> Motion:
    """Simulate the guides of a groom and bind every strand to its guide's motion."""
    rest = np.asarray(rest, dtype=np.float64)
    sim = simulate(rest[guides], head_transform, head, head_margin, body, params, fps, seed)
    inv = np.stack([_invert(m) for m in head_transform.astype(np.float64)])
    local = np.einsum("tij,tgpj->tgpi", inv[:, :3, :3], sim.astype(np.float64)) + inv[:, None, None, :3, 3]
    offset = (local - rest[guides][None]).astype(np.float32)
    offset[:, :, 0] = 0.0          # roots ride the scalp exactly
    return Motion(rest, np.asarray(guides), np.asarray(owner), offset, head_transform, head, head_margin, body)
