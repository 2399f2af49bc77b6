"""The floors are checked, not hoped for: import-linter's contracts (pyproject.toml) hold, and
they would catch an upward import or a cycle."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "clipstore", "assets", "render", "matting", "gvm_train", "pipelines")
LINT = str(Path(sys.executable).with_name("lint-imports"))


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}  # this tree's packages, not the installed checkout
    return subprocess.run([LINT, "--no-cache"], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_every_contract_is_kept():
    r = lint(ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "0 broken" in r.stdout and "floors: each package imports only the floors below it KEPT" in r.stdout


def test_the_render_driver_contract_names_every_other_driver():
    import tomllib
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    guard = next(c for c in contracts if c.get("forbidden_modules") == ["pipelines.render"])
    modules = {f"pipelines.{p.stem}" for p in (ROOT / "pipelines").glob("*.py") if p.stem not in ("__init__", "render")}
    assert set(guard["source_modules"]) == modules


@pytest.fixture
def tree(tmp_path):
    """A copy of the project's Python packages and contracts, to break on purpose."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize("module, line, contract", [
    ("gvm_train/data/windows.py", "from pipelines import plan", "floors"),          # the model side reaching up
    ("clipstore/clips.py", "import matting.layout", "floors"),                      # the store reaching up
    ("render/scene.py", "import ray", "no Ray, no Hydra and no store"),              # a forbidden dependency
    ("matting/layout.py", "from matting import video", "no import cycles"),          # video imports layout
    ("pipelines/loop.py", "from pipelines import render", "no driver imports the render driver"),
])
def test_a_broken_floor_fails_the_check(tree, module, line, contract):
    with open(tree / module, "a") as f:
        f.write(f"\n{line}\n")
    r = lint(tree)
    assert r.returncode != 0
    broken = [ln for ln in r.stdout.splitlines() if ln.endswith("BROKEN")]
    assert any(contract in ln for ln in broken), r.stdout
