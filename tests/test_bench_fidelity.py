"""bench_fidelity at a tiny size, for real: its name: value lines come from the three renders, and
bad settings are one line."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.blender, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
TINY = ["cycles.width=40", "cycles.height=40", "cycles.alpha_samples=64", "fidelity.reference_samples=1024",
        "hair.strand_scale=0.05", "body.model=standin", "fidelity.cases=[{style: curly, wind: 0.0}]"]


def _run(tmp_path, cache_dir, *over):
    return subprocess.run([sys.executable, "-m", "pipelines.bench_fidelity", *TINY, f"body.cache_dir={cache_dir}",
                           f"hydra.run.dir={tmp_path}", *over], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_prints_its_figures_from_the_renders(tmp_path, cache_dir):
    r = _run(tmp_path, cache_dir)
    assert r.returncode == 0, r.stderr[-2000:]
    v = {k: float(x) for k, x in re.findall(r"^(\w+): ([-\d.]+)$", r.stdout, re.M)}
    assert v["cost_ratio"] == pytest.approx((v["colour_s"] + v["alpha_s"]) / v["colour_s"], abs=2e-3)
    assert 0 < v["alpha_mae_fractional"] <= v["alpha_p99_fractional"] < 0.5     # 64 spp against 1024: close, not exact
    assert 0 < v["fractional_share"] < 1 and v["reference_s"] > v["alpha_s"] * 0.5
    assert "Warp" not in r.stdout and "CUEW" not in r.stdout + r.stderr   # library chatter stays in the log


def test_bad_settings_are_one_line(tmp_path, cache_dir):
    r = _run(tmp_path, cache_dir, "fidelity.reference_samples=512")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: fidelity.reference_samples must be an integer of at least 1024, got 512"]
