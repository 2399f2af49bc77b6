"""Bad input, as a new user meets it on the command line: one `error:` line naming it, exit status 2,
before any work and with nothing created; and the value rules every app shares (core.rules)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core import rules
from core.cli import compose, to_container
from core.errors import UserError
from tests.conftest import write_store

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """A mask-free model, the same with its weights cut short, a video cut short, a store."""
    from gvm_train.model import build_model
    from gvm_train.pipeline import GVMPipeline
    from matting.video import sample_video
    tmp = tmp_path_factory.mktemp("bad")
    model = tmp / "model"
    GVMPipeline.from_model(build_model(to_container(compose("finetune", []))["model"])).save_pretrained(model)
    cut = tmp / "cut_model"
    shutil.copytree(model, cut)
    weights = cut / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    video = tmp / "cut.mp4"
    data = sample_video("carphone_pristine.mp4").read_bytes()
    video.write_bytes(data[: len(data) * 6 // 10])   # its container still lists 120 frames
    return {"model": str(model), "cut_model": str(cut), "cut_video": str(video),
            "store": write_store(tmp / "s.zarr", 2)}


CASES = [   # (app and arguments, words the error line names); {t}: the case's own folder
    (["pipelines.pseudolabel", "input=sample", "labeler=gvm", "checkpoint={cut_model}", "store.path={t}/p.zarr"],
     ["checkpoint", "cannot be loaded"]),
    (["pipelines.pseudolabel", "input={cut_video}", "store.path={t}/p.zarr"], ["cut.mp4"]),
    (["pipelines.bench_pseudolabel", "bench.store={t}/none.zarr"], ["none.zarr", "does not exist"]),
    (["gvm_train.infer", "input=sample", "checkpoint={model}", "mask={t}", "output_dir={t}/out"], ["mask-free"]),
    (["gvm_train.finetune", "data.stores=[{store}]", "model.regime.lora.rank=8", "output_dir={t}/ft"],
     ["model.regime.lora.rank", "only with model.regime.name=lora"]),
    (["pipelines.validate", "{t}/none.zarr", "--workers", "x"], ["--workers"]),
]


@pytest.mark.slow
@pytest.mark.parametrize("args, words", CASES, ids=[f"{a[0].split('.')[-1]}-{a[1].split('=')[0]}" for a, _ in CASES])
def test_bad_input_is_one_line_before_any_work(args, words, inputs, tmp_path):
    case = tmp_path / "case"
    case.mkdir()
    argv = [a.format(t=case, **inputs) for a in args]
    if argv[0] != "pipelines.validate":
        argv.append(f"hydra.run.dir={tmp_path / 'h'}")
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    lines = [ln for ln in p.stderr.splitlines() if ln.strip() and "%|" not in ln]
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-3000:]
    assert all(w in lines[0] for w in words), lines[0]
    assert list(case.iterdir()) == [], list(case.iterdir())       # nothing created
    assert time.monotonic() - start < 60                          # refused before the work, not after it


# --- the value rules, one table for every app -----------------------------------------------------

def _check(app: str, *overrides: str) -> None:
    rules.check(to_container(compose(app, list(overrides))), to_container(compose(app, [])))


@pytest.mark.slow   # every stage's checks in-process: 12 s, out of test-fast's budget
def test_the_loop_checks_every_stage_before_the_first(tmp_path):
    from pipelines.loop import check_stages
    c = to_container(compose("loop", [f"output_dir={tmp_path / 'loop'}"]))
    check_stages(c)   # as shipped
    for key, stage in (("finetune", "train.steps=0"), ("evaluate", "protocol=xx"), ("render", "bogus=1"),
                       ("infer", "window=0")):
        with pytest.raises(UserError, match=key if key != "finetune" else "train.steps"):
            check_stages({**c, key: [*c[key], stage]})
    assert not (tmp_path / "loop").exists()


@pytest.mark.parametrize("app, overrides, message", [
    ("render", ["verbose=maybe"], "verbose must be a yes/no"),
    ("render", ["hair.styles.bob.n_strands=100.5"], "hair.styles.bob.n_strands must be a whole number"),
    ("render", ["hair.style_weights.bob=-1"], "hair.style_weights.bob must be >= 0"),
    ("render", ["camera.move.weights.static=0", "camera.move.weights.handheld=0", "camera.move.weights.dolly=0",
                "camera.move.weights.orbit=0", "camera.move.weights.zoom=0"], "camera.move.weights must be non-negative"),
    ("render", ["motion.ranges.wave.arm=2"], "motion.ranges.wave.arm must be one of 0, 1"),
    ("render", ["body.skin.tones=[]"], "body.skin.tones must be a list of at least 1"),
    ("benchmark_set", ["placement.x=left"], "placement.x must be a range"),
    ("benchmark_set", ["placement.x=[0.9,0.1]"], "placement.x must be a range"),
    ("finetune", ["model.unet.block_out_channels=[30,64]"], "multiple of 32"),
    ("infer", ["chain.pose.model_complexity=2"], "only with chain.segmenter=pose"),
    ("evaluate", ["metrics.messddt.unknown_dilation=20"], "only with metrics.messddt.region=unknown"),
    ("publish", ["previews.background=[1,2]"], "a list of 3"),
])
def test_a_value_against_its_kind_and_its_rules(app, overrides, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        _check(app, *overrides)


@pytest.mark.parametrize("app, overrides", [
    ("render", ["hair.styles.bob.n_strands=[100,200]", "camera.shutter=0", "clip.fps=29.97", "dry_run=plan"]),
    ("render", ["cycles.seed=7", "motion.amass.fraction=0.5", "hair.styles.tied.tie=bun"]),
    ("pseudolabel", ["labeler=gvm", "gvm.window=4", "checkpoint=/some/model"]),
    ("infer", ["chain.segmenter=pose", "chain.pose.model_complexity=2"]),
    ("finetune", ["model.regime.name=lora", "model.regime.lora.rank=8", "data.stride=1"]),
])
def test_good_values_pass(app, overrides):
    _check(app, *overrides)   # nothing good is refused
