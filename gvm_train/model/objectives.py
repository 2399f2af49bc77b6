"""What the model is trained to predict, how it is sampled, and the losses.

Two objectives, chosen by the model's `objective` setting:
- `flow_matching` (the paper): rectified flow between clean alpha latents x0 (t=0) and Gaussian
  noise (t=1), x_t = (1 - t) x0 + t noise; the UNet predicts the velocity noise - x0 and is told
  t * num_train_timesteps. Sampling takes 1-3 Euler steps over explicit sigmas.
- `one_step` (the released checkpoint): the alpha input is all zeros, the timestep is fixed at
  999, and the UNet's output is the clean latent itself.

Loss = latent MSE on the UNet's target + pixel losses on decoded alpha (L1, Laplacian pyramid
L1, Sobel gradient L1), weights from the `loss:` config. Everything is plain, differentiable torch;
pixel losses decode through the frozen VAE and so reach the UNet's weights.

A batch is a dict: `rgb` (B, F, 3, H, W) and `alpha` (B, F, 1, H, W) in [0, 1], either of which
may be replaced by precomputed `rgb_latents` / `alpha_latents` (alpha pixels are still needed
when a pixel loss is on), for a mask-guided model `mask` (B, F, 1, H, W) or `mask_latents`, and
optionally `weight` (B, F, 1, H, W): where it is 0 the alpha is not
trusted (the band around a binary segmentation mask's edge) and no loss term looks there; the
latent loss ignores every latent pixel whose footprint touches such a pixel.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from core.checks import require_keys
from gvm_train.model.gvm import GVMModel, check_sigmas

# The numbers live in conf/model/<preset>.yaml (`loss:`); code only knows which keys there are.
LOSS_KEYS = ("latent", "l1", "laplacian", "laplacian_levels", "gradient", "t_sampling", "t_logit_mean", "t_logit_std")
PIXEL_TERMS = ("l1", "laplacian", "gradient")


def loss_settings(cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """The `loss:` config checked: an unknown or a missing key is an error, never a silent default."""
    out = require_keys(cfg, LOSS_KEYS, "loss")
    if out["t_sampling"] not in ("uniform", "logit_normal"):
        raise ValueError(f"loss.t_sampling: {out['t_sampling']!r} is not uniform or logit_normal")
    if not any(out[k] for k in ("latent", *PIXEL_TERMS)):
        raise ValueError("loss: every weight (latent, l1, laplacian, gradient) is zero")
    if int(out["laplacian_levels"]) < 1:
        raise ValueError(f"loss.laplacian_levels: must be >= 1, got {out['laplacian_levels']}")
    return out


# -- training -----------------------------------------------------------------------------------
def training_loss(model: GVMModel, batch: Mapping[str, torch.Tensor], loss_cfg: Mapping[str, Any] | None = None, *,
                  t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """{"loss": weighted total, plus each term unweighted, detached} for the model's objective.

    `t` (B,) and `noise` fix the flow-matching draw (validation, tests); otherwise they are drawn
    from `generator` (or the global RNG)."""
    cfg = loss_settings(loss_cfg)
    cond, alpha_lat = _latents(model, batch)
    base = model.base_latents(cond)
    x0 = alpha_lat - base   # what the model generates: alpha latents, or their correction over the mask's
    if model.config.objective == "flow_matching":
        b = x0.shape[0]
        if t is None:
            t = sample_t(b, cfg, device=x0.device, generator=generator)
        t = t.to(x0.device, x0.dtype).reshape(b, 1, 1, 1, 1)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = (1 - t) * x0 + t * noise
        pred = model(x_t, cond, t.flatten() * model.num_train_timesteps)
        target = noise - x0
        pred_x0 = x_t - t * pred + base  # the clean alpha latent this velocity implies
    else:
        pred = model(torch.zeros_like(x0), cond, model.config.one_step_timestep)
        target = x0
        pred_x0 = pred + base
    weight = batch.get("weight")
    if weight is not None:
        weight = weight.to(pred.device, pred.dtype)
        latent_w = min_pool(weight.flatten(0, 1), model.vae_scale_factor).unflatten(0, weight.shape[:2])
        terms = {"latent": weighted_mean((pred - target) ** 2, latent_w)}
    else:
        terms = {"latent": F.mse_loss(pred, target)}
    if any(cfg[k] for k in PIXEL_TERMS):
        if "alpha" not in batch:
            raise ValueError("batch: pixel losses are on (loss.l1/laplacian/gradient) but the batch has no 'alpha'")
        terms.update(pixel_losses(model.decode_alpha(pred_x0, clamp=False), batch["alpha"].to(pred.device, pred.dtype),
                                  cfg, weight))
    total = sum(cfg[k] * v for k, v in terms.items() if cfg[k])
    return {"loss": total, **{k: v.detach() for k, v in terms.items()}}


def sample_t(batch_size: int, cfg: Mapping[str, Any], device: torch.device | str = "cpu",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Training times in (0, 1): uniform, or logit-normal (more weight mid-path) from the config."""
    if cfg["t_sampling"] == "logit_normal":
        z = torch.randn(batch_size, generator=generator, device=device)
        return torch.sigmoid(z * float(cfg["t_logit_std"]) + float(cfg["t_logit_mean"]))
    return torch.rand(batch_size, generator=generator, device=device)


def _latents(model: GVMModel, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(condition, alpha latents) of a batch, encoding whatever is not precomputed."""
    def get(name: str, encode) -> torch.Tensor:
        if f"{name}_latents" in batch:
            return batch[f"{name}_latents"].to(model.device, model.dtype)
        if name in batch:
            return encode(batch[name].to(model.device))
        raise ValueError(f"batch: needs '{name}' or '{name}_latents'" +
                         (" (the model is mask-guided)" if name == "mask" else ""))
    cond = get("rgb", model.encode)
    if model.config.mask_guided:
        cond = torch.cat([cond, get("mask", model.encode_alpha)], dim=2)
    return cond, get("alpha", model.encode_alpha)


# -- sampling -------------------------------------------------------------------------------------
def flow_sigmas(num_steps: int) -> list[float]:
    """Evenly spaced noise levels 1 .. 1/num_steps (0 is the implicit end point)."""
    if num_steps < 1:
        raise ValueError(f"num_steps: must be >= 1, got {num_steps}")
    return [1 - i / num_steps for i in range(num_steps)]


def sample_flow_matching(model: GVMModel, condition: torch.Tensor, sigmas: Sequence[float], *,
                         noise: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler integration of the predicted velocity from sigmas[0] down to 0; returns clean latents.

    Plain torch, so it is differentiable when called with gradients enabled."""
    check_sigmas(list(sigmas), "sigmas")
    if noise is None:
        noise = torch.randn(model.alpha_shape(condition), generator=generator, device=condition.device,
                            dtype=condition.dtype)
    # Starting below sigma=1 means starting from a noised zero-alpha prior rather than pure noise.
    x = noise * sigmas[0]
    levels = [*map(float, sigmas), 0.0]
    b = condition.shape[0]
    for s, s_next in zip(levels, levels[1:]):
        v = model(x, condition, torch.full((b,), s * model.num_train_timesteps, device=x.device))
        x = x + (s_next - s) * v
    return x


def predict_one_step(model: GVMModel, condition: torch.Tensor) -> torch.Tensor:
    """The released checkpoint's mode: zeros in, fixed timestep, clean latent out."""
    zeros = torch.zeros(model.alpha_shape(condition), device=condition.device, dtype=condition.dtype)
    return model(zeros, condition, model.config.one_step_timestep)


def sample_clean_latents(model: GVMModel, condition: torch.Tensor, *, num_steps: int | None = None,
                         sigmas: Sequence[float] | None = None, noise: torch.Tensor | None = None,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """Clean alpha latents for a condition (GVMModel.condition) by the model's objective; num_steps /
    sigmas override the saved flow-matching schedule, `noise` fixes its starting draw."""
    if model.config.objective == "one_step":
        return predict_one_step(model, condition) + model.base_latents(condition)
    if sigmas is None:
        sigmas = (flow_sigmas(num_steps) if num_steps is not None
                  else model.config.sigmas or flow_sigmas(model.config.num_steps))
    return sample_flow_matching(model, condition, sigmas, noise=noise, generator=generator) + model.base_latents(condition)


@torch.no_grad()
def predict_alpha(model: GVMModel, rgb: torch.Tensor, mask: torch.Tensor | None = None, *,
                  num_steps: int | None = None, sigmas: Sequence[float] | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """RGB (B, F, 3, H, W) in [0, 1] (and a mask-guided model's mask (B, F, 1, H, W)) -> alpha
    (B, F, 1, H, W) in [0, 1], one window at a time (whole videos: gvm_train.pipeline.GVMPipeline)."""
    cond = model.condition(rgb.to(model.device), None if mask is None else mask.to(model.device))
    latents = sample_clean_latents(model, cond, num_steps=num_steps, sigmas=sigmas, generator=generator)
    return model.decode_alpha(latents, clamp=True)


# -- losses -----------------------------------------------------------------------------------------
def pixel_losses(pred: torch.Tensor, target: torch.Tensor, cfg: Mapping[str, Any],
                 weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The pixel terms whose weight is non-zero, on alpha (..., 1, H, W); `weight` (same shape)
    masks pixels out of every term."""
    p, g = pred.flatten(0, -4), target.flatten(0, -4)  # every leading axis into one batch axis
    w = None if weight is None else weight.flatten(0, -4)
    out = {}
    if cfg.get("l1"):
        out["l1"] = weighted_mean((p - g).abs(), w)
    if cfg.get("laplacian"):
        out["laplacian"] = laplacian_pyramid_loss(p, g, int(cfg["laplacian_levels"]), w)
    if cfg.get("gradient"):
        out["gradient"] = sobel_gradient_loss(p, g, w)
    return out


def weighted_mean(err: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """mean(err), or the weight-averaged err (weight broadcast over err's channels)."""
    if weight is None:
        return err.mean()
    w = weight.expand_as(err)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def min_pool(weight: torch.Tensor, factor: int) -> torch.Tensor:
    """(N, 1, H, W) -> (N, 1, H/factor, W/factor): 0 wherever any pixel of the cell is 0."""
    return -F.max_pool2d(-weight, factor, ceil_mode=True) if factor > 1 else weight


def _binomial_kernel(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=x.device, dtype=x.dtype)
    k2 = torch.outer(k, k) / 256.0
    return k2.expand(x.shape[1], 1, 5, 5)


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), kernel, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Band-pass images finest first, then the low-pass residual: `levels` maps in all.

    Each band is the image minus the upsampled (zero-insertion + blur) version of its blurred,
    decimated copy, so together they reconstruct the image."""
    kernel = _binomial_kernel(x)
    bands, cur = [], x
    for _ in range(levels - 1):
        if min(cur.shape[-2:]) < 2:
            break
        down = _blur(cur, kernel)[..., ::2, ::2]
        up = torch.zeros_like(cur)
        up[..., ::2, ::2] = down * 4  # x4 restores the mean the zeros removed
        bands.append(cur - _blur(up, kernel))
        cur = down
    bands.append(cur)
    return bands


def laplacian_pyramid_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = 3,
                           weight: torch.Tensor | None = None) -> torch.Tensor:
    """Sum over levels of 2^i * mean |band_i(pred) - band_i(target)| on (N, C, H, W).

    Coarser bands hold fewer, smaller-valued pixels; the 2^i weight keeps them from vanishing
    next to the fine bands, where hair detail lives. A weight map follows the pyramid: a band
    pixel is trusted only if every pixel its two 5x5 blurs reach is."""
    pa, pb = laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels)
    total, w = 0.0, weight
    for i, (a, b) in enumerate(zip(pa, pb)):
        band_w = None
        if w is not None:
            band_w = w if i == len(pa) - 1 else erode(w, 9)  # the low-pass residual is the decimated image itself
            w = erode(w, 5)[..., ::2, ::2]
        total = total + (2 ** i) * weighted_mean((a - b).abs(), band_w)
    return total


def erode(weight: torch.Tensor, size: int) -> torch.Tensor:
    """Min over a size x size window (edges replicated), keeping the shape."""
    r = size // 2
    return -F.max_pool2d(-F.pad(weight, (r, r, r, r), mode="replicate"), size, stride=1)


def sobel_gradient_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """mean |d/dx pred - d/dx target| + mean |d/dy ...| with Sobel filters on (N, C, H, W); a
    weight map is eroded by the filter's 3x3 footprint."""
    gx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=pred.device, dtype=pred.dtype) / 8
    kernel = torch.stack([gx, gx.T]).unsqueeze(1).repeat(pred.shape[1], 1, 1, 1)  # (2C, 1, 3, 3)

    def grad(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=x.shape[1])
    w = None if weight is None else erode(weight, 3).repeat_interleave(2, dim=1)  # x and y maps per channel
    return 2 * weighted_mean((grad(pred) - grad(target)).abs(), w)
