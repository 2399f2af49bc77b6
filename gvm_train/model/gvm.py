"""The generative video matting model: an SVD-family UNet that turns RGB video latents into alpha.

GVM's recipe on top of Stable Video Diffusion: the RGB clip's VAE latents are concatenated to the
4 alpha latents (8 UNet input channels, the same count as SVD's noisy + conditioning latents), the
CLIP image embedding is replaced by zeros, the added time ids are constants, and alpha travels
through the frozen 3-channel VAE as three equal channels that are averaged back after decoding.

With `mask_guided` a coarse person mask (B, F, 1, H, W) is a second condition: its latents,
encoded like alpha, follow the RGB latents (12 UNet input channels for SVD's 4-channel latents);
with `mask_residual` too, the model predicts the correction to the mask's latents rather than the
alpha latents themselves.

Two presets, both built from a plain config dict (conf/model/<preset>.yaml):
- `tiny`: a randomly initialised UNet, seeded, small enough to train on CPU (tests and demos),
          over an exact fixed autoencoder (gvm_train.model.patch_vae);
- `svd`:  `unet/` and `vae/` (and `scheduler/` when it holds a flow-matching one) of a local
          Stable Video Diffusion snapshot folder, `model.path`.
The model holds the modules and what GVM does with them (encode, decode, one UNet call); it
knows nothing of folders. gvm_train.pipeline.GVMPipeline owns the saved form, a diffusers
pipeline folder, and gvm_train.model.presets builds models from config.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from diffusers import AutoencoderKLTemporalDecoder, FlowMatchEulerDiscreteScheduler, UNetSpatioTemporalConditionModel
from diffusers.configuration_utils import ConfigMixin
from torch import nn

from gvm_train.model.patch_vae import PatchAutoencoder

PRESETS = ("tiny", "svd")
OBJECTIVES = ("flow_matching", "one_step")


class GVMModel(nn.Module, ConfigMixin):
    """UNet + frozen temporal-decoder VAE + flow-matching scheduler, with GVM's conditioning.

    Tensors follow diffusers' video layout (B, F, C, H, W). Pixels are in [0, 1]: `rgb` has C=3,
    `alpha` has C=1. Latents are scaled by the VAE's scaling factor.
    """

    config_name = "gvm_settings.json"  # ConfigMixin needs a name; pipeline folders keep settings in model_index.json

    def __init__(self, unet: UNetSpatioTemporalConditionModel, vae: AutoencoderKLTemporalDecoder,
                 scheduler: FlowMatchEulerDiscreteScheduler, *, preset: str = "tiny",
                 added_time_ids: Sequence[float] = (6.0, 127.0, 0.0), objective: str = "flow_matching",
                 num_steps: int = 1, sigmas: Sequence[float] | None = None, one_step_timestep: int = 999,
                 decode_chunk_size: int | None = None, mask_guided: bool = False, mask_residual: bool = False):
        super().__init__()
        # Registered by hand, not with @register_to_config: that decorator aligns positional
        # arguments against the non-ignored parameters and would shift unet/vae/scheduler.
        self.register_to_config(preset=preset, added_time_ids=[float(v) for v in added_time_ids],
                                objective=objective, num_steps=int(num_steps),
                                sigmas=None if sigmas is None else [float(s) for s in sigmas],
                                one_step_timestep=int(one_step_timestep), decode_chunk_size=decode_chunk_size,
                                mask_guided=bool(mask_guided), mask_residual=bool(mask_residual))
        self.unet = unet
        self.vae = vae
        self.scheduler = scheduler
        self.vae.requires_grad_(False)
        self.vae.eval()
        _check_settings(self)

    # -- shapes and constants ----------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        if isinstance(self.vae, PatchAutoencoder):
            return self.vae.downscale_factor
        return 2 ** (len(self.vae.config.block_out_channels) - 1)   # KL VAEs halve per block

    @property
    def latent_channels(self) -> int:
        return self.vae.latent_channels if isinstance(self.vae, PatchAutoencoder) else self.vae.config.latent_channels

    @property
    def alpha_channels(self) -> int:
        """Latent channels of alpha (and of a mask): all of the KL VAE's; the patch autoencoder's
        grey channels alone, the only ones three equal colours reach."""
        return self.vae.grey_channels if isinstance(self.vae, PatchAutoencoder) else self.latent_channels

    @property
    def condition_channels(self) -> int:
        """Latent channels beside the alpha latents: RGB, and the mask's when mask-guided."""
        return self.latent_channels + (self.alpha_channels if self.config.mask_guided else 0)

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.scheduler.config.num_train_timesteps)

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def train(self, mode: bool = True) -> "GVMModel":
        super().train(mode)
        self.vae.eval()  # frozen: never in training mode, whatever the caller toggles
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.unet.parameters() if p.requires_grad]

    # -- VAE: pixels <-> latents ---------------------------------------------------------------
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) in [0, 1] -> scaled latents (B, F, 4, H/8, W/8). No gradient: the VAE is
        frozen and nothing upstream of the pixels is trained."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f"video: expected (B, F, 3, H, W), got {tuple(video.shape)}")
        b, f, _, h, w = video.shape
        s = self.vae_scale_factor
        if h % s or w % s:
            raise ValueError(f"video: height and width must be multiples of {s}, got {h}x{w}")
        x = (video.flatten(0, 1) * 2 - 1).to(self.vae.dtype)
        with torch.no_grad():
            out = self.vae.encode(x)
            z = (out.latent_dist.mode() if hasattr(out, "latent_dist") else out) * self.scaling_factor
        return z.reshape(b, f, *z.shape[1:]).to(self.dtype)

    def encode_alpha(self, alpha: torch.Tensor) -> torch.Tensor:
        """(B, F, 1, H, W) in [0, 1] -> latents; the VAE sees alpha as three equal channels."""
        if alpha.ndim != 5 or alpha.shape[2] != 1:
            raise ValueError(f"alpha: expected (B, F, 1, H, W), got {tuple(alpha.shape)}")
        return self.encode(alpha.expand(-1, -1, 3, -1, -1))[:, :, :self.alpha_channels]

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents (B, F, 4, h, w) -> pixels (B, F, 3, H, W) in about [-1, 1].

        Differentiable: the VAE's weights are frozen but gradients flow through it to the latents,
        which is what the pixel losses need. The temporal decoder mixes frames, so each chunk is
        decoded as one clip of `decode_chunk_size` frames (all frames when unset)."""
        b, f = latents.shape[:2]
        z = (latents / self.scaling_factor).to(self.vae.dtype)
        chunk = self.config.decode_chunk_size or f
        out = []
        for i in range(0, f, chunk):  # chunks split each clip's frames, never mix two clips
            part = z[:, i:i + chunk]
            n = part.shape[1]
            out.append(self.vae.decode(part.flatten(0, 1), num_frames=n).sample.unflatten(0, (b, n)))
        return torch.cat(out, dim=1).to(latents.dtype)

    def decode_alpha(self, latents: torch.Tensor, clamp: bool = True) -> torch.Tensor:
        """Latents -> alpha (B, F, 1, H, W): the mean of the three decoded channels, mapped to
        [0, 1]. Losses use clamp=False so that out-of-range values still get a gradient."""
        missing = self.latent_channels - latents.shape[2]   # the patch autoencoder's colour channels: zero for grey
        if missing:
            latents = torch.cat([latents, latents.new_zeros(*latents.shape[:2], missing, *latents.shape[3:])], dim=2)
        alpha = self.decode(latents).mean(dim=2, keepdim=True) * 0.5 + 0.5
        return alpha.clamp(0.0, 1.0) if clamp else alpha

    def condition(self, rgb: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """What the UNet sees beside the alpha latents: RGB (B, F, 3, H, W) latents and, for a
        mask-guided model, the latents of the coarse mask (B, F, 1, H, W) in [0, 1] after them."""
        rgb_latents = self.encode(rgb)
        if not self.config.mask_guided:
            if mask is not None:
                raise ValueError("mask: this model is not mask-guided (model.gvm.mask_guided=false)")
            return rgb_latents
        if mask is None:
            raise ValueError("mask: this model is mask-guided and needs a coarse mask beside the video")
        return torch.cat([rgb_latents, self.encode_alpha(mask)], dim=2)

    def base_latents(self, condition: torch.Tensor) -> torch.Tensor | float:
        """What the model's clean prediction is added to: the mask's latents when `mask_residual`
        (the model learns the correction to its guide), else nothing."""
        return condition[:, :, -self.alpha_channels:] if self.config.mask_residual else 0.0

    def alpha_shape(self, condition: torch.Tensor) -> tuple[int, ...]:
        """The shape of the alpha latents that go with a condition (B, F, C, h, w)."""
        return (*condition.shape[:2], self.alpha_channels, *condition.shape[3:])

    # -- UNet ------------------------------------------------------------------------------------
    def forward(self, alpha_latents: torch.Tensor, condition: torch.Tensor,
                timestep: torch.Tensor | float | int) -> torch.Tensor:
        """One UNet call: alpha-side latents (noisy, or zeros in one-step mode) beside the condition
        latents (`condition`); returns the alpha-latent prediction (velocity or clean latent)."""
        if alpha_latents.shape != self.alpha_shape(condition) or condition.shape[2] != self.condition_channels:
            raise ValueError(f"alpha_latents {tuple(alpha_latents.shape)} and condition {tuple(condition.shape)} "
                             f"do not fit: {self.alpha_channels} alpha and {self.condition_channels} condition "
                             "channels of one size")
        b = alpha_latents.shape[0]
        sample = torch.cat([alpha_latents, condition], dim=2).to(self.dtype)
        # SVD cross-attends to one CLIP image token; GVM feeds a zero token instead.
        context = torch.zeros(b, 1, self.unet.config.cross_attention_dim, device=sample.device, dtype=sample.dtype)
        time_ids = torch.tensor(self.config.added_time_ids, device=sample.device, dtype=sample.dtype).expand(b, -1)
        if not torch.is_tensor(timestep):
            timestep = torch.tensor(timestep, device=sample.device)
        return self.unet(sample, timestep.to(sample.device), encoder_hidden_states=context,
                         added_time_ids=time_ids).sample

    # -- diffusers folders -------------------------------------------------------------------------
    def settings(self) -> dict[str, Any]:
        """The GVM settings (constructor keywords besides the three components)."""
        return {k: copy.deepcopy(v) for k, v in self.config.items() if not k.startswith("_")}


def _check_settings(model: GVMModel) -> None:
    """Fail at build time, with the key named, rather than deep inside the first forward pass."""
    c = model.config
    if c.preset not in PRESETS:
        raise ValueError(f"model.preset: unknown preset {c.preset!r} (known: {', '.join(PRESETS)})")
    if c.objective not in OBJECTIVES:
        raise ValueError(f"model.gvm.objective: unknown objective {c.objective!r} (known: {', '.join(OBJECTIVES)})")
    if not 1 <= c.num_steps <= 1000:
        raise ValueError(f"model.gvm.num_steps: must be at least 1, got {c.num_steps}")
    if c.sigmas is not None:
        check_sigmas(c.sigmas, "model.gvm.sigmas")
        if len(c.sigmas) != c.num_steps:
            raise ValueError(f"model.gvm.sigmas: {len(c.sigmas)} values for num_steps={c.num_steps}")
    if not 0 <= c.one_step_timestep < model.num_train_timesteps:
        raise ValueError(f"model.gvm.one_step_timestep: {c.one_step_timestep} outside [0, {model.num_train_timesteps})")
    if c.mask_residual and not c.mask_guided:
        raise ValueError("model.gvm.mask_residual: needs model.gvm.mask_guided=true (the residual is over the mask)")
    if c.decode_chunk_size is not None and c.decode_chunk_size < 1:
        raise ValueError(f"model.gvm.decode_chunk_size: must be null or >= 1, got {c.decode_chunk_size}")
    u, n = model.unet.config, model.alpha_channels
    if u.in_channels != n + model.condition_channels or u.out_channels != n:
        what = "alpha + RGB + mask" if c.mask_guided else "alpha + RGB"
        raise ValueError(f"unet: in_channels={u.in_channels}, out_channels={u.out_channels}; GVM needs "
                         f"{n + model.condition_channels} in ({what} latents) and {n} out")
    if not isinstance(u.cross_attention_dim, int):
        raise ValueError(f"unet: cross_attention_dim must be one int, got {u.cross_attention_dim}")
    expected = u.projection_class_embeddings_input_dim // u.addition_time_embed_dim
    if len(c.added_time_ids) != expected:
        raise ValueError(f"model.gvm.added_time_ids: {len(c.added_time_ids)} values, the UNet takes {expected}")


def check_sigmas(sigmas: Sequence[float], name: str) -> None:
    if not sigmas or any(not 0 < s <= 1 for s in sigmas) or any(a <= b for a, b in zip(sigmas, sigmas[1:])):
        raise ValueError(f"{name}: must be strictly decreasing values in (0, 1], got {list(sigmas)}")
