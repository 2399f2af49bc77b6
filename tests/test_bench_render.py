"""bench_render's parts at SMALL size: the figures come from the measurements (not a timed test)."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clipstore
from pipelines import bench_render, plan
from pipelines.plan import resolve_model
from tests.conftest import SMALL

ROOT = Path(__file__).resolve().parent.parent


def test_ratios_from_runs():
    one = bench_render.Run(wall_s=40.0, frames=20, cycles_s=32.0)
    two = bench_render.Run(wall_s=50.0, frames=20, cycles_s=60.0)
    bare = bench_render.Run(wall_s=36.0, frames=20, cycles_s=30.0, blender_stats_s=29.0)
    r = bench_render.ratios(one, two, bare, store_bps=80.0, plain_bps=100.0)
    assert list(r)[:4] == ["pipeline_overhead", "scaling_2x1_over_1x2", "one_worker_over_bare_blender",
                           "store_write_over_plain"]
    assert r["pipeline_overhead"] == pytest.approx(40 / 32)
    assert r["scaling_2x1_over_1x2"] == pytest.approx(40 / 50)
    assert r["one_worker_over_bare_blender"] == pytest.approx(36 / 40)
    assert r["store_write_over_plain"] == pytest.approx(0.8)
    assert r["blender_stats_over_timed_render"] == pytest.approx(29 / 30)
    skipped = bench_render.ratios(one, None, None, 80.0, 100.0)
    assert "scaling_2x1_over_1x2" not in skipped and "one_worker_over_bare_blender" not in skipped


@pytest.mark.parametrize("line, seconds", [
    ("Time: 00:04.27 (Saving: 00:00.00)", 4.27),
    ("Fra:3 | Time: 01:02:03.50 | Mem: 62M", 3723.5),
    ("Mem: 62M | Sample 16/16", None),
])
def test_blender_stats_time(line, seconds):
    assert bench_render.stats_seconds(line) == (None if seconds is None else pytest.approx(seconds))


@pytest.mark.slow
def test_store_write_rates_and_the_written_clip(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {"fgr": rng.integers(0, 256, (3, 32, 32, 3), np.uint8),
              "alpha": rng.integers(0, 65536, (3, 32, 32), np.uint16)}
    store_bps, plain_bps = bench_render.store_write(arrays, tmp_path, clipstore.Compression.default(), repeats=2)
    assert all(math.isfinite(v) and v > 0 for v in (store_bps, plain_bps))
    clip = clipstore.read_clip(clipstore.open_store(tmp_path / "write.zarr"), "clip000001")
    assert np.array_equal(clip["alpha"][...], arrays["alpha"])
    assert np.array_equal(np.load(tmp_path / "plain1" / "fgr.npy"), arrays["fgr"])


@pytest.mark.blender
@pytest.mark.ray
@pytest.mark.slow
def test_bare_loop_and_pipeline_run_measure_the_same_frames(small_cfg, tmp_path, cache_dir):
    cfg = small_cfg("n_clips=1")
    specs = plan.plan(cfg, resolve_model(cfg))
    bare = bench_render.bare_loop(specs, threads=2)
    assert bare.frames == specs[0].n_frames == 4
    # Blender's per-frame "Time" (two decimals) is a part of the timed render call.
    assert 0 < bare.blender_stats_s <= bare.cycles_s + 0.01 * 2 * bare.frames
    assert bare.cycles_s < bare.wall_s
    run = bench_render.pipeline_run([*SMALL, "n_clips=1", f"body.cache_dir={cache_dir}"], tmp_path / "bench.zarr", 1, 2)
    assert run.frames == 4 and 0 < run.cycles_s < run.wall_s
    r = bench_render.ratios(run, None, bare, 1.0, 1.0)
    assert r["pipeline_overhead"] > 1 and math.isfinite(r["one_worker_over_bare_blender"])


@pytest.mark.slow
def test_bad_cpus_one_line_exit_2(cache_dir):
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    r = subprocess.run([sys.executable, "-m", "pipelines.bench_render", *SMALL, f"body.cache_dir={cache_dir}",
                        "bench.cpus=1"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: bench.cpus"), r.stderr
