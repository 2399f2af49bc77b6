"""Models built from a `model:` config section (conf/model/<preset>.yaml), and the UNet / VAE /
scheduler of a folder on disk.

- `tiny`: a randomly initialised UNet, seeded, small enough to train on CPU (tests and demos),
          over the exact patch autoencoder (gvm_train.model.patch_vae);
- `svd`:  `unet/` and `vae/` (and `scheduler/` when it holds a flow-matching one) of a local
          Stable Video Diffusion snapshot folder, `model.path`.
The UNet's input width follows from the autoencoder and `gvm.mask_guided`: a mask-guided SVD UNet
gets a wider first convolution whose mask weights start at zero, so it starts as the mask-free model.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLTemporalDecoder, FlowMatchEulerDiscreteScheduler, UNetSpatioTemporalConditionModel
from omegaconf import DictConfig, OmegaConf
from torch import nn

from gvm_train.model.gvm import PRESETS, GVMModel
from gvm_train.model.patch_vae import PatchAutoencoder

VAES = (AutoencoderKLTemporalDecoder, PatchAutoencoder)   # what a model folder's vae/ may hold

# diffusers writes one of these per model folder (plain, sharded, or as a dtype variant).
_WEIGHT_STEMS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin",
                 "diffusion_pytorch_model.safetensors.index.json", "diffusion_pytorch_model.bin.index.json")


def build_model(cfg: Mapping[str, Any]) -> GVMModel:
    """The model a `model:` config section describes (conf/model/<preset>.yaml, as a plain dict or
    an OmegaConf node)."""
    cfg = _plain(cfg)
    preset = cfg.get("preset")
    guided = bool(cfg.get("gvm", {}).get("mask_guided", False))
    if preset == "tiny":
        unet, vae = _tiny_unet_vae(cfg, guided)
        if cfg.get("gvm", {}).get("mask_residual"):
            with torch.no_grad():   # a fresh residual model starts by returning its guide unchanged
                unet.conv_out.weight.zero_()
                unet.conv_out.bias.zero_()
    elif preset == "svd":
        unet, vae = _svd_unet_vae(cfg)
        if guided:
            unet = _widen_conv_in(unet, unet.config.out_channels * 3)
    else:
        raise ValueError(f"model.preset: unknown preset {preset!r} (known: {', '.join(PRESETS)})")
    scheduler = build_scheduler(cfg)
    return GVMModel(unet, vae, scheduler, preset=preset, **cfg.get("gvm", {}))


def _plain(cfg: Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)
    return copy.deepcopy(dict(cfg))


def _tiny_unet_vae(cfg: dict[str, Any], guided: bool) -> tuple[UNetSpatioTemporalConditionModel, PatchAutoencoder]:
    for key in ("unet", "vae"):
        if not isinstance(cfg.get(key), dict):
            raise ValueError(f"model.{key}: the tiny preset needs a {key} section of constructor settings")
    for key in ("in_channels", "out_channels"):
        if key in cfg["unet"]:
            raise ValueError(f"model.unet.{key}: set by the autoencoder's latent channels and gvm.mask_guided, "
                             "not by hand")
    try:
        vae = PatchAutoencoder(**cfg["vae"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"model.vae: {e}") from None
    n, grey = vae.latent_channels, vae.grey_channels
    # Seed the initial weights without disturbing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(cfg["seed"]))
        try:
            # alpha (grey) latents, then RGB latents, then a mask's (grey) latents
            unet = UNetSpatioTemporalConditionModel(in_channels=grey + n + (grey if guided else 0), out_channels=grey,
                                                    **cfg["unet"])
        except TypeError as e:
            raise ValueError(f"model.unet: {e}") from None
    return unet, vae


@torch.no_grad()
def _widen_conv_in(unet: UNetSpatioTemporalConditionModel, channels: int) -> UNetSpatioTemporalConditionModel:
    """The UNet with `channels` inputs; the added ones (the mask's latents) start with zero weights."""
    old = unet.conv_in
    if old.in_channels == channels:
        return unet
    new = nn.Conv2d(channels, old.out_channels, old.kernel_size, old.stride, old.padding)
    new.weight.zero_()
    new.weight[:, :old.in_channels] = old.weight
    new.bias.copy_(old.bias)
    unet.conv_in = new
    unet.register_to_config(in_channels=channels)
    return unet


def _svd_unet_vae(cfg: dict[str, Any]) -> tuple[UNetSpatioTemporalConditionModel, nn.Module]:
    path = cfg.get("path")
    if not path:
        raise ValueError("model.path is not set: model=svd needs model.path=<local Stable Video Diffusion folder>")
    root = Path(str(path)).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"model.path: {root} does not exist or is not a folder")
    return load_unet_vae(root, label="model.path")


def load_unet_vae(root: Path, label: str) -> tuple[UNetSpatioTemporalConditionModel, nn.Module]:
    loaded = []
    for sub, classes in (("unet", (UNetSpatioTemporalConditionModel,)), ("vae", VAES)):
        folder = root / sub
        if not folder.is_dir():
            raise FileNotFoundError(f"{label}: {root} has no {sub}/ subfolder (expected unet/, vae/, scheduler/)")
        config = folder / "config.json"
        if not config.is_file():
            raise FileNotFoundError(f"{label}: {config} is missing")
        try:
            class_name = json.loads(config.read_text()).get("_class_name")
        except json.JSONDecodeError as e:
            raise ValueError(f"{label}: {config} is not valid JSON ({e})") from None
        cls = next((c for c in classes if c.__name__ == class_name), None)
        if cls is None:
            raise ValueError(f"{label}: {config} describes a {class_name}, not a "
                             f"{' or '.join(c.__name__ for c in classes)}")
        variant = _weights_variant(folder, label)
        # float32 whatever the file holds (snapshots often ship fp16): mixed precision is the
        # training loop's choice (autocast), not the checkpoint's.
        try:
            model = cls.from_pretrained(root, subfolder=sub, variant=variant, local_files_only=True,
                                        torch_dtype=torch.float32)
        except (OSError, RuntimeError) as e:   # a truncated or corrupt weights file, weights of another shape
            first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
            raise ValueError(f"{label}: {folder} cannot be loaded ({first[:300]})") from None
        loaded.append(_own_memory(model))
    return loaded[0], loaded[1]


@torch.no_grad()
def _own_memory(module: nn.Module) -> nn.Module:
    """Copy every tensor into a fresh allocation. Weights loaded from safetensors sit at
    arbitrary byte offsets; CPU kernels then take unaligned code paths whose float sums differ
    in the last bits, so a reloaded model would not reproduce its own outputs exactly."""
    for t in (*module.parameters(), *module.buffers()):
        t.data = t.data.clone()
    return module


def _weights_variant(folder: Path, label: str) -> str | None:
    """None for plain weight files; else the dtype variant (a snapshot may ship only `*.fp16.*`)."""
    if any((folder / stem).is_file() for stem in _WEIGHT_STEMS):
        return None
    for stem in _WEIGHT_STEMS:
        head, _, tail = stem.partition(".")
        for f in sorted(folder.glob(f"{head}.*.{tail}")):
            return f.name[len(head) + 1:-len(tail) - 1]
    raise FileNotFoundError(f"{label}: {folder} has no weights (diffusion_pytorch_model[.<variant>].safetensors or .bin)")


def build_scheduler(cfg: dict[str, Any]) -> FlowMatchEulerDiscreteScheduler:
    """The flow-matching scheduler. A snapshot's own scheduler/ is kept only when it is one:
    stock SVD ships an EDM Euler scheduler, which GVM's flow-matching objective replaces."""
    if cfg.get("preset") == "svd" and cfg.get("path"):
        sched = Path(str(cfg["path"])).expanduser() / "scheduler" / "scheduler_config.json"
        if sched.is_file():
            try:
                class_name = json.loads(sched.read_text()).get("_class_name")
            except json.JSONDecodeError as e:
                raise ValueError(f"model.path: {sched} is not valid JSON ({e})") from None
            if class_name == FlowMatchEulerDiscreteScheduler.__name__:
                return FlowMatchEulerDiscreteScheduler.from_pretrained(sched.parent.parent, subfolder="scheduler")
    try:
        return FlowMatchEulerDiscreteScheduler(**cfg.get("scheduler", {}))
    except TypeError as e:
        raise ValueError(f"model.scheduler: {e}") from None

