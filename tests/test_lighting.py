"""Light kinds: the sampler draws each kind and its backlit share; every kind renders a person exposed
for the subject (first frame's median luminance at the drawn target), colour kept straight."""
import numpy as np
import pytest

from assets import lighting
from core.colour import luminance, srgb_to_linear
from core.conf import load

CFG = load("lighting/default")


def test_every_kind_and_the_backlit_share():
    draws = [lighting.sample(CFG, s) for s in range(600)]
    assert {d["kind"] for d in draws} == set(lighting.KINDS)
    share = np.mean([d["backlit"] for d in draws])
    assert abs(share - CFG["backlit_share"]) < 0.05
    lo, hi = CFG["backlit_azimuth_deg"]
    for d in draws:
        az = d["key"]["azimuth_deg"] if d["kind"] == "studio" else d["sun_azimuth_deg"]
        if d["backlit"]:
            assert lo <= az <= hi


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="lighting.weights name unknown kinds"):
        lighting.sample({**CFG, "weights": {"candle": 1.0}}, 0)


@pytest.mark.blender
@pytest.mark.slow
@pytest.mark.parametrize("kind", lighting.KINDS)
def test_each_kind_renders_exposed_for_the_subject(cache_dir, kind):
    from core.cli import compose, to_container
    from pipelines import plan
    from pipelines.plan import resolve_model
    from render.clip import render_clip
    weights = [f"lighting.weights.{k}={1.0 if k == kind else 0.0}" for k in lighting.KINDS]
    cfg = to_container(compose("render", ["cycles.width=64", "cycles.height=64", "cycles.samples=16",
                                          "cycles.alpha_samples=16", "clip.fps=8", "clip.seconds=0.25",
                                          "hair.strand_scale=0.02", "n_clips=1", f"body.cache_dir={cache_dir}", *weights]))
    spec = plan.plan(cfg, resolve_model(cfg))[0]
    out = render_clip(spec, threads=2)
    assert spec.lighting["kind"] == kind and out.info["camera"]["exposure_gain"] > 0
    fgr, alpha = out.arrays["fgr"][0] / 255.0, out.arrays["alpha"][0] / 65535.0
    person = alpha > 0.99
    linear = srgb_to_linear(fgr[person])
    median = float(np.median(luminance(linear)))
    peak = float(np.percentile(linear.max(-1), spec.camera["exposure_highlight_percentile"]))
    # Exposed for the subject, unless its highlights decide (then they sit at exposure_highlight) ...
    assert median == pytest.approx(spec.camera["exposure_target"], rel=0.25) or (
        median < spec.camera["exposure_target"] and peak == pytest.approx(spec.camera["exposure_highlight"], rel=0.1))
    # ... and not blown out: hardly any of the person is white.
    assert (fgr[person].max(-1) >= 0.999).mean() < 0.02


def test_lamps_aim_at_the_person_from_where_the_kind_says():
    """Placement without Blender: each studio lamp at its distance, elevation and side of the front,
    its -Z axis on the chest-to-head midpoint; the set's floor under the feet, the backdrop behind."""
    from assets import stage
    from tests.test_camera import _figure
    vertices, joints = _figure()
    light = lighting.sample({**CFG, "weights": {"studio": 1.0, "sky": 0.0, "environment": 0.0}, "backlit_share": 0.0}, 3)
    rig = lighting.place(light, joints)
    target = joints[:, stage.HEAD].mean(0) * 0.5 + joints[:, stage.SPINE3].mean(0) * 0.5
    for lamp in rig.lamps:
        m, p = lamp["matrix"], light[lamp["name"]]
        to_target = target - m[:3, 3]
        assert np.linalg.norm(to_target) == pytest.approx(p["distance_m"])
        np.testing.assert_allclose(-m[:3, 2], to_target / np.linalg.norm(to_target), atol=1e-9)
        assert np.degrees(np.arcsin(-to_target[2] / np.linalg.norm(to_target))) == pytest.approx(p["elevation_deg"])
    key, fill = (next(lp for lp in rig.lamps if lp["name"] == n)["matrix"][0, 3] for n in ("key", "fill"))
    assert np.sign(key) == -np.sign(fill) or light["key"]["azimuth_deg"] == 0   # the fill mirrors the key
    floor, *backdrop = lighting.set_objects({**light["set"], "backdrop": True}, vertices, target, target + [0, -3.0, 0])
    assert floor.transform[0, 2, 3] == pytest.approx(vertices[..., 2].min()) and floor.plate
    assert backdrop[0].transform[0, 1, 3] > target[1]                              # behind, away from the camera
