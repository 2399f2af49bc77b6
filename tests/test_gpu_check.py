"""make gpu-check on a machine without a GPU: one line and status 2; and its measurements, which take a
device, run here on the CPU at toy sizes (the GPU runs the same code)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import SMALL
from core.cli import compose, to_container
from gvm_train.bench import train_step
from gvm_train.model import build_model
from gvm_train.pipeline import GVMPipeline
from pipelines import gpu_check

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.blender
def test_refuses_in_one_line_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    r = subprocess.run([sys.executable, "-m", "pipelines.gpu_check"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "", r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: no GPU here: Cycles finds no OPTIX or CUDA device")


@pytest.mark.blender
def test_a_preset_frame_renders_on_the_kinds_asked_and_the_command_line_keys_stay(cache_dir):
    from render import scene
    c = to_container(compose("gpu_check", [*SMALL, "body.model=standin", f"body.cache_dir={cache_dir}",
                                           "cycles.samples=3"]))
    paper = gpu_check.preset_spec(c, "paper")
    # the preset's own keys where the command line is silent, the command line's where it speaks
    assert paper.cycles["alpha_adaptive_threshold"] == 0.001 and "bgr" in paper.outputs
    assert (paper.cycles["width"], paper.cycles["samples"], paper.n_frames) == (64, 3, 4)
    spec = gpu_check.preset_spec(c, "tiny")
    rows = gpu_check.render_frame(spec, 2, ["CPU", "CPU"])
    assert list(rows) == ["CPU"]   # a kind once
    row = rows["CPU"]
    assert row["colour_s"] > 0 and row["coverage_s"] > 0
    a = row["alpha"]
    assert a.shape == (64, 64) and 0 <= a.min() and a.max() <= 1 and (a > 0.5).mean() > 0.02
    with pytest.raises(RuntimeError, match="Cycles finds no OPTIX device"):
        scene.select_device("optix")


def test_training_step_and_inference_rate_measured_on_the_device_given():
    cfg = to_container(compose("finetune", ["model.gvm.mask_guided=true"]))
    model = build_model(cfg["model"])
    seconds, peak = train_step(model, 32, 2, 1, cfg["model"]["loss"], 0, torch.bfloat16)
    assert seconds > 0 and peak == 0.0
    fps = gpu_check.infer_fps(GVMPipeline.from_model(model), 48, 32, 2, 1, 0)
    assert np.isfinite(fps) and fps > 0
