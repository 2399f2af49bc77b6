"""Training windows from gvm-synth stores.

A sample is T frames of one clip (with a temporal stride), cropped and resized, its foreground
colour-jittered and composited onto a background. Sample i is a pure function of (seed, i), so
a training run resumed at sample i sees exactly the data an uninterrupted run would have seen.
Validation holds out whole clips, chosen by a hash of store and clip id. Clips whose `source` is
listed under `data.masks.sources` hold binary segmentation masks, not mattes (their `fgr` is the
real frame): the loss ignores a band around the mask edge (`weight` 0 there) and, by default,
they are used as they are instead of being composited.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

import clipstore
from clipstore.location import name as store_name
from core import seeds
from core.checks import integer, is_number
from core.errors import UserError
from core.colour import linear_to_srgb, srgb_to_linear
from core.ranges import draw, ends
from gvm_train.data import guide, guided_sets
from gvm_train.data.backgrounds import Backgrounds
from matting.image import disc


@dataclass(frozen=True)
class ClipRef:
    store: str          # the store's absolute path or URL
    store_index: int
    clip_id: str
    source: str
    n_frames: int
    height: int
    width: int
    arrays: tuple[str, ...]   # what the clip holds beside fgr and alpha (bgr, shadow, ...)


def index_stores(paths: list[str]) -> list[ClipRef]:
    """Every complete clip of every store, each checked whole first (clipstore.intact: nothing
    damaged goes into training or a benchmark); a store without one is an error naming it."""
    if not paths:
        raise ValueError("data.stores is empty: give at least one store path")
    refs = []
    for i, p in enumerate(paths):
        root = clipstore.open_store(p)
        ids = clipstore.intact(root, p)
        if not ids:
            raise ValueError(f"store {p} has no complete clips")
        for cid in ids:
            clip = clipstore.read_clip(root, cid)
            t, h, w = clip["alpha"].shape
            refs.append(ClipRef(clipstore.absolute(p), i, cid, clip.attrs.get("source", "synthetic"), t, h, w,
                                tuple(clip.arrays)))
    return refs


def split(refs: list[ClipRef], val_fraction: float, val_min_clips: int) -> tuple[list[ClipRef], list[ClipRef]]:
    """Held-out clips by a stable hash of (store name, clip id): adding clips never moves others."""
    score = {(r.store, r.clip_id): seeds.unit("split", store_name(r.store), r.clip_id) for r in refs}
    ranked = sorted(refs, key=lambda r: score[(r.store, r.clip_id)])
    n_val = sum(v < val_fraction for v in score.values())
    n_val = min(max(n_val, val_min_clips if len(refs) > 1 else 0), len(refs) - 1)
    val = ranked[:n_val]
    held = {(r.store, r.clip_id) for r in val}
    return [r for r in refs if (r.store, r.clip_id) not in held], val


def _jitter(rgb: np.ndarray, rng: np.random.Generator, cfg: dict, where: str) -> np.ndarray:
    """Brightness, contrast and saturation, drawn once per window so frames stay consistent."""
    b = draw(cfg["brightness"], rng, f"{where}.brightness")
    c = draw(cfg["contrast"], rng, f"{where}.contrast")
    s = draw(cfg["saturation"], rng, f"{where}.saturation")
    grey = rgb.mean(-1, keepdims=True)
    rgb = grey + (rgb - grey) * s
    mean = rgb.mean()
    return np.clip((rgb - mean) * c + mean, 0, None) * b


def mask_weight(mask: np.ndarray, band_px: int) -> np.ndarray:
    """(T, H, W) binary-ish mask -> loss weight: 0 within band_px of its edge, where a segmentation
    mask says nothing about the true (fractional) alpha, 1 elsewhere."""
    if band_px <= 0:
        return np.ones_like(mask, dtype=np.float32)
    kernel = disc(band_px)
    out = np.empty(mask.shape, np.float32)
    for t, m in enumerate(mask >= 0.5):
        m = m.astype(np.uint8)
        out[t] = cv2.dilate(m, kernel) == cv2.erode(m, kernel)
    return out


def check(cfg: dict[str, Any]) -> None:
    """The `data` values a window needs, checked before any store is opened (and by every dataset)."""
    integer(cfg["frames"], "data.frames", 1)
    integer(cfg["size"], "data.size", 8)
    try:
        strides = ends(cfg["stride"], "data.stride")
    except ValueError as e:
        raise UserError(str(e)) from None
    if not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in strides):
        raise UserError(f"data.stride must be a positive integer or an integer range, got {cfg['stride']!r}")
    lo, hi = cfg["crop_scale"] if isinstance(cfg["crop_scale"], (list, tuple)) else (cfg["crop_scale"],) * 2
    if not (is_number(lo) and is_number(hi) and 0 < lo <= hi <= 1):
        raise UserError(f"data.crop_scale must be [low, high] with 0 < low <= high <= 1, got {cfg['crop_scale']!r}")
    if not (is_number(cfg["val_fraction"]) and 0 <= cfg["val_fraction"] < 1):
        raise UserError(f"data.val_fraction must be a number in [0, 1), got {cfg['val_fraction']!r}")
    integer(cfg["val_min_clips"], "data.val_min_clips", 0)
    unknown = sorted(set(cfg["source_weights"]) - set(clipstore.SOURCES))
    if unknown:
        raise UserError(f"data.source_weights: {', '.join(unknown)} is not a source (known: {', '.join(clipstore.SOURCES)})")
    try:
        guide.check(cfg["guide_mask"])
    except ValueError as e:
        raise UserError(str(e)) from None
    guided_sets.check(cfg["guided_sets"])


class WindowDataset(torch.utils.data.Dataset):
    """`length` windows; item i is drawn from a generator seeded by (seed, i). With `guide`, each
    also holds `mask`: its alpha damaged into a coarse mask (gvm_train.data.guide). In a clip of
    several people a share of windows (`data.instances`) teaches one person's alpha (`target`: their
    channel of `instances`; -1: everyone's), the others composited in the frame as background."""

    def __init__(self, refs: list[ClipRef], cfg: dict[str, Any], seed: int, length: int, guide: bool = False):
        check(cfg)
        if not refs:
            raise ValueError("no clips to sample windows from")
        self.refs, self.cfg, self.seed, self.length, self.guide = refs, cfg, seed, length, guide
        self.backgrounds = Backgrounds(cfg["backgrounds"])
        self._clips: dict[tuple[str, str], clipstore.Clip] = {}
        stride_max = int(max(ends(cfg["stride"], "data.stride")))
        span = (cfg["frames"] - 1) * stride_max + 1
        longest = max(r.n_frames for r in refs)
        if span > longest:
            raise ValueError(f"data.frames={cfg['frames']} at stride {stride_max} spans {span} frames, "
                             f"longer than the longest clip ({longest} frames): lower data.frames or data.stride, "
                             f"or render longer clips")
        self.usable = [r for r in refs if r.n_frames >= span]
        self.weights = self._clip_weights(self.usable)

    def _clip_weights(self, refs: list[ClipRef]) -> np.ndarray:
        n_stores = max(r.store_index for r in refs) + 1
        per_store = np.bincount([r.store_index for r in refs], minlength=n_stores).astype(float)
        sw = self.cfg.get("store_weights")
        store_w = np.asarray(sw, float) if sw is not None else per_store
        if len(store_w) != n_stores or (store_w < 0).any():
            raise ValueError(f"data.store_weights must be {n_stores} non-negative numbers, got {sw}")
        src = self.cfg["source_weights"]
        w = np.array([store_w[r.store_index] / per_store[r.store_index] * float(src.get(r.source, 0.0))
                      for r in refs])
        if w.sum() <= 0:
            raise ValueError("data.store_weights and data.source_weights leave no clip with a positive weight")
        return w / w.sum()

    def __len__(self) -> int:
        return self.length

    def _clip(self, ref: ClipRef) -> clipstore.Clip:
        """Opened lazily, once per clip per loader worker (handles do not cross process forks)."""
        key = (ref.store, ref.clip_id)
        if key not in self._clips:
            self._clips[key] = clipstore.read_clip(clipstore.open_store(ref.store), ref.clip_id)
        return self._clips[key]

    def __getitem__(self, i: int) -> dict[str, Any]:
        cfg = self.cfg
        rng = np.random.default_rng([self.seed, i])
        ref = self.usable[int(rng.choice(len(self.usable), p=self.weights))]
        t = cfg["frames"]
        stride = int(draw(cfg["stride"], rng, "data.stride"))
        while (t - 1) * stride + 1 > ref.n_frames:  # a short clip takes the largest stride that fits
            stride -= 1
        start = int(rng.integers(ref.n_frames - (t - 1) * stride))
        frames = slice(start, start + (t - 1) * stride + 1, stride)
        side = int(round(min(ref.height, ref.width) * draw(cfg["crop_scale"], rng, "data.crop_scale")))
        y0, x0 = int(rng.integers(ref.height - side + 1)), int(rng.integers(ref.width - side + 1))
        clip = self._clip(ref)
        crop = (frames, slice(y0, y0 + side), slice(x0, x0 + side))
        size = cfg["size"]
        resize = lambda a: np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in a])  # noqa: E731
        read = lambda name: resize(clipstore.declared(name, dict(clip[name].attrs)).to_float(clip[name][crop]))  # noqa: E731
        fgr, alpha = read("fgr"), read("alpha")
        label, target = alpha, None   # what the window teaches: everyone, or one person with the others as background
        if "instances" in ref.arrays and rng.uniform() < cfg["instances"]["others_background"]:
            people = clip["instances"].shape[-1]
            target = 0 if cfg["instances"]["target"] == "first" else int(rng.integers(people))
            label = read("instances")[..., target] if people > 1 else alpha
        bg_cfg = cfg["backgrounds"]
        if "bgr" in ref.arrays and rng.uniform() < bg_cfg["plate_probability"]:
            bg = read("bgr")   # the clip's own plate, darkened where the person's shadow falls on it
            if "shadow" in ref.arrays:
                bg = linear_to_srgb(srgb_to_linear(bg) * read("shadow"))
        else:
            bg = self.backgrounds(t, size, rng)
        if rng.uniform() < cfg["augment"]["hflip"]:
            fgr, alpha, bg, label = fgr[:, :, ::-1], alpha[:, :, ::-1], bg[:, :, ::-1], label[:, :, ::-1]
        fgr = np.clip(_jitter(fgr, rng, cfg["augment"]["fgr"], "data.augment.fgr"), 0, 1)
        bg = np.clip(_jitter(bg, rng, cfg["augment"]["bg"], "data.augment.bg"), 0, 1)
        masks = cfg["masks"]
        is_mask = ref.source in masks["sources"]
        weight = mask_weight(label, masks["band_px"]) if is_mask else np.ones_like(label)
        a = alpha[..., None]
        if is_mask and not masks["composite"]:
            rgb = fgr  # a segmentation source's fgr is the real frame itself
        elif cfg["composite_space"] == "linear":
            rgb = linear_to_srgb(srgb_to_linear(fgr) * a + srgb_to_linear(bg) * (1 - a))
        elif cfg["composite_space"] == "srgb":
            rgb = fgr * a + bg * (1 - a)
        else:
            raise ValueError(f"data.composite_space must be srgb or linear, got {cfg['composite_space']!r}")
        to_t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)  # noqa: E731
        out = {"rgb": to_t(rgb), "alpha": to_t(label[..., None]), "fgr": to_t(fgr), "bg": to_t(bg),
               "weight": to_t(weight[..., None]), "clip": f"{store_name(ref.store)}/{ref.clip_id}", "start": start,
               "stride": stride, "index": i, "target": -1 if target is None else target}
        if self.guide:   # the guide is of whom the window teaches: a person's own mask guides their own matte
            out["mask"] = to_t(guide.degrade(label, cfg["guide_mask"], guide.rng_for(self.seed, i))[..., None])
        return out
