"""GVMPipeline: a diffusers pipeline that mattes a video of any length.

    pipe = GVMPipeline.from_pretrained("runs/a/final")
    alphas = pipe(frames, window=8, overlap=2).alphas      # (T, H, W) float32 in [0, 1]

The video is cut into windows of `window` frames that overlap by `overlap`; each window's clean
alpha latents are predicted, and where windows overlap their latents are cross-faded with weights
that ramp across the overlap before the VAE decodes them. Flow-matching noise is drawn per
absolute frame, so two windows start from the same noise on the frames they share and agree
more where they are blended. A last window that would run past the end is moved back to end on
the last frame; a video shorter than a window is padded by repeating its last frame.

A mask-residual model predicts a correction to its guide mask; the correction is resized back and
added to the mask at the input's own resolution, so the detail of a fine guide (a pseudo-label, the
classical matte) that the model's smaller working size cannot hold is kept, and a model that has
learnt nothing returns its guide unchanged.

Frames are resized (short side, capped long side), padded to a size the UNet can halve as often
as it needs, and un-padded and resized back afterwards. `stream()` yields alpha frames in order
as soon as no later window can change them, holding only about one window in memory, so videos
longer than memory go through it (gvm_train.infer uses it).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from diffusers import AutoencoderKLTemporalDecoder, FlowMatchEulerDiscreteScheduler, UNetSpatioTemporalConditionModel
from diffusers.pipelines.pipeline_utils import DiffusionPipeline
from diffusers.utils import BaseOutput

from core import seeds
from gvm_train.model import GVMModel, load_unet_vae
from gvm_train.model.objectives import sample_clean_latents
from gvm_train.model.regimes import has_lora

INDEX = "model_index.json"


@dataclass
class GVMPipelineOutput(BaseOutput):
    alphas: np.ndarray  # (T, H, W) float32 in [0, 1], the input's size


def window_starts(n_frames: int, window: int, overlap: int) -> list[int]:
    """First frame of each window: every `window - overlap` frames, the last one moved back so
    that it ends on the last frame (never past it, never leaving a tail uncovered)."""
    if window < 1 or not 0 <= overlap < window:
        raise ValueError(f"window={window}, overlap={overlap}: need window >= 1 and 0 <= overlap < window")
    if n_frames < 1:
        raise ValueError("the video has no frames")
    if n_frames <= window:
        return [0]
    step = window - overlap
    starts = list(range(0, n_frames - window + 1, step))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return starts


def crossfade_weights(window: int, overlap: int) -> np.ndarray:
    """Per-frame weights of one window: 1 inside, ramping down to 1/(overlap+1) at either end, so
    that in an overlap the earlier window fades out as the later one fades in."""
    j = np.arange(window)
    return np.minimum(1.0, np.minimum(j + 1, window - j) / (overlap + 1)).astype(np.float32)


def unit(a: np.ndarray) -> np.ndarray:
    """A frame or mask as float32 in [0, 1]: uint8 scaled by 1/255, anything else as it is."""
    return np.asarray(a, np.float32) / (255.0 if a.dtype == np.uint8 else 1.0)


@dataclass(frozen=True)
class Geometry:
    """How frames of one size are brought to the model and back."""
    height: int
    width: int
    scaled: tuple[int, int]   # (h, w) after resizing
    padded: tuple[int, int]   # (h, w) after padding

    @classmethod
    def plan(cls, height: int, width: int, multiple: int, short_side: int | None, max_long_side: int | None) -> "Geometry":
        scale = 1.0
        if short_side:
            scale = short_side / min(height, width)
        if max_long_side and max(height, width) * scale > max_long_side:
            scale = max_long_side / max(height, width)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        pad = lambda x: -(-x // multiple) * multiple  # noqa: E731
        return cls(height, width, (h, w), (pad(h), pad(w)))

    def to_model(self, frame: np.ndarray) -> torch.Tensor:
        """uint8 (H, W, 3) -> float (3, h', w') in [0, 1], resized and edge-padded; a mask (H, W),
        float in [0, 1] or bool, -> (1, h', w') the same way."""
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame of size {frame.shape[1]}x{frame.shape[0]} in a video of "
                             f"{self.width}x{self.height}")
        x = unit(frame)
        h, w = self.scaled
        if (h, w) != (self.height, self.width):
            interp = cv2.INTER_AREA if h < self.height else cv2.INTER_LINEAR
            x = cv2.resize(x, (w, h), interpolation=interp)
        x = cv2.copyMakeBorder(x, 0, self.padded[0] - h, 0, self.padded[1] - w, cv2.BORDER_REPLICATE)
        return torch.from_numpy(x.reshape(*x.shape[:2], -1)).permute(2, 0, 1)

    def from_model(self, alpha: np.ndarray, clip: bool = True) -> np.ndarray:
        """(h', w') -> (H, W): un-pad, resize back, clip to [0, 1] (a correction: not clipped)."""
        h, w = self.scaled
        alpha = alpha[:h, :w]
        if (h, w) != (self.height, self.width):
            alpha = cv2.resize(alpha, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return (np.clip(alpha, 0.0, 1.0) if clip else alpha).astype(np.float32)


class GVMPipeline(DiffusionPipeline):
    """Video -> alpha with a GVM model (UNet + frozen VAE + flow-matching scheduler).

    Saved and loaded as a diffusers folder: unet/, vae/, scheduler/ and model_index.json, whose
    `gvm` entry holds the model's settings (objective, steps, conditioning constants)."""

    model_cpu_offload_seq = "vae->unet"

    def __init__(self, unet: UNetSpatioTemporalConditionModel, vae: AutoencoderKLTemporalDecoder,
                 scheduler: FlowMatchEulerDiscreteScheduler, gvm: dict[str, Any] | None = None):
        super().__init__()
        self.register_modules(unet=unet, vae=vae, scheduler=scheduler)
        self.register_to_config(gvm=dict(gvm or {}))
        # The same modules seen through GVMModel, whose methods know GVM's conditioning.
        self.model = GVMModel(unet, vae, scheduler, **(gvm or {}))

    @classmethod
    def from_model(cls, model: GVMModel) -> "GVMPipeline":
        return cls(model.unet, model.vae, model.scheduler, gvm=model.settings())

    def save_pretrained(self, directory: str | Path, **kwargs: Any) -> Path:
        """The diffusers pipeline folder: unet/, vae/, scheduler/ and model_index.json (which names
        this class and holds, under `gvm`, the settings inference needs to use the model the way it
        was trained). Refused while LoRA adapters are injected: their reload would silently
        re-initialise the attention weights."""
        if has_lora(self.unet):
            raise ValueError("save_pretrained: the UNet has LoRA adapters injected; save them with "
                             "gvm_train.model.regimes.save_lora or merge them with merge_lora first")
        super().save_pretrained(directory, **kwargs)
        return Path(directory)

    @classmethod
    def from_pretrained(cls, directory: Any, **overrides: Any) -> "GVMPipeline":
        """Load a folder written by save_pretrained, checking each part and keeping weights bit-exact;
        `overrides` replace saved settings, e.g. num_steps or decode_chunk_size for a smaller GPU."""
        root = Path(directory).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"model folder {root} does not exist")
        index_file = root / INDEX
        if not index_file.is_file():
            raise FileNotFoundError(f"model folder {root} has no {INDEX}: not a GVM model folder "
                                    "(a Stable Video Diffusion snapshot loads with model=svd model.path=...)")
        try:
            index = json.loads(index_file.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{index_file}: not valid JSON ({e})") from None
        if index.get("_class_name") != cls.__name__ or not isinstance(index.get("gvm"), dict):
            raise ValueError(f"{index_file}: written for {index.get('_class_name')!r}, not a {cls.__name__} "
                             "with gvm settings")
        unet, vae = load_unet_vae(root, label="model folder")
        if not (root / "scheduler" / "scheduler_config.json").is_file():
            raise FileNotFoundError(f"model folder {root} has no scheduler/scheduler_config.json")
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(root, subfolder="scheduler")
        try:
            model = GVMModel(unet, vae, scheduler, **{**index["gvm"], **overrides})
        except TypeError as e:
            raise ValueError(f"{index_file}: unknown setting ({e})") from None
        return cls.from_model(model)

    @property
    def size_multiple(self) -> int:
        """Pixels must divide by the VAE's factor times each UNet down-sampling."""
        return self.model.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)

    def __call__(self, video: np.ndarray | Sequence[np.ndarray], **kwargs: Any) -> GVMPipelineOutput:
        """`video`: uint8 frames (T, H, W, 3). Keywords as for `stream`."""
        frames = list(video)
        return GVMPipelineOutput(alphas=np.stack(list(self.stream(frames, len(frames), **kwargs))))

    @torch.no_grad()
    def stream(self, frames: Iterable[np.ndarray], n_frames: int, *, masks: Iterable[np.ndarray] | None = None,
               window: int | None = None, overlap: int = 2,
               num_inference_steps: int | None = None, sigmas: Sequence[float] | None = None,
               short_side: int | None = None, max_long_side: int | None = None, decode_context: int = 2,
               seed: int = 0) -> Iterator[np.ndarray]:
        """Alpha frames (H, W) float32, in order, for `n_frames` uint8 RGB frames (H, W, 3) and, for a
        mask-guided model, as many coarse person masks (H, W) in [0, 1].

        window: frames per UNet call (default: the UNet's num_frames); overlap: frames shared by
        neighbouring windows and cross-faded in latent space; decode_context: already emitted
        frames decoded again in front of each new block, so the temporal decoder sees across the
        block boundary; num_inference_steps / sigmas: flow-matching schedule (default: saved)."""
        model = self.model
        window = int(window or self.unet.config.num_frames)
        starts = window_starts(n_frames, window, overlap)
        weights = torch.from_numpy(crossfade_weights(window, overlap))
        guided = model.config.mask_guided
        if guided != (masks is not None):
            raise ValueError("masks: a mask-guided model needs one mask per frame" if guided else
                             "masks: this model is not mask-guided")
        residual = model.config.mask_residual
        source, mask_source = iter(frames), iter(masks) if guided else None
        geo: Geometry | None = None
        pixels: dict[int, torch.Tensor] = {}     # model-space frames read and not yet encoded (mask channel last)
        guides: dict[int, np.ndarray] = {}       # residual: each frame's mask at full size, until emitted
        base: dict[int, torch.Tensor] = {}       # residual: each frame's mask latents
        acc: dict[int, torch.Tensor] = {}        # frame -> weighted latent sum of the windows so far
        wsum: dict[int, float] = {}
        done: list[tuple[torch.Tensor, torch.Tensor | None]] = []   # the last decode_context (final, base) latents
        emitted = read = 0
        bar = self.progress_bar(total=len(starts))
        for k, start in enumerate(starts):
            idx = [min(start + j, n_frames - 1) for j in range(window)]  # a short video repeats its last frame
            while read <= idx[-1]:
                frame = next(source, None)
                if frame is None:
                    raise ValueError(f"the video ended after {read} of {n_frames} frames")
                geo = geo or Geometry.plan(*frame.shape[:2], self.size_multiple, short_side, max_long_side)
                pixels[read] = geo.to_model(frame)
                if guided:
                    mask = next(mask_source, None)
                    if mask is None:
                        raise ValueError(f"the masks ended after {read} of {n_frames} frames")
                    pixels[read] = torch.cat([pixels[read], geo.to_model(mask)])
                    if residual:
                        guides[read] = unit(mask)
                read += 1
            x = torch.stack([pixels[i] for i in idx])[None].to(model.device, model.dtype)
            cond = model.condition(x[:, :, :3], x[:, :, 3:] if guided else None)
            noise = self._noise(idx, model.alpha_shape(cond)[2:], seed).to(cond)
            clean = sample_clean_latents(model, cond, num_steps=num_inference_steps, sigmas=sigmas, noise=noise)[0]
            for j, i in enumerate(dict.fromkeys(idx)):  # repeated padding frames count once
                w = float(weights[j])
                acc[i] = acc.get(i, 0) + w * clean[j]
                wsum[i] = wsum.get(i, 0.0) + w
                if residual:
                    base.setdefault(i, model.base_latents(cond)[0, j])
            final_upto = starts[k + 1] if k + 1 < len(starts) else n_frames
            block = [(acc.pop(i) / wsum.pop(i), base.pop(i, None)) for i in range(emitted, final_upto)]
            for i in range(emitted, final_upto):
                pixels.pop(i, None)
            if block:
                context = done[-decode_context:] if decode_context else []
                latents = lambda k: torch.stack([pair[k] for pair in context + block])[None]  # noqa: E731
                alpha = model.decode_alpha(latents(0), clamp=not residual)[0, len(context):, 0].float().cpu().numpy()
                if residual:   # the correction, at full size, over the full-size guide
                    alpha -= model.decode_alpha(latents(1), clamp=False)[0, len(context):, 0].float().cpu().numpy()
                for n, a in enumerate(alpha):
                    i = emitted + n
                    yield np.clip(guides.pop(i) + geo.from_model(a, clip=False), 0, 1) if residual else geo.from_model(a)
                done = (done + block)[-max(decode_context, 1):]
                emitted = final_upto
            bar.update()
        bar.close()

    @torch.no_grad()
    def autoencode(self, alphas: Iterable[np.ndarray], *, short_side: int | None = None,
                   max_long_side: int | None = None) -> Iterator[np.ndarray]:
        """Alpha frames (H, W) in [0, 1] through the model's autoencoder alone, resized as `stream`
        resizes frames: the best any UNet output could give back at that size (the model's ceiling)."""
        model, geo = self.model, None
        for a in alphas:
            geo = geo or Geometry.plan(*a.shape[:2], self.size_multiple, short_side, max_long_side)
            x = geo.to_model(np.asarray(a, np.float32))[None, None].to(model.device, model.dtype)
            yield geo.from_model(model.decode_alpha(model.encode_alpha(x))[0, 0, 0].float().cpu().numpy())

    @staticmethod
    def _noise(frame_index: Sequence[int], shape: Sequence[int], seed: int) -> torch.Tensor:
        """(1, F, C, h, w) noise where frame i's draw depends on (seed, i) alone."""
        return torch.stack([torch.randn(tuple(shape), generator=torch.Generator().manual_seed(
            seeds.derive(seed, "frame", i) % 2**63)) for i in frame_index])[None]
