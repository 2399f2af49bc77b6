"""An exact autoencoder for the tiny preset: every p x p patch of the image, all three colours,
turned by one fixed orthonormal matrix into p*p*3 latent channels at 1/p of the size.

Why not a small learned VAE: a randomly initialised one, even warmed up on the training windows,
reconstructs alpha with an error far above a classical matting chain's whole error, and no amount
of data lets the UNet beat its own decoder. This one loses nothing (decode(encode(x)) == x up to
float rounding), so the whole error budget is the UNet's.

The matrix is separable: an opponent colour basis ((1,1,1)/sqrt3 first) times the 2D DCT-II of the
patch (the patch mean first). Alpha travels as three equal channels, so all of it lands in the
first p*p latent channels (the rest are exactly zero) and the decoded mean of the three colours
reads only those. Latents keep the layout diffusers' video VAEs use, (N, C, H/p, W/p).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II (n, n): row k is the k-th cosine over the n samples."""
    i = torch.arange(n, dtype=torch.float64)
    m = torch.cos(math.pi * (i[None, :] + 0.5) * i[:, None] / n) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m


def opponent_colours() -> torch.Tensor:
    """Orthonormal 3x3: grey first, then red-green and yellow-blue differences."""
    return torch.tensor([[1, 1, 1], [1, -1, 0], [1, 1, -2]], dtype=torch.float64) / \
        torch.tensor([math.sqrt(3), math.sqrt(2), math.sqrt(6)], dtype=torch.float64)[:, None]


class PatchAutoencoder(ModelMixin, ConfigMixin):
    """Space-to-depth with a fixed orthonormal projection: (N, 3, H, W) <-> (N, 3*p*p, H/p, W/p)."""

    @register_to_config
    def __init__(self, patch_size: int = 4, scaling_factor: float = 0.25):
        super().__init__()
        if patch_size < 1:
            raise ValueError(f"patch_size: must be >= 1, got {patch_size}")
        d = dct_matrix(patch_size)
        basis = torch.kron(opponent_colours(), torch.kron(d, d))   # rows: latent channels, columns: unshuffled pixels
        self.register_buffer("basis", basis.float())

    @property
    def latent_channels(self) -> int:
        return 3 * self.config.patch_size ** 2

    @property
    def grey_channels(self) -> int:
        """The first p*p latent channels: all that three equal colours (alpha, a mask) reach."""
        return self.config.patch_size ** 2

    @property
    def downscale_factor(self) -> int:
        return self.config.patch_size

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W), H and W multiples of the patch size -> (N, 3*p*p, H/p, W/p), unscaled."""
        v = F.pixel_unshuffle(x, self.config.patch_size)
        return torch.einsum("oc,nchw->nohw", self.basis.to(x.dtype), v)

    def decode(self, z: torch.Tensor, num_frames: int | None = None) -> DecoderOutput:
        """The exact inverse of `encode`; frames are independent, so num_frames only matches the
        temporal VAEs' signature."""
        v = torch.einsum("oc,nohw->nchw", self.basis.to(z.dtype), z)
        return DecoderOutput(sample=F.pixel_shuffle(v, self.config.patch_size))
