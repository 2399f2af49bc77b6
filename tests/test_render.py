"""A real Cycles render of a tiny clip through the whole path: spec -> geometry -> scene -> arrays."""
import dataclasses

import cv2
import numpy as np
import pytest

from assets import scene as scenes
from pipelines import plan
from pipelines.plan import resolve_model
from render import clip as clip_mod
from render.scene import build_and_render

pytestmark = [pytest.mark.blender]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, cache_dir):
    from core.cli import compose, to_container
    from tests.conftest import SMALL
    cfg = to_container(compose("render", [*SMALL, f"body.cache_dir={cache_dir}", "n_clips=1"]))
    spec = plan.plan(cfg, resolve_model(cfg))[0]
    full = clip_mod.render_clip(spec, threads=2)
    # The same scene without strands tells the body's own coverage apart from the hair's.
    scene = scenes.build(spec)
    bald = dataclasses.replace(scene, objects=tuple(o for o in scene.objects if o.role != "hair"))  # same framing
    body_only = build_and_render(spec, bald, threads=2).arrays["alpha"]
    return spec, full, body_only


def test_shapes_and_types(rendered):
    spec, full, _ = rendered
    fgr, alpha = full.arrays["fgr"], full.arrays["alpha"]
    assert fgr.shape == (4, 64, 64, 3) and fgr.dtype == np.uint8
    assert alpha.shape == (4, 64, 64) and alpha.dtype == np.uint16
    assert full.info["device"] == "CPU" and full.info["hair"]["strands"] == spec.hair["geometry"]["n_strands"]


def test_body_opaque_background_clear(rendered):
    _, full, body_only = rendered
    a = full.arrays["alpha"].astype(np.float64) / 65535
    b = body_only.astype(np.float64) / 65535
    for t in range(len(a)):
        # 9x9 erosion keeps torso and head, drops thin parts (the gaps between fingers are real).
        inner = cv2.erode((b[t] > 0.5).astype(np.uint8), np.ones((9, 9), np.uint8),
                          borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        assert inner.sum() > 50, "the camera should see the body"
        assert (b[t][inner] == 1.0).all()          # the body itself is exactly opaque
        assert (a[t][inner] >= 0.999).all()        # and stays so with hair over it
        assert (a[t] == 0).mean() > 0.15            # background left empty
        assert a[t][0, :].max() < 1e-6 or a[t][:, 0].max() < 1e-6  # some border untouched


def test_strands_give_fractional_alpha(rendered):
    _, full, body_only = rendered
    a = full.arrays["alpha"].astype(np.float64) / 65535
    hair_only = (body_only == 0) & (a > 0.02)     # covered by strands, not by the body
    assert hair_only.sum() > 40
    # Strands are thinner than a pixel: most of what they cover is partial coverage.
    assert (hair_only & (a < 0.98)).sum() / hair_only.sum() > 0.5


def test_fgr_is_straight_colour(rendered):
    _, full, body_only = rendered
    a = full.arrays["alpha"].astype(np.float64) / 65535
    fgr = full.arrays["fgr"].astype(np.float64).mean(-1)
    hair_only = body_only == 0
    faint = hair_only & (a > 0.05) & (a < 0.35)
    dense = hair_only & (a > 0.65) & (a < 0.999)
    assert faint.sum() > 10 and dense.sum() > 10
    # Premultiplied colour would scale with alpha (ratio ~ 0.2 - 0.3); straight colour does not.
    assert fgr[faint].mean() / fgr[dense].mean() > 0.6
    # Where alpha is 0 the colour is extended from the foreground, not black.
    assert fgr[a == 0].mean() > 5


def test_same_spec_same_pixels(rendered):
    spec, full, _ = rendered
    told = []
    again = clip_mod.render_clip(spec, threads=2, on_frame=told.append)
    assert told == [1, 2, 3, 4]          # progress after every frame
    np.testing.assert_array_equal(again.arrays["alpha"], full.arrays["alpha"])
    np.testing.assert_array_equal(again.arrays["fgr"], full.arrays["fgr"])


def test_hair_share_of_coverage(rendered):
    _, full, body_only = rendered
    a = full.arrays["alpha"].astype(np.float64) / 65535
    h = full.arrays["alpha_hair"].astype(np.float64) / 65535
    assert full.arrays["alpha_hair"].dtype == np.uint16 and h.shape == a.shape
    assert (h <= a + 1e-6).all()                      # a share of coverage, never more
    strands_only = (body_only == 0) & (a > 0.02)      # nothing but strands there
    assert np.abs(h[strands_only] - a[strands_only]).max() < 0.02
    inner = cv2.erode((body_only > 65000).astype(np.uint8)[0], np.ones((9, 9), np.uint8)).astype(bool)
    # Where the body is opaque and no strand crosses it in front, the hair's share is 0; strands
    # over the face are allowed, so only the bulk of the torso is checked.
    assert np.median(h[0][inner]) == 0.0
    assert h.max() > 0.5
