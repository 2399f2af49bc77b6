"""The driver for real: a local Ray cluster rendering into a zarr store, and its command line."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import clipstore
from pipelines.render import main as render_main
from tests.conftest import SMALL

pytestmark = [pytest.mark.blender, pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


def _files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_clip_store(tmp_path_factory, cache_dir):
    from core.cli import compose, to_container
    path = tmp_path_factory.mktemp("ray") / "store.zarr"
    cfg = to_container(compose("render", [*SMALL, "n_clips=2", f"store.path={path}", f"body.cache_dir={cache_dir}",
                                          "cluster.clips_per_worker=1"]))
    assert render_main.task(cfg) == 0
    return path, cfg


def test_ray_run_writes_complete_clips(two_clip_store):
    path, cfg = two_clip_store
    g = zarr.open_group(path, mode="r")  # plain zarr, no project code
    assert g.attrs["format"] == "gvm-synth.clips"
    ids = sorted(g["clips"].group_keys())
    assert ids == ["clip000000", "clip000001"]
    for cid in ids:
        c = g["clips"][cid]
        assert c.attrs["complete"] is True and c.attrs["source"] == "synthetic"
        assert c["fgr"].shape == (4, 64, 64, 3) and c["alpha"].shape == (4, 64, 64)
        assert c.attrs["spec"]["clip_id"] == cid and c.attrs["spec"]["body"]["model"]["kind"] == "standin"
        assert c.attrs["render"]["device"] == "CPU" and "bpy" in c.attrs["software"]["packages"]
        assert c.attrs["checksums"]["alpha"] == clipstore.checksum(c["alpha"][:])
    assert Path(str(path).removesuffix(".zarr") + ".contact_sheet.png").stat().st_size > 1000
    report = Path(str(path).removesuffix(".zarr") + ".report")    # the run's diversity report beside it
    assert (report / "parameters.png").stat().st_size > 1000 and "| camera.focal_mm | 2 |" in (report / "parameters.md").read_text()


def test_rerun_renders_only_missing(two_clip_store, cache_dir, capfd):
    path, cfg = two_clip_store
    before = _files(path / "clips")
    assert render_main.task({**cfg, "n_clips": 3}) == 0
    out, bar = capfd.readouterr()
    assert "4/4" in bar and "frame" in bar and "clips=1/1" in bar   # the bar counts frames, not clips
    # What the run will cost, said before it starts, from the probe remembered for these settings.
    assert re.search(r"^estimate on this machine: \S+ s for 1 clip\(s\) on 1 worker\(s\), [\d.]+ s per frame "
                     r"\((measured before|from a probe of frame 1)\)$", out, re.M), out
    assert out.index("estimate on this machine") < out.index("clips: 3 planned")
    root = clipstore.open_store(path)
    assert clipstore.complete_ids(root) == ["clip000000", "clip000001", "clip000002"]
    after = _files(path / "clips")
    assert {k: after[k] for k in before} == before  # earlier clips byte-for-byte unchanged


def _cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([sys.executable, "-m", "pipelines.render", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_bad_input_one_line_and_store_untouched(two_clip_store, tmp_path):
    path, _ = two_clip_store
    before = _files(path)
    not_smplx = tmp_path / "model"
    not_smplx.mkdir()
    np.savez(not_smplx / "SMPLX_NEUTRAL.npz", v_template=np.zeros((3, 3)))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (["bogus_key=1"], "bogus_key"),
        (["n_clips=0"], "n_clips must be a positive integer"),
        (["body.model=auto", "body.model_path=/no/such/smplx"], "/no/such/smplx"),
        (["body.model=smplx"], "model=smplx needs model_path"),
        (["body.model=mannequin"], "model must be one of"),
        (["body.model=auto", f"body.model_path={not_smplx}"], "SMPLX_NEUTRAL.npz"),
        ([f"store.path={a_file}"], "is a file"),
    ]
    for args, needle in cases:
        target = [] if any(a.startswith("store.path") for a in args) else [f"store.path={path}"]
        r = _cli(*SMALL, *target, *args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2, (args, r.stderr)
        assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], (args, r.stderr)
    assert _files(path) == before


def test_override_reaches_the_plan(two_clip_store):
    path, _ = two_clip_store
    r = _cli(*SMALL, f"store.path={path.parent / 'dry.zarr'}", "n_clips=2", "cycles.samples=7", "dry_run=plan")
    assert r.returncode == 0, r.stderr
    assert "7 spp colour" in r.stdout and "2 to render" in r.stdout
