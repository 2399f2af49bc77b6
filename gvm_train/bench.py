"""`python -m gvm_train.bench` (`make bench`): is the data loader fast enough to feed training?

Measured in one run, printed as `name: value` lines: windows per second the loader delivers,
windows per second a training step consumes, their ratio (above 1: the loader is not the
bottleneck), the tiny step time, and, where CUDA is present, the step time of an SVD-sized UNet.
Also the evaluation throughput (`eval_fps_<W>x<H>`: frames per second of `matting.evaluate`,
PNG reading and the full lr alpha + foreground metric set) on synthetic clips made in the run.
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKLTemporalDecoder, UNetSpatioTemporalConditionModel
from omegaconf import DictConfig

from core.cli import UserError, app, to_container
from core.conf import load as load_conf
from gvm_train import data
from gvm_train.model import GVMModel, build_model, build_scheduler
from gvm_train.model.objectives import training_loss
from gvm_train.model.regimes import apply_regime
from matting.evaluate import evaluate


def loader_rate(ds: data.WindowDataset, n: int, batch_size: int, workers: int) -> float:
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, sampler=range(n), num_workers=workers)
    start = time.perf_counter()
    for _ in loader:
        pass
    return n / (time.perf_counter() - start)


def step_seconds(model, batch: dict, loss_cfg: dict, steps: int) -> float:
    opt = torch.optim.AdamW(apply_regime(model, "full"), lr=1e-5)
    times = []
    for i in range(steps + 2):  # the first two warm up allocators and kernels
        start = time.perf_counter()
        out = training_loss(model, batch, loss_cfg, generator=torch.Generator(model.device).manual_seed(i))
        out["loss"].backward()
        opt.step()
        opt.zero_grad()
        if model.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times[2:])[len(times[2:]) // 2]


def train_step(model, size: int, frames: int, steps: int, loss_cfg: dict, seed: int,
               dtype=None) -> tuple[float, float]:
    """Median seconds of a training step on a random window of `frames` frames at `size` px (and a
    mask for a mask-guided model), under
    autocast to `dtype` (None: none), and the peak GPU memory in GiB (0 on the CPU)."""
    g = torch.Generator().manual_seed(seed)
    batch = {"rgb": torch.rand(1, frames, 3, size, size, generator=g).to(model.device),
             "alpha": torch.rand(1, frames, 1, size, size, generator=g).to(model.device)}
    if model.config.mask_guided:
        batch["mask"] = torch.rand(1, frames, 1, size, size, generator=g).to(model.device)
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    cast = torch.autocast(model.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with cast:
        seconds = step_seconds(model, batch, loss_cfg, steps)
    return seconds, torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else 0.0


def eval_fps(width: int, height: int, frames: int, seed: int, threads: int, truth_cache_mb: int) -> tuple[float, float]:
    """Frames per second of `matting.evaluate` on one synthetic clip in PNG folders (a blurred disc
    drifting across the frame as truth, the same with noise as prediction, noisy colour as foreground):
    the first evaluation of the set, and a second of the same files (what each further method scored on
    one set costs, the truth's work kept)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        pred, gt = Path(tmp) / "pred", Path(tmp) / "gt"
        for t in range(frames):
            # Moves 1% of the width a frame; edge blur and noise scale with the frame like real footage.
            disc = (np.hypot(xx - width * (0.4 + 0.01 * t), yy - height / 2) < height / 3).astype(np.float32)
            true = cv2.GaussianBlur(disc, (0, 0), height / 200)
            fgr = rng.integers(0, 256, (height, width, 3), np.uint8)
            for root, pha, col in ((gt, true, fgr), (pred, true + rng.normal(0, 0.05, true.shape), fgr ^ 8)):
                for sub, img in (("pha", np.rint(np.clip(pha, 0, 1) * 255).astype(np.uint8)), ("fgr", col)):
                    (root / "clip" / sub).mkdir(parents=True, exist_ok=True)
                    cv2.imwrite(str(root / "clip" / sub / f"{t:04d}.png"), img)
        rates = []
        for _ in range(2):
            start = time.perf_counter()
            evaluate(pred, gt, "lr", progress=False, threads=threads, truth_cache_mb=truth_cache_mb)
            rates.append(frames / (time.perf_counter() - start))
        return rates[0], rates[1]


@app("finetune")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    t, b = c["train"], c["bench"]
    if t["threads"]:
        torch.set_num_threads(t["threads"])
    stores = c["data"]["stores"] or ["data/synth.zarr"]
    try:   # the stores and settings, checked whole before any benchmark spends its time
        data.check(c["data"])
        refs = data.index_stores(stores)
        ds = data.WindowDataset(refs, c["data"], c["seed"], b["windows"])
    except ValueError as e:
        raise UserError(f"{e} (make render writes data/synth.zarr; or pass data.stores=[...])") from None
    ev = load_conf("evaluate")
    for size, frames in b["eval_frames"].items():
        w, h = (int(v) for v in size.split("x"))
        one, _ = eval_fps(w, h, frames, c["seed"], 1, 0)
        first, again = eval_fps(w, h, frames, c["seed"], ev["threads"], ev["truth_cache_mb"])
        print(f"eval_fps_{size}: {first:.2f}")
        print(f"eval_fps_{size}_same_set_again: {again:.2f}")
        print(f"eval_fps_{size}_one_thread_no_cache: {one:.2f}")
        print(f"eval_threads_speedup_{size}: {first / one:.2f}", flush=True)
    loaded = loader_rate(ds, b["windows"], t["batch_size"], t["workers"])
    model = build_model(c["model"])
    batch = torch.utils.data.default_collate([ds[i] for i in range(t["batch_size"])])
    # The autoencoder's ceiling: what decode(encode(x)) loses before any UNet works (MAD x1e3).
    with torch.no_grad():
        alpha_back = model.decode_alpha(model.encode_alpha(batch["alpha"]))
        rgb_back = model.decode(model.encode(batch["rgb"])) * 0.5 + 0.5
    print(f"autoencoder_alpha_mad: {1e3 * (alpha_back - batch['alpha']).abs().mean().item():.3f}")
    print(f"autoencoder_rgb_mad: {1e3 * (rgb_back.clamp(0, 1) - batch['rgb']).abs().mean().item():.3f}")
    tiny = step_seconds(model, batch, c["model"]["loss"], b["steps"])
    consumed = t["batch_size"] / tiny
    print(f"loader_windows_per_s: {loaded:.2f}")
    print(f"train_windows_per_s: {consumed:.2f}")
    print(f"loader_over_train: {loaded / consumed:.2f}")
    print(f"{c['model']['preset']}_step_s: {tiny:.3f}")
    # The same step fed from train.latent_cache (latents precomputed, no VAE encode in the step).
    cached_batch = {**batch, "rgb_latents": model.encode(batch["rgb"]), "alpha_latents": model.encode_alpha(batch["alpha"])}
    cached = step_seconds(model, {k: v for k, v in cached_batch.items() if k != "rgb"}, c["model"]["loss"], b["steps"])
    print(f"{c['model']['preset']}_cached_step_s: {cached:.3f}")
    print(f"latent_cache_speedup: {tiny / cached:.2f}")
    if torch.cuda.is_available():
        svd = svd_sized(c["model"], b["svd"]["vae"]).cuda()
        side, frames = b["svd"]["size"], b["svd"]["frames"]
        seconds, _ = train_step(svd, side, frames, b["steps"], c["model"]["loss"], c["seed"])
        print(f"svd_step_s: {seconds:.3f} ({frames} frames, {side}x{side}, random weights)")
    else:
        print("svd_step_s: skipped (no CUDA)")
    return 0


def svd_sized(model_cfg: dict, vae_cfg: dict):
    """A randomly initialised model of Stable Video Diffusion's size on the GPU: diffusers' default
    UNetSpatioTemporalConditionModel is SVD's UNet (1.52 B parameters); the VAE's shape is in conf."""
    unet = UNetSpatioTemporalConditionModel(in_channels=8, out_channels=4)
    return GVMModel(unet, AutoencoderKLTemporalDecoder(**vae_cfg), build_scheduler(model_cfg), preset="svd",
                    **model_cfg["gvm"])


if __name__ == "__main__":
    main()
