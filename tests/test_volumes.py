"""Steam and smoke: puffs of medium carried by Blender's particle system, alpha 1 - their
transmittance, their coverage group the alpha no surface claims."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from assets import effects, held
from assets.shapes import Puffs, SceneObject
from tests.test_outputs import _plane_scene, spec_of

pytestmark = [pytest.mark.slow, pytest.mark.blender]

STEAM = {"kind": "volume", "name": "steam", "part": "volume", "colour": [0.9, 0.9, 0.9], "anisotropy": 0.3}


def _only(kind: str, kinds: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"{k}: {float(k == kind)}" for k in kinds) + "}"


def test_alpha_through_a_puff_is_one_minus_its_transmittance(cache_dir):
    """One puff of known peak density and radius, lit, in front of the camera: at each pixel alpha
    is 1 - exp(-optical depth along its centre ray), the depth of (1 - (d/r)^2)^2 being
    16/15 density r (1 - b^2/r^2)^(5/2) at distance b from the centre (within 0.01); strictly
    between 0.05 and 0.95 there; labelled `volume`, though no shader writes that group."""
    from render.scene import build_and_render
    spec = spec_of(cache_dir, "clip.seconds=0.125", "camera.shutter=0", "camera.dof_share=0", "outputs.parts=true",
                   "cycles.alpha_samples=64")
    scene, _ = _plane_scene(spec, 3.0, 0.0)
    centre, radius, density = np.array([0.0, 3.0, 0.0]), 0.4, 4.0
    puff = SceneObject("steam", "effect", "simulated", (), Puffs(centre[None, None].astype(np.float32),
                       np.full((1, 1), radius, np.float32), np.full((1, 1), density, np.float32)), (STEAM,))
    out = build_and_render(spec, dataclasses.replace(scene, objects=(puff,)), threads=2)
    alpha = out.arrays["alpha"][0] / 65535
    h, w = alpha.shape
    f = 35.0 / 24.0 * h
    ys, xs = np.mgrid[:h, :w] + 0.5
    rays = np.stack([(xs - w / 2) / f, np.ones_like(xs), -(ys - h / 2) / f], -1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    b = np.linalg.norm(centre - (rays @ centre)[..., None] * rays, axis=-1) / radius
    inner = b < 0.7
    want = 1 - np.exp(-16 / 15 * density * radius * np.clip(1 - b ** 2, 0, 1) ** 2.5)
    assert inner.sum() > 100
    assert np.abs(alpha[inner] - want[inner]).max() < 0.01
    assert 0.05 < alpha[inner].min() and alpha[inner].max() < 0.95
    label = out.arrays["parts"][0] == 1 + spec.outputs["parts"]["parts"].index("volume")
    assert label[inner].all() and not label[b > 1.1].any()


def test_steam_rises_without_popping_and_renders_fractional_smooth_alpha(cache_dir):
    """A steaming mug at 24 fps. Its puffs leave the drink's surface and rise; none pops (its
    optical thickness changes by at most a third of its peak, at birth, between frames); the same
    medium and source give the same puffs. Rendered alone, its alpha is fractional (most of it
    strictly between 0.05 and 0.95, never a solid silhouette) and smooth in time (its total
    changes by less than a fifth between frames)."""
    from assets import scene as scenes
    from assets import volumes
    from render.scene import build_and_render
    spec = spec_of(cache_dir, "body.model=anny", "held.share=1", "held.steam.share=1", "clip.seconds=0.5", "clip.fps=24",
                   f"held.kinds={_only('mug', held.KINDS)}", "camera.shutter=0", "camera.dof_share=0",
                   "camera.framing.weights={close_up: 1.0, upper_body: 0.0, full_body: 0.0}", "cycles.width=96",
                   "cycles.height=96", "cycles.alpha_samples=32")
    scene = scenes.build(spec)
    steam = next(o for o in scene.objects if o.name == "steam")
    m, s = spec.held["steam"], steam.shape
    assert steam.parts == ("volume",) and not steam.plate
    there = s.density > 0
    assert there.sum(axis=1).min() > 20, "the plume is there from the first frame"
    both = there[0] & there[-1]
    climb = (s.centres[-1, both, 2] - s.centres[0, both, 2]).mean()
    assert climb > 0.5 * m["motion"]["velocity"][2] * (spec.n_frames - 1) / spec.fps, "it rises"
    assert np.abs(np.diff(s.density * s.radius, axis=0)).max() <= m["density"] * m["radius"] / 3, "no puff pops"
    path = np.linspace([0.0, 0.0, 1.0], [0.1, 0.0, 1.1], 6)
    one, two = (volumes.puffs(m, path, 6, 24.0, 0.5)[0] for _ in range(2))
    np.testing.assert_array_equal(one.centres, two.centres)
    np.testing.assert_array_equal(one.density, two.density)
    out = build_and_render(spec, dataclasses.replace(scene, objects=(steam,)), threads=2, frames_to_render=4)
    alpha = out.arrays["alpha"][:4] / 65535
    seen = alpha > 0.01
    assert seen.sum(axis=(1, 2)).min() > 20, "the steam is in view"
    a = alpha[seen]
    assert np.mean((a > 0.05) & (a < 0.95)) > 0.6 and a.max() < 0.99
    total = alpha.sum(axis=(1, 2))
    assert (np.abs(np.diff(total)) < 0.2 * total[:-1]).all()


def test_smoke_plumes_from_beside_the_person_split_at_their_depth(cache_dir):
    """Smoke is an effect kind: a plume from a source beside the person, its puffs in front of the
    person's middle foreground (`volume`), behind it the set; it rises."""
    from assets import scene as scenes
    spec = spec_of(cache_dir, "effects.share=1", "clip.seconds=0.5", "effects.smoke.source.depth=0.0", "effects.smoke.source.side=0.0",
                   f"effects.kinds={_only('smoke', effects.KINDS)}")
    scene = scenes.build(spec)
    plume = [o for o in scene.objects if isinstance(o.shape, Puffs)]
    assert {o.name for o in plume} == {"effect", "effect_behind"}, "a source at the person's depth: both sides"
    body = next(o for o in scene.objects if o.name == "body").shape.vertices
    m = scene.camera.matrix_world
    eye, forward = m[:, :3, 3], -m[:, :3, 2]
    mid = ((body.mean(axis=1) - eye) * forward).sum(-1)
    for o in plume:
        s = o.shape
        there = s.density > 0
        depth = ((s.centres - eye[:, None]) * forward[:, None]).sum(-1) - mid[:, None]
        assert np.sign(depth[there].mean()) == (1 if o.plate else -1)
        assert o.parts == (() if o.plate else ("volume",)) and o.plate == (o.role == "set")
    for o in plume:   # each puff there all along rises at about the drawn speed
        s = o.shape
        both = (s.density[0] > 0) & (s.density[-1] > 0)
        climb = (s.centres[-1, both, 2] - s.centres[0, both, 2]).mean()
        assert climb > 0.5 * spec.effects["motion"]["velocity"][2] * (spec.n_frames - 1) / spec.fps
