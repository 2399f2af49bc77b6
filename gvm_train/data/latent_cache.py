"""Optional disk cache of VAE latents: a fixed pool of training windows encoded once.

The frozen VAE's encode is about half of a tiny training step on CPU and a large share on a GPU.
With `train.latent_cache.windows=K`, windows 0..K-1 of the training set are encoded once and
training sample i reads pool entry i % K: K windows of fixed augmentation replace an endless
stream of fresh ones, which is the trade. The pool lives in a folder named by a hash of
everything it depends on (data config, clips, seed, VAE weights), so a changed input never
reads a stale pool; it is written under a temporary name and renamed when whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core import done, stops
from gvm_train.model import GVMModel



def vae_digest(model: GVMModel) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.vae.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def cache_key(dataset: Any, model: GVMModel, windows: int) -> str:
    clips = [(r.store, r.clip_id, r.n_frames) for r in dataset.usable]
    record = json.dumps({"data": dataset.cfg, "clips": clips, "seed": dataset.seed, "windows": windows,
                         "vae": vae_digest(model), "guide": dataset.guide}, sort_keys=True, default=str)
    return hashlib.sha256(record.encode()).hexdigest()[:16]


def build(dataset: Any, model: GVMModel, windows: int, root: Path, batch_size: int = 4) -> Path:
    """The pool folder for (dataset, model), encoding it first when it does not exist yet."""
    from tqdm import tqdm
    folder = root / cache_key(dataset, model, windows)
    if done.is_done(folder):
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    out: dict[str, np.lib.format.open_memmap] = {}
    with torch.no_grad():
        for start in tqdm(range(0, windows, batch_size), desc="caching latents", unit="batch"):
            stops.check()
            items = [dataset[i] for i in range(start, min(start + batch_size, windows))]
            batch = torch.utils.data.default_collate(items)
            # rgb/alpha (and a mask-guided model's mask) latents feed the UNet; alpha and weight the pixel losses.
            values = {"rgb_latents": model.encode(batch["rgb"].to(model.device)),
                      "alpha_latents": model.encode_alpha(batch["alpha"].to(model.device)),
                      "alpha": batch["alpha"], "weight": batch["weight"]}
            if "mask" in batch:
                values["mask_latents"] = model.encode_alpha(batch["mask"].to(model.device))
            for name, v in values.items():
                v = v.float().cpu().numpy()
                if name not in out:
                    out[name] = np.lib.format.open_memmap(tmp / f"{name}.npy", "w+", np.float32, (windows, *v.shape[1:]))
                out[name][start:start + len(v)] = v
    for a in out.values():
        a.flush()
    done.mark(tmp, {"windows": windows, "arrays": sorted(out)})  # last, then renamed: a pool exists whole or not at all
    os.replace(tmp, folder)
    return folder


class CachedWindows(torch.utils.data.Dataset):
    """Sample i of a run: pool entry i % K (latents and the pixel-loss targets)."""

    def __init__(self, folder: Path, length: int):
        self.folder, self.length = folder, length
        self.windows = done.read(folder)["windows"]
        self._arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self._arrays is None:  # memory-mapped lazily, once per loader worker
            self._arrays = {n: np.load(self.folder / f"{n}.npy", mmap_mode="r") for n in done.read(self.folder)["arrays"]}
        return {n: torch.from_numpy(np.array(a[i % self.windows])) for n, a in self._arrays.items()}
