"""Effects in the air: particles moved by Blender's particle system, in front of the person in the
foreground (matted, labelled `effect`), behind them in the set (the plate only)."""
from __future__ import annotations

import numpy as np
import pytest

from assets import effects
from assets import scene as scenes
from core.conf import load
from tests.test_outputs import spec_of

pytestmark = [pytest.mark.slow, pytest.mark.blender]


def test_effects_are_drawn_by_their_shares_with_their_kinds():
    cfg = load("effects/default")
    draws = [effects.sample(cfg, s) for s in range(300)]
    assert abs(np.mean([d is not None for d in draws]) - cfg["share"]) < 0.05
    assert {d["kind"] for d in draws if d} == set(effects.KINDS)
    for d in draws:
        if d and d["material"]["kind"] == "see_through":   # the alpha rule's number, recorded
            assert d["material"]["opacity"] == pytest.approx(1 - np.mean(d["material"]["transmittance"]))


@pytest.mark.parametrize("kind", ["snow", "bubbles"])
def test_particles_fill_the_view_split_at_the_person_and_repeat(cache_dir, kind):
    spec = spec_of(cache_dir, "effects.share=1", "clip.seconds=1",
                   "effects.kinds={" + ", ".join(f"{k}: {float(k == kind)}" for k in effects.KINDS) + "}")
    scene = scenes.build(spec)
    again = scenes.build(spec)
    front = next(o for o in scene.objects if o.name == "effect")
    behind = next(o for o in scene.objects if o.name == "effect_behind")
    np.testing.assert_array_equal(front.shape.vertices, next(o for o in again.objects if o.name == "effect").shape.vertices)
    assert front.role == "effect" and front.parts == ("effect",) and not front.plate
    assert behind.plate and behind.parts == ()          # the set: only the plate sees it
    body = next(o for o in scene.objects if o.name == "body").shape.vertices
    m = scene.camera.matrix_world
    eye, forward = m[:, :3, 3], -m[:, :3, 2]
    mid = ((body.mean(axis=1) - eye) * forward).sum(-1)
    for o, sign in ((front, -1), (behind, 1)):
        specks = o.shape.vertices.reshape(spec.n_frames, -1, 6, 3)
        alive = np.ptp(specks, axis=2).max(axis=-1) > 0          # a dead particle is a point
        centre = specks.mean(axis=2)
        depth = ((centre - eye[:, None]) * forward[:, None]).sum(-1) - mid[:, None]
        assert alive.sum(axis=1).min() > 5, "the air is full from the first frame"
        assert (np.sign(depth[alive].mean()) == sign)
        seen = 0
        for t in range(spec.n_frames):
            pixels = scene.camera.project(centre[t][alive[t]], t)
            seen += int(((pixels >= 0) & (pixels < [spec.cycles["width"], spec.cycles["height"]])).all(axis=1).sum())
        assert seen > 5, "the camera sees particles on both sides of the person"
    moved = np.linalg.norm(np.diff(front.shape.vertices, axis=0), axis=-1).max()
    assert moved > 0.002, "the particles move"
