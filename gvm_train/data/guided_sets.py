"""Training windows whose guide is the real guide's output, not damaged truth.

A mask-guided model refines what its guide got wrong; damaged true alpha (gvm_train.data.guide)
teaches the kinds of damage one can name, while the guide the model will meet (the classical
matte, a pseudo-label) makes errors of its own. A guided set pairs a benchmark-layout set of
composites with true alpha (`<frames>/<clip>/{com,pha}/`, pipelines.benchmark_set over training
clips) with that guide's mattes of the same composites (`<guide>/<clip>/pha/`), and windows are
cropped from both alike. `data.guided_sets.share` of the training windows come from these sets,
the rest from the stores.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import cv2
import numpy as np
import torch

from core import seeds
from core.checks import is_number
from core.errors import UserError
from core.ranges import draw
from matting import layout


@dataclass(frozen=True)
class GuidedClip:
    name: str
    com: list[Path]
    pha: list[Path]
    guide: list[Path]


def check(cfg: Mapping[str, Any]) -> None:
    """`data.guided_sets`: share in [0, 1] and each set's two folders, present and paired."""
    share, sets = cfg.get("share"), cfg.get("sets")
    if not (is_number(share) and 0 <= share <= 1):
        raise UserError(f"data.guided_sets.share must be a number in [0, 1], got {share!r}")
    if not isinstance(sets, list):
        raise UserError(f"data.guided_sets.sets must be a list of {{frames: <set>, guide: <mattes>}}, got {sets!r}")
    for s in sets:
        if not (isinstance(s, Mapping) and set(s) == {"frames", "guide"}):
            raise UserError(f"data.guided_sets.sets: each entry is {{frames: <set>, guide: <mattes>}}, got {s!r}")


def index(sets: list[Mapping[str, str]]) -> list[GuidedClip]:
    """Every clip of every set with its composite, true alpha and guide frames, paired by position."""
    out = []
    for s in sets:
        clips = layout.clips(Path(s["frames"]), layout.COM)
        if not clips:
            raise ValueError(f"data.guided_sets: {s['frames']} holds no clips (<clip>/com/)")
        for clip in clips:
            com, pha = layout.frames(clip, layout.COM), layout.frames(clip, layout.PHA)
            guide = layout.frames(Path(s["guide"]) / clip.name, layout.PHA)
            if not pha or guide is None or not (len(com) == len(pha) == len(guide)):
                raise ValueError(f"data.guided_sets: {clip.name} needs as many com/, pha/ and guide "
                                 f"{Path(s['guide']) / clip.name / layout.PHA} frames "
                                 f"({len(com)}, {len(pha or [])}, {len(guide or [])})")
            out.append(GuidedClip(clip.name, com, pha, guide))
    return out


class GuidedSetWindows(torch.utils.data.Dataset):
    """`length` windows of (rgb, alpha, mask); item i is a pure function of (seed, i). Crops are
    square, `data.crop_scale` of the frame's short side, centred on the person (where the true
    alpha is) and resized to `data.size`, as store windows are."""

    def __init__(self, clips: list[GuidedClip], cfg: dict[str, Any], seed: int, length: int):
        if not clips:
            raise ValueError("no guided clips to sample windows from")
        self.clips, self.cfg, self.seed, self.length = clips, cfg, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        cfg = self.cfg
        rng = np.random.default_rng(seeds.derive(self.seed, "guided_set", i) % 2**63)
        clip = self.clips[int(rng.integers(len(self.clips)))]
        t, n = cfg["frames"], len(clip.com)
        stride = int(draw(cfg["stride"], rng, "data.stride"))
        while stride > 1 and (t - 1) * stride + 1 > n:
            stride -= 1
        start = int(rng.integers(max(1, n - (t - 1) * stride)))
        idx = [min(start + k * stride, n - 1) for k in range(t)]
        grey = lambda p: cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255  # noqa: E731
        alpha = np.stack([grey(clip.pha[k]) for k in idx])
        h, w = alpha.shape[1:]
        side = min(h, w, max(8, int(round(min(h, w) * draw(cfg["crop_scale"], rng, "data.crop_scale")))))
        ys, xs = np.nonzero(alpha[0] > 0.5)   # the person: crops land on it, where the guide's errors are
        pick = int(rng.integers(max(1, len(ys))))
        cy, cx = (int(ys[pick]), int(xs[pick])) if len(ys) else (h // 2, w // 2)
        y0 = int(np.clip(cy - side // 2 + rng.integers(-side // 4, side // 4 + 1), 0, h - side))
        x0 = int(np.clip(cx - side // 2 + rng.integers(-side // 4, side // 4 + 1), 0, w - side))
        size = cfg["size"]
        fit = lambda a: cv2.resize(a[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)  # noqa: E731
        rgb = np.stack([fit(cv2.cvtColor(cv2.imread(str(clip.com[k])), cv2.COLOR_BGR2RGB).astype(np.float32) / 255)
                        for k in idx])
        alpha = np.stack([fit(a) for a in alpha])
        mask = np.stack([fit(grey(clip.guide[k])) for k in idx])
        if rng.uniform() < cfg["augment"]["hflip"]:
            rgb, alpha, mask = rgb[:, :, ::-1], alpha[:, :, ::-1], mask[:, :, ::-1]
        to_t = lambda x: torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)  # noqa: E731
        return {"rgb": to_t(rgb), "alpha": to_t(alpha[..., None]), "mask": to_t(mask[..., None]),
                "weight": to_t(np.ones_like(alpha)[..., None]), "clip": clip.name, "start": start, "stride": stride,
                "index": i}


class Mixed(torch.utils.data.Dataset):
    """Item i from `guided` with probability `share` (drawn from (seed, i)), else from `windows`;
    the keys both give (a batch mixes them)."""

    KEYS = ("rgb", "alpha", "mask", "weight", "clip", "start", "stride", "index")

    def __init__(self, windows: torch.utils.data.Dataset, guided: torch.utils.data.Dataset, share: float, seed: int):
        self.windows, self.guided, self.share, self.seed = windows, guided, share, seed
        # What the latent cache keys its pool on (data settings, guided_sets included, and clips).
        self.cfg, self.usable, self.guide = windows.cfg, windows.usable, windows.guide

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = (self.guided if seeds.unit("guided_share", self.seed, i) < self.share else self.windows)[i]
        return {k: item[k] for k in self.KEYS}
