"""Range keys on the command line: a plain number (or text, for a choice of texts) fixes the value,
a [lo, hi] list is a range of the default's kind, for every range key of every app, through the
same path a shell command takes."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from core import ranges
from core.cli import as_ranges, compose, to_container
from tests.conftest import write_store

ROOT = Path(__file__).resolve().parent.parent


def range_keys(config: str) -> dict[str, tuple[str, list]]:
    """Every key of an app's config written as {int: [lo, hi]} or {choice: [...]}: its kind and ends
    (a key that only repeats another through an interpolation is set where it is written)."""
    out = {}

    def walk(d, path):
        if isinstance(d, dict):
            kind = ranges.kind(d)
            if kind in ("int", "choice"):
                out[path] = (kind, ranges.ends(d, path))
                return
            for k, v in d.items():
                walk(v, f"{path}.{k}" if path else str(k))
    walk(OmegaConf.to_container(compose(config, []), resolve=False), "")
    return out


def fixed_overrides(config: str) -> dict[str, object]:
    return {k: ends[0] for k, (kind, ends) in range_keys(config).items()}


def list_overrides(config: str) -> dict[str, list]:
    """Each range key as a two-item list of its own ends (a choice keeps its first two items)."""
    return {k: ends[:2] if len(ends) > 1 else ends * 2 for k, (kind, ends) in range_keys(config).items()}


def cli(module: str, args: list[str], tmp: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args, f"hydra.run.dir={tmp / 'h'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, "RAY_AUTH_MODE": "disabled"})


def test_every_app_with_range_keys_is_found():
    assert {"data.stride", "data.guide_mask.down"} <= set(range_keys("finetune"))
    assert {"hair.styles.bob.n_strands", "hair.styles.tied.tie", "hair.face.brows.count"} <= set(range_keys("render"))
    assert "data.stride" in range_keys("benchmark_set")


def test_rewritten_overrides_mean_what_they_say():
    c = to_container(compose("render", ["hair.styles.bob.n_strands=100", "hair.styles.curly.n_strands=[10,20]",
                                        "hair.styles.tied.tie=bun", "hair.styles.tied.n_strands={choice:[5,6]}",
                                        "camera.f_stop=2.8", "body.model=anny"]))
    styles = c["hair"]["styles"]
    assert styles["bob"]["n_strands"] == 100
    assert styles["curly"]["n_strands"] == {"int": [10, 20]}         # the default's kind, not a float range
    assert styles["tied"]["tie"] == {"choice": ["bun"]}
    assert styles["tied"]["n_strands"] == {"choice": [5, 6]}          # replaced, not merged with {int: ...}
    assert c["body"]["model"] == "anny"
    # A uniform range stays uniform; a key that is no range is left to Hydra as written.
    assert to_container(compose("finetune", ["data.crop_scale=[0.3,0.5]"]))["data"]["crop_scale"] == [0.3, 0.5]
    assert as_ranges("finetune", ["data.size=96", "+extra=[1,2]"]) == ["data.size=96", "+extra=[1,2]"]


@pytest.mark.slow
def test_render_takes_plain_numbers_and_lists_for_every_range_key(tmp_path, cache_dir):
    base = ["dry_run=plan", "n_clips=7", "hair.style_order=cycle", f"store.path={tmp_path / 's.zarr'}",
            f"body.cache_dir={cache_dir}"]
    for name, values in (("fixed", fixed_overrides("render")), ("lists", list_overrides("render"))):
        args = [f"{k}={v}".replace("'", "") for k, v in values.items()]
        p = cli("pipelines.render", [*base, *args], tmp_path / name)
        assert p.returncode == 0, (name, p.stderr[-2000:])
        assert "7 clips planned" in p.stdout and not (tmp_path / "s.zarr").exists()
    # What a fixed number means: every clip of the plan has that value.
    from pipelines import plan
    c = to_container(compose("render", [*base, "hair.styles.bob.n_strands=100", "hair.face.brows.count=300",
                                        "hair.styles.tied.tie=bun"]))
    specs = plan.plan(c, plan.resolve_model(c))
    geo = {s.hair["geometry"]["style"]: s.hair["geometry"] for s in specs}
    assert geo["bob"]["n_strands"] == 100 and geo["tied"]["tie"] == "bun"
    assert {s.hair["face"]["brows"]["count"] for s in specs} == {300}


@pytest.mark.slow
def test_finetune_and_benchmark_set_take_plain_numbers_for_every_range_key(tmp_path):
    store = write_store(tmp_path / "s.zarr", 3, t=24, h=40, w=48)
    fixed = [f"{k}={v}" for k, v in fixed_overrides("finetune").items()]
    p = cli("gvm_train.finetune", [f"data.stores=[{store}]", "model.gvm.mask_guided=true",   # the guide mask's keys apply
                                   "train.steps=1", "train.val_every=0",
                                   "train.tensorboard=false", f"output_dir={tmp_path / 'ft'}", "data.stride=[1,3]",
                                   *[a for a in fixed if not a.startswith("data.stride=")]], tmp_path / "ft_run")
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / "ft" / "final").is_dir()
    fixed = [f"{k}={v}" for k, v in fixed_overrides("benchmark_set").items()]
    p = cli("pipelines.benchmark_set", [f"stores=[{store}]", "frames=4", f"output_dir={tmp_path / 'b'}", *fixed],
            tmp_path / "b_run")
    assert p.returncode == 0, p.stderr[-2000:]
