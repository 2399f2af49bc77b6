"""alpha_hair, the hair's visible share of coverage, for fringes in front of the face and tied hair:
exactly the alpha where no body is near, never above it, and a fringe over bare skin counts as hair."""
import copy
import dataclasses

import cv2
import numpy as np
import pytest

from assets import scene as scenes
from core.cli import compose, to_container
from pipelines import plan
from pipelines.plan import resolve_model
from render.scene import build_and_render

pytestmark = [pytest.mark.blender, pytest.mark.slow]

SIZE = ["cycles.width=128", "cycles.height=128", "cycles.samples=2", "cycles.alpha_samples=64",
        "cycles.denoise=false", "clip.fps=8", "clip.seconds=0.25", "hair.strand_scale=0.1"]


def spec_for(cache_dir, style: str, **geometry):
    cfg = to_container(compose("render", [*SIZE, f"body.cache_dir={cache_dir}", "n_clips=1"]))
    cfg["hair"]["style_weights"] = {style: 1.0}
    spec = plan.plan(cfg, resolve_model(cfg))[0]
    hair = copy.deepcopy(spec.hair)
    hair["geometry"].update(geometry)
    return dataclasses.replace(spec, hair=hair)


def render(spec, bald: bool = False):
    scene = scenes.build(spec)
    if bald:  # the same framing without strands: the body's own coverage
        scene = dataclasses.replace(scene, objects=tuple(o for o in scene.objects if o.role != "hair"))
    out = build_and_render(spec, scene, threads=2)
    return out.arrays["alpha"].astype(np.float64) / 65535, out.arrays["alpha_hair"].astype(np.float64) / 65535


def far_from_body(body: np.ndarray) -> np.ndarray:
    near = cv2.dilate((body > 0).astype(np.uint8), np.ones((7, 7), np.uint8))
    return ~near.astype(bool)


@pytest.fixture(scope="module")
def bob(cache_dir):
    with_fringe = spec_for(cache_dir, "bob", fringe=1)
    return {"fringe": render(with_fringe), "none": render(spec_for(cache_dir, "bob", fringe=0)),
            "body": render(with_fringe, bald=True)[0]}


@pytest.mark.parametrize("tie", ["ponytail", "bun"])
def test_tied_hair_share(cache_dir, tie):
    spec = spec_for(cache_dir, "tied", tie=tie)
    alpha, hair = render(spec)
    body = render(spec, bald=True)[0]
    lsb = 1 / 65535
    assert (hair <= alpha + lsb).all()
    free = far_from_body(body)
    assert (free & (alpha > 0)).sum() > 0, "some hair should stand clear of the body"
    np.testing.assert_allclose(hair[free], alpha[free], atol=lsb)


def test_hair_share_where_no_body(bob):
    for alpha, hair in (bob["fringe"], bob["none"]):
        assert (hair <= alpha + 1 / 65535).all()
        free = far_from_body(bob["body"])
        np.testing.assert_allclose(hair[free], alpha[free], atol=1 / 65535)


def test_fringe_over_the_face_counts_as_hair(bob):
    (alpha, hair), (_, hair_none), body = bob["fringe"], bob["none"], bob["body"]
    skin = (body >= 0.999) & (hair_none < 0.02)   # the body alone covers it: bare face without a fringe
    over = skin & (hair > 0.1)                    # the fringe hangs there (strands thinned for the test)
    assert over.sum() >= 30, f"the fringe covers {over.sum()} bare-skin pixels"
    assert (alpha[over] >= 0.999).all()           # the body behind keeps the pixel opaque
