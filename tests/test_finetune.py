"""The fine-tuning app for real: tiny model, tiny store, checkpoints, a SIGKILL and an exact resume."""
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gvm_train import data
from gvm_train.finetune import train
from gvm_train.pipeline import GVMPipeline
from core.cli import UserError, compose, to_container
from tests.conftest import write_store

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SMALL = ["data.size=32", "data.frames=4", "model.unet.num_frames=4",
         "train.val_windows=2", "train.threads=1"]


def _args(store, out, *extra):
    return [*SMALL, f"data.stores=[{store}]", f"output_dir={out}", *extra]


def _cfg(*args):
    return to_container(compose("finetune", list(args)))


def _rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("ft") / "s.zarr", 4, t=10)


def test_trains_checkpoints_validates_and_saves_final(tiny_store, tmp_path):
    out = tmp_path / "run"
    result = train(_cfg(*_args(tiny_store, out, "train.steps=4", "train.checkpoint_every=2", "train.val_every=2",
                                "train.keep_checkpoints=1", "train.save_initial=true")))
    assert [int(r["step"]) for r in _rows(out / "log.csv")] == [1, 2, 3, 4]
    assert [int(r["step"]) for r in _rows(out / "val.csv")] == [0, 2, 4]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-0000004"]
    model = GVMPipeline.from_pretrained(result["final"]).model
    assert model.config.preset == "tiny" and (out / "loss.png").stat().st_size > 1000
    initial = GVMPipeline.from_pretrained(out / "initial").model  # the step-0 weights: the UNet differs, the frozen VAE not
    assert not torch.equal(initial.unet.conv_in.weight, model.unet.conv_in.weight)
    assert all(torch.equal(a, b) for a, b in zip(initial.vae.parameters(), model.vae.parameters()))


def test_trains_from_a_url_store(tmp_path):
    """A store given as a URL stays one: its clips are read through fsspec, not from a local path
    made of the URL's text."""
    url = f"file://{tmp_path / 'remote.zarr'}"
    write_store(url, 3, t=10)
    refs = data.index_stores([url])
    assert [r.store for r in refs] == [url] * 3
    out = tmp_path / "run"
    result = train(_cfg(*_args(url, out, "train.steps=2", "train.val_every=2")))
    assert [int(r["step"]) for r in _rows(out / "log.csv")] == [1, 2]
    assert (Path(result["final"]) / "model_index.json").is_file()
    assert not (ROOT / "file:").exists() and not Path("file:").exists()


def test_killed_run_resumes_exactly(tiny_store, tmp_path):
    steps = ["train.steps=8", "train.checkpoint_every=3", "train.val_every=0"]
    whole = tmp_path / "whole"
    train(_cfg(*_args(tiny_store, whole, *steps)))
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "gvm_train.finetune", *_args(tiny_store, killed, *steps)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    while not (killed / "checkpoints" / "step-0000003").exists():
        assert proc.poll() is None and time.time() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (killed / "final").exists()
    result = train(_cfg(*_args(tiny_store, killed, *steps)))
    assert result["resumed_from"] >= 3
    a, b = _rows(whole / "log.csv"), _rows(killed / "log.csv")
    assert [r["step"] for r in b] == [str(s) for s in range(1, 9)]
    # Same data, same noise, same optimizer state: the same losses, to float precision.
    assert [float(r["loss"]) for r in b] == pytest.approx([float(r["loss"]) for r in a], rel=1e-5, abs=1e-7)
    # TensorBoard holds each step once: the steps logged after the checkpoint by the killed run were purged.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    # (Event files are read in name order; the killed run's and the resumed run's may sort either
    # way when they start within one second, so steps are compared as a set, each once.)
    events = sorted(EventAccumulator(str(killed / "tensorboard")).Reload().Scalars("train/loss"), key=lambda e: e.step)
    assert [e.step for e in events] == list(range(1, 9))
    assert [e.value for e in events] == pytest.approx([float(r["loss"]) for r in a], rel=1e-5, abs=1e-7)
    wa = GVMPipeline.from_pretrained(whole / "final").model.unet.state_dict()
    wb = GVMPipeline.from_pretrained(killed / "final").model.unet.state_dict()
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-5


def test_bad_inputs_name_the_problem(tiny_store, tmp_path):
    import clipstore
    clipstore.create(tmp_path / "empty.zarr", {})
    with pytest.raises(UserError, match="has no complete clips"):
        train(_cfg(*_args(tmp_path / "empty.zarr", tmp_path / "a")))
    with pytest.raises(UserError, match="longer than the longest clip"):
        train(_cfg(*_args(tiny_store, tmp_path / "b", "data.frames=40")))
    with pytest.raises(UserError, match="unknown preset"):
        train(_cfg(*_args(tiny_store, tmp_path / "c", "model.preset=huge")))
    # A checkpoint folder that holds some other model.
    other = tmp_path / "d" / "checkpoints" / "step-0000001" / "model"
    other.mkdir(parents=True)
    (other / "model_index.json").write_text('{"_class_name": "SomethingElse"}')
    with pytest.raises(UserError, match="not a GVMPipeline"):
        train(_cfg(*_args(tiny_store, tmp_path / "d")))


def test_lora_regime_saves_adapters_resumes_and_merges(tiny_store, tmp_path):
    out = tmp_path / "lora"
    common = _args(tiny_store, out, "model.regime.name=lora", "train.checkpoint_every=2", "train.val_every=0")
    train(_cfg(*common, "train.steps=2"))
    ckpt = out / "checkpoints" / "step-0000002"
    assert (ckpt / "lora" / "adapter_model.safetensors").exists() and not (ckpt / "model").exists()
    assert (out / "base" / "unet").is_dir()
    result = train(_cfg(*common, "train.steps=3"))  # resumes from step 2 with the adapter, ends merged
    assert result["resumed_from"] == 2
    final = GVMPipeline.from_pretrained(result["final"]).model
    base = GVMPipeline.from_pretrained(out / "base").model
    assert not any("lora" in k for k in final.unet.state_dict())
    # Training the adapter changed the merged attention weights and nothing outside them.
    changed = {k for k, v in final.unet.state_dict().items() if not torch.equal(v, base.unet.state_dict()[k])}
    assert changed and all(any(t in k for t in ("to_q", "to_k", "to_v", "to_out")) for k in changed)


def test_latent_cache_replays_the_same_windows_and_is_reused(tiny_store, tmp_path):
    common = ["train.steps=3", "train.val_every=0", "train.checkpoint_every=3"]
    plain = tmp_path / "plain"
    train(_cfg(*_args(tiny_store, plain, *common)))
    cached = tmp_path / "cached"
    cache = ["train.latent_cache.windows=3", f"train.latent_cache.dir={tmp_path / 'latents'}", *common]
    train(_cfg(*_args(tiny_store, cached, *cache)))
    pools = list((tmp_path / "latents").iterdir())
    assert len(pools) == 1 and (pools[0] / "run.json").is_file()
    assert {p.name for p in pools[0].glob("*.npy")} == {"rgb_latents.npy", "alpha_latents.npy", "alpha.npy", "weight.npy"}
    # Pool entry i is training window i encoded once: the same losses as encoding on the fly.
    assert [float(r["loss"]) for r in _rows(cached / "log.csv")] == pytest.approx(
        [float(r["loss"]) for r in _rows(plain / "log.csv")], rel=1e-4)
    stamp = (pools[0] / "rgb_latents.npy").stat().st_mtime_ns
    train(_cfg(*_args(tiny_store, tmp_path / "again", *cache)))  # same data, same VAE: the pool is reused
    assert (pools[0] / "rgb_latents.npy").stat().st_mtime_ns == stamp and len(list((tmp_path / "latents").iterdir())) == 1
