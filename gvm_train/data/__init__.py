"""Training data: windows sampled from stores (`windows`), the backgrounds they are composited
onto (`backgrounds`) and an optional disk cache of their VAE latents (`latent_cache`)."""
from gvm_train.data.windows import ClipRef, WindowDataset, check, index_stores, mask_weight, split

__all__ = ["ClipRef", "WindowDataset", "check", "index_stores", "mask_weight", "split"]
