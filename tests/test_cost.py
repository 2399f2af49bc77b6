"""The dry run's cost estimate: arithmetic known by construction, and a real probe frame at SMALL size."""
import re

import numpy as np

import pytest

from pipelines import cost
from core.cli import UserError
from pipelines.render import main as render_main


def test_estimate_is_setup_plus_frames_in_waves_of_workers():
    p = cost.Probe("clip000000", 2, {"colour": 2.0, "alpha": 0.5}, convert_s=0.1, geometry_s=3.0, scene_s=1.0,
                   stored_bytes=1000)
    e = cost.estimate(p, n_clips=5, n_frames=72, workers=2)
    assert e.clip_s == pytest.approx(4.0 + 72 * 2.6)
    assert e.wall_s == pytest.approx(3 * e.clip_s)  # 5 clips on 2 workers: three waves
    assert e.store_bytes == 5 * 72 * 1000
    assert cost.estimate(p, n_clips=4, n_frames=72, workers=4).wall_s == pytest.approx(e.clip_s)


@pytest.mark.blender
def test_dry_run_probes_one_frame_and_writes_nothing(small_cfg, capsys, tmp_path):
    cfg = small_cfg("dry_run=true", "n_clips=3", f"cost.cache={tmp_path / 'costs.json'}")
    assert render_main.task(cfg) == 0
    out = capsys.readouterr().out
    probe = re.search(r"probe: frame 1 of clip000000 with 2 thread\(s\): Cycles colour ([\d.]+) s, coverage ([\d.]+) s "
                      r"per frame.*per clip ([\d.]+) s set-up", out)
    assert probe, out
    assert all(float(v) > 0 for v in probe.groups())
    est = re.search(r"estimate: ([\d.]+) (s|min|h) for 3 clips of 4 frames on 1 worker\(s\) .*store ~([\d.]+) MiB; "
                    r"an estimate from one frame", out)
    assert est, out
    assert float(est.group(1)) > 0 and float(est.group(3)) > 0
    assert not (tmp_path / "store.zarr").exists()
    # Remembered for these settings on this machine: the run that follows says so before it starts.
    from pipelines import plan
    from pipelines.plan import resolve_model
    from pipelines.render import forecast
    model = resolve_model(cfg)
    assert re.fullmatch(r"estimate on this machine: \S+ (s|min) for 3 clip\(s\) on 1 worker\(s\), [\d.]+ s per frame "
                        r"\(measured before\)", forecast(cfg, model, plan.plan(cfg, model)))


@pytest.mark.slow
def test_dry_run_plan_lists_without_probing(small_cfg, capsys, tmp_path):
    assert render_main.task(small_cfg("dry_run=plan", "n_clips=2")) == 0
    out = capsys.readouterr().out
    assert "clip000001: motion" in out and "probe" not in out and "estimate" not in out
    assert not (tmp_path / "store.zarr").exists()


def test_bad_dry_run_value_names_the_key(small_cfg):
    with pytest.raises(UserError, match="dry_run must be true, false, plan or presets"):
        render_main.task(small_cfg("dry_run=maybe"))


@pytest.mark.blender
@pytest.mark.slow
def test_dry_run_presets_estimates_every_preset(small_cfg, capsys, tmp_path):
    from core.conf import CONF_DIR
    assert render_main.task(small_cfg("dry_run=presets", "n_clips=2", "cost.probe_pixels=576")) == 0
    out = capsys.readouterr().out
    rows = {m.group(1): m for m in re.finditer(r"^(\w+)\s+(\d+)x(\d+)\s+\d+\+\d+\s+(\d+)\s+([\d.]+) (s|min|h)\s", out, re.M)}
    assert set(rows) == {p.stem for p in (CONF_DIR / "preset").glob("*.yaml")}, out
    assert rows["paper"].group(2, 3) == ("1920", "1080") and rows["paper"].group(4) == "40"   # 5 s at SMALL's 8 fps
    assert "at 24x24 (scaled to 128x128)" in out                      # each probed at <= 576 pixels
    seconds = {k: float(m.group(5)) * {"s": 1, "min": 60, "h": 3600}[m.group(6)] for k, m in rows.items()}
    # (the default preset keeps SMALL's 64 px here, so only the paper preset's place is known)
    assert seconds["paper"] > 10 * max(v for k, v in seconds.items() if k != "paper") > 0
    assert not (tmp_path / "store.zarr").exists()


def test_a_long_run_names_the_quick_preset_and_its_cost(small_cfg, tmp_path):
    """The arithmetic and the wording, from probes remembered before (no render)."""
    from pipelines import plan
    from pipelines.plan import resolve_model
    from pipelines.render import _merged, forecast
    from core.conf import load
    c = small_cfg("n_clips=40", f"cost.cache={tmp_path / 'costs.json'}")
    model = resolve_model(c)
    quick = _merged(c, load("preset/draft"))
    slow = cost.Probe("clip000000", 1, {"colour": 30.0, "alpha": 60.0}, 0.1, 20.0, 5.0, 1000)
    fast = cost.Probe("clip000000", 1, {"colour": 1.0, "alpha": 2.0}, 0.1, 5.0, 1.0, 100)
    for cfg, p in ((c, slow), (quick, fast)):
        cost.remember(c["cost"]["cache"], cost.cache_key(cfg, plan.definition_hash(plan.definition(cfg, model))), p)
    todo = plan.plan(c, model)
    line = forecast(c, model, todo)
    long = cost.estimate(slow, 40, plan.n_frames(c), 1).wall_s
    short = cost.estimate(fast, 40, plan.n_frames(quick), 1).wall_s
    assert line == (f"estimate on this machine: {cost.duration(long)} for 40 clip(s) on 1 worker(s), 90.1 s per frame "
                    f"(measured before); preset=draft (a quick look, not training data): {cost.duration(short)}")
    assert "preset=draft" not in forecast({**c, "cost": {**c["cost"], "quick_above_s": long + 1}}, model, todo)


@pytest.mark.blender
@pytest.mark.slow
def test_the_size_estimate_of_a_preset_holds_every_array_it_writes(small_cfg):
    """preset=paper turns the plate and the shadow on: its probe renders the plate pass and stores
    both, at a probe's size (the bug this guards: the plate once left out of the estimate)."""
    import dataclasses
    import clipstore
    from core.conf import load
    from pipelines import plan
    from pipelines.render import _merged
    c = small_cfg()
    paper = _merged(_merged(c, load("preset/paper")), {"cycles": {"width": 24, "height": 24, "samples": 8,
                                                                  "alpha_samples": 16}, "clip": {"seconds": 0.125},
                                                       "hair": {"strand_scale": 0.02}})
    spec = plan.clip_spec(paper, 0, plan.resolve_model(c))
    assert {"bgr", "shadow"} <= set(spec.outputs)
    compression = clipstore.Compression.from_config(c["store"])
    p = cost.probe(spec, 2, compression)
    assert set(p.pass_s) == {"colour", "coverage", "plate"}
    without = cost.probe(dataclasses.replace(spec, outputs={k: v for k, v in spec.outputs.items() if k != "bgr"}),
                         2, compression)
    assert "plate" not in without.pass_s and p.stored_bytes > without.stored_bytes + 24 * 24   # the plate's bytes


def test_simulations_count_by_the_share_of_the_planned_clips_that_have_them(small_cfg):
    """A scarf's cloth and particles in the air are simulated in some clips only: the probe is a
    clip that has them, and the estimate counts each by its share of the planned clips."""
    from pipelines import plan
    from pipelines.plan import resolve_model
    c = small_cfg("n_clips=12", "worn.scarf.share=0.5", "effects.share=0.5")
    todo = plan.plan(c, resolve_model(c))
    first, shares = cost.probe_clip(todo)
    count = lambda s: bool(s.worn["scarf"]) + bool(s.effects)   # noqa: E731
    assert count(first) == 2 and first == next(s for s in todo if count(s) == 2)
    assert shares == {"scarf": np.mean([bool(s.worn["scarf"]) for s in todo]),
                      "effect": np.mean([bool(s.effects) for s in todo]), "steam": 0.0,   # held.share=0 in tests
                      "people": 0.0}
    crowd = plan.plan(small_cfg("n_clips=12", "cast.share=0.6"), resolve_model(c))
    first, shares = cost.probe_clip(crowd)   # the most people, and the others' mean number over its
    n = [len(s.people["others"]) for s in crowd]
    assert len(first.people["others"]) == max(n) > 0 and shares["people"] == pytest.approx(np.mean(n) / max(n))
    p = cost.Probe(first.clip_id, 1, {"colour": 1.0}, 0.0, 20.0, 1.0, 100, {"scarf": 8.0, "effect": 4.0})
    every = cost.estimate(p, 12, 4, 1)
    planned = cost.estimate(p, 12, 4, 1, shares)
    assert every.clip_s - planned.clip_s == pytest.approx(8.0 * (1 - shares["scarf"]) + 4.0 * (1 - shares["effect"]))
    assert "scarf simulated in 8.0 s" in cost.report(p, planned)
