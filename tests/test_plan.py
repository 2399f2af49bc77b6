import json

import pytest

from core import seeds
from pipelines import plan
from core.cli import UserError

MODEL = {"kind": "standin", "path": "/x", "gender": "neutral", "sha256": "0" * 64}


def test_specs_are_deterministic_and_json(small_cfg):
    a = plan.plan(small_cfg("n_clips=3"), MODEL)
    b = plan.plan(small_cfg("n_clips=3"), MODEL)
    assert [s.to_json() for s in a] == [s.to_json() for s in b]
    assert len({s.seed for s in a}) == 3 and len({json.dumps(s.camera) for s in a}) == 3
    back = type(a[0]).from_json(a[0].to_json())
    assert back == a[0]


def test_seed_zero_is_a_seed(small_cfg):
    s0 = plan.plan(small_cfg("seed=0", "n_clips=1"), MODEL)[0]
    s1 = plan.plan(small_cfg("seed=1", "n_clips=1"), MODEL)[0]
    assert s0.seed == seeds.derive(0, 0) and s0.seed != s1.seed
    assert s0.body["betas"] != s1.body["betas"]


def test_components_draw_from_independent_streams(small_cfg):
    base = plan.plan(small_cfg("n_clips=2"), MODEL)
    # A different hair sampler configuration changes hair only.
    other = plan.plan(small_cfg("n_clips=2", "hair.material.roughness=[0.5,0.6]"), MODEL)
    for a, b in zip(base, other):
        assert a.hair != b.hair
        assert (a.body, a.motion, a.camera, a.lighting, a.cycles) == (b.body, b.motion, b.camera, b.lighting, b.cycles)
    # Clip 1 does not depend on how many clips are planned.
    assert plan.plan(small_cfg("n_clips=5"), MODEL)[1] == base[1]


@pytest.mark.slow
def test_cycles_seed_fixed_or_derived(small_cfg):
    derived = plan.plan(small_cfg("n_clips=2"), MODEL)
    assert derived[0].cycles["seed"] != derived[1].cycles["seed"]
    fixed = plan.plan(small_cfg("n_clips=2", "cycles.seed=7"), MODEL)
    assert {s.cycles["seed"] for s in fixed} == {7}


@pytest.mark.parametrize("override, message", [
    ("n_clips=0", "n_clips must be a positive integer"),
    ("cycles.samples=abc", "cycles.samples must be a positive integer"),
    ("cycles.device=tpu", "cycles.device must be one of"),
    ("cycles.pixel_filter=MITCHELL", "cycles.pixel_filter must be one of"),
    ("cycles.sampling_pattern=SOBOL", "cycles.sampling_pattern must be one of"),
    ("camera.focal_mm=[90,40]", "camera.focal_mm: range"),
])
@pytest.mark.slow
def test_bad_values_name_the_key(small_cfg, override, message):
    with pytest.raises(UserError, match=message):
        plan.plan(small_cfg(override), MODEL)


@pytest.mark.slow
def test_definition_ignores_execution_settings(small_cfg):
    d = lambda *o: plan.definition_hash(plan.definition(small_cfg(*o), MODEL))  # noqa: E731
    assert d("n_clips=2") == d("n_clips=9", "cluster.workers=3", "cycles.device=cpu", "cycles.threads=1")
    assert d() != d("cycles.samples=64")


@pytest.mark.parametrize("preset, width, seconds", [("draft", 128, 1.0), ("default", 256, 3.0), ("paper", 1920, 5.0)])
def test_presets_set_the_cost_in_one_key(preset, width, seconds):
    from core.cli import compose, to_container
    cfg = to_container(compose("render", [f"preset={preset}", "n_clips=2"]))
    assert cfg["cycles"]["width"] == width and cfg["clip"]["seconds"] == seconds
    specs = plan.plan(cfg, MODEL)
    assert specs[0].n_frames == round(24 * seconds) and specs[0].cycles["width"] == width
    # A key given after the preset still wins.
    assert to_container(compose("render", [f"preset={preset}", "cycles.width=64"]))["cycles"]["width"] == 64
