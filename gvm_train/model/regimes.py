"""Which UNet weights train: `full`, `spatial` (temporal layers frozen) or `lora` (peft adapters).

GVM trains in stages: the full UNet, then spatial layers only at high resolution, then LoRA.
Temporal layers are found by module type, not by name: a name filter on "temporal" misses the
AlphaBlender mixing factors (`time_mixer`) and the frame-position embedding (`time_pos_embed`).

LoRA adapters are injected with peft into the UNet in place. They are saved on their own
(adapter_config.json + adapter_model.safetensors) because diffusers' UNet save_pretrained with
adapters injected reloads with re-initialised attention weights; export merges them first.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from diffusers.models.attention import TemporalBasicTransformerBlock
from diffusers.models.resnet import AlphaBlender, TemporalResnetBlock
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file, save_file
from torch import nn

from core.checks import require_keys
from gvm_train.model.gvm import GVMModel

REGIMES = ("full", "spatial", "lora")
# The numbers live in conf/model/<preset>.yaml (`regime.lora:`).
LORA_KEYS = ("rank", "alpha", "dropout", "target_modules")
# Whole modules that only act along time: the temporal resnet (3x1x1 convs), the temporal
# attention block, and the learned spatial/temporal mixing factor.
TEMPORAL_TYPES = (TemporalResnetBlock, TemporalBasicTransformerBlock, AlphaBlender)
# Parts that are temporal by their role inside a spatio-temporal module, though their type
# (TimestepEmbedding) is shared with the UNet's diffusion-time embedding: the frame-index
# embedding is only ever added to the temporal branch.
TEMPORAL_CHILDREN = {TransformerSpatioTemporalModel: ("time_pos_embed",)}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def temporal_modules(unet: nn.Module) -> dict[str, nn.Module]:
    """Qualified name -> module for every temporal part of the UNet (outermost matches only)."""
    found: dict[str, nn.Module] = {}
    for name, module in unet.named_modules():
        if any(name.startswith(prefix + ".") for prefix in found):
            continue
        if isinstance(module, TEMPORAL_TYPES):
            found[name] = module
        for owner, children in TEMPORAL_CHILDREN.items():
            if isinstance(module, owner):
                for child in children:
                    if getattr(module, child, None) is not None:
                        found[f"{name}.{child}"] = getattr(module, child)
    return found


def classify_parameters(unet: nn.Module) -> dict[str, str]:
    """Every parameter name of the UNet -> "temporal" or "spatial" (everything not temporal:
    spatial convs and attention, up/down sampling, the diffusion-time and added-time embeddings)."""
    temporal = {id(p) for m in temporal_modules(unet).values() for p in m.parameters()}
    return {name: "temporal" if id(p) in temporal else "spatial" for name, p in unet.named_parameters()}


def apply_regime(model: GVMModel, regime_cfg: Mapping[str, Any] | str) -> list[nn.Parameter]:
    """Set requires_grad on the UNet for the regime (the VAE stays frozen); returns the trainable
    parameters, for the optimizer. `regime_cfg` is the `regime:` section or just its name."""
    cfg = {"name": regime_cfg} if isinstance(regime_cfg, str) else dict(regime_cfg)
    name = cfg.get("name")
    if name not in REGIMES:
        raise ValueError(f"regime.name: unknown regime {name!r} (known: {', '.join(REGIMES)})")
    unet = model.unet
    model.vae.requires_grad_(False)
    if name == "lora":
        if not has_lora(unet):
            add_lora(unet, cfg.get("lora"))
        for n, p in unet.named_parameters():
            p.requires_grad_("lora_" in n)
    else:
        if has_lora(unet):
            raise ValueError(f"regime.name={name}: the UNet has LoRA adapters injected; merge them first")
        unet.requires_grad_(True)
        if name == "spatial":
            for m in temporal_modules(unet).values():
                m.requires_grad_(False)
    return model.trainable_parameters()


# -- LoRA ----------------------------------------------------------------------------------------------
def lora_config(cfg: Mapping[str, Any] | None) -> LoraConfig:
    cfg = require_keys(cfg, LORA_KEYS, "regime.lora")
    if int(cfg["rank"]) < 1:
        raise ValueError(f"regime.lora.rank: must be >= 1, got {cfg['rank']}")
    return LoraConfig(r=int(cfg["rank"]), lora_alpha=float(cfg["alpha"]), lora_dropout=float(cfg["dropout"]),
                      target_modules=list(cfg["target_modules"]), init_lora_weights=True)


def has_lora(unet: nn.Module) -> bool:
    return any(isinstance(m, BaseTunerLayer) for m in unet.modules())


def add_lora(unet: nn.Module, cfg: Mapping[str, Any] | LoraConfig | None) -> LoraConfig:
    """Inject LoRA layers (B initialised to zero, so outputs are unchanged until trained)."""
    config = cfg if isinstance(cfg, LoraConfig) else lora_config(cfg)
    if has_lora(unet):
        raise ValueError("add_lora: the UNet already has LoRA adapters")
    try:
        inject_adapter_in_model(config, unet)
    except ValueError as e:  # peft's message names the target modules it could not find
        raise ValueError(f"regime.lora.target_modules {list(config.target_modules)}: {e}") from None
    return config


def save_lora(unet: nn.Module, directory: str | Path) -> Path:
    """The adapter alone: adapter_config.json + adapter_model.safetensors (peft's key names)."""
    if not has_lora(unet):
        raise ValueError("save_lora: the UNet has no LoRA adapters")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    unet.peft_config["default"].save_pretrained(str(directory))
    state = {k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(unet).items()}
    save_file(state, str(directory / ADAPTER_WEIGHTS))
    return directory


def load_lora(unet: nn.Module, directory: str | Path) -> LoraConfig:
    """Inject the adapter saved in `directory` into a UNet without adapters and load its weights."""
    directory = Path(directory)
    for f in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (directory / f).is_file():
            raise FileNotFoundError(f"LoRA adapter folder {directory} has no {f}")
    try:
        config = LoraConfig.from_pretrained(str(directory))
    except (TypeError, ValueError, json.JSONDecodeError) as e:
        raise ValueError(f"{directory / ADAPTER_CONFIG}: not a LoRA adapter config ({e})") from None
    add_lora(unet, config)
    state = load_file(str(directory / ADAPTER_WEIGHTS))
    result = set_peft_model_state_dict(unet, state)
    expected = {n for n in get_peft_model_state_dict(unet)}
    missing = sorted(expected - set(state))
    if result.unexpected_keys or missing:
        raise ValueError(f"{directory / ADAPTER_WEIGHTS}: does not fit this UNet "
                         f"({len(result.unexpected_keys)} unexpected, {len(missing)} missing adapter weights)")
    return config


@torch.no_grad()
def merge_lora(unet: nn.Module) -> nn.Module:
    """Fold every LoRA layer into its base weight and put the plain layer back, so the UNet is a
    stock diffusers model again (save_pretrained-safe). In place; returns the UNet."""
    names = [n for n, m in unet.named_modules() if isinstance(m, BaseTunerLayer)]
    # Outermost first; a tuner layer's own children (lora_A, base_layer...) are not tuner layers.
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = unet.get_submodule(parent_name) if parent_name else unet
        layer = getattr(parent, child)
        layer.merge()
        setattr(parent, child, layer.get_base_layer())
    if hasattr(unet, "peft_config"):
        del unet.peft_config
    return unet
