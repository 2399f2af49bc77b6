"""The VideoMatte240K / RVM folder layout: the one place that knows it.

    <root>/<clip>/com/0000.png   the composite (what a model sees)
                  fgr/0000.png   straight foreground colour
                  pha/0000.png   alpha, 8-bit
                  bgr/0000.png   the background
                  hair/0000.png  the hair's share of the alpha (gvm-synth's own addition)
                  classes/0000.png  each pixel's material class, 1 + its index in
                                 clipstore.CLASS_LABELS (hair, lens, sheer, opaque objects,
                                 effects, the rest), 0 where alpha is 0 (gvm-synth's own addition)
                  others/0000.png  matted for one person of several: everyone else's coverage
                                 (gvm-synth's own addition)
                  guide/0000.png   and that person's instance mask (their coverage at half or more),
                                 what guides an instance-guided matte (gvm-synth's own addition)

Frames pair by position in file-name order. Clip folders whose name starts with a dot are still
being written and are not clips yet.
"""
from __future__ import annotations

import re
from pathlib import Path

COM, FGR, PHA, BGR, HAIR, CLASSES, OTHERS, GUIDE = "com", "fgr", "pha", "bgr", "hair", "classes", "others", "guide"
LAYERS = (COM, FGR, PHA, BGR)
DIGITS = 4
FRAME_NAME = re.compile(r"^\d+\.png(\.part)?$")  # a frame, or one being written


def frame_name(index: int, digits: int = DIGITS) -> str:
    return f"{index:0{digits}d}.png"


def frames(clip: Path, layer: str) -> list[Path] | None:
    """The frames of one layer of a clip in order, or None when the clip has no such layer."""
    folder = Path(clip) / layer
    return sorted(folder.glob("*.png")) if folder.is_dir() else None


def clip_masks(folder: str | Path, clip: str) -> str:
    """A set clip's guide masks under `folder`: `<folder>/<clip>/guide/` (a set's instance masks),
    else `<folder>/<clip>/pha/` (a prediction or a matting run of the set), else `<folder>/<clip>/`."""
    root = Path(folder) / clip
    return str(next((root / layer for layer in (GUIDE, PHA) if (root / layer).is_dir()), root))


def set_clips(path: str | Path | None) -> list[Path]:
    """The clips of a benchmark set (folders with com/), when `path` is one; else []: a video or a
    plain frame folder is matted as one input."""
    return clips(Path(path), COM) if path and Path(path).is_dir() else []


def clips(root: Path, layer: str = PHA) -> list[Path]:
    """The finished clip folders of a set that hold `layer`, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / layer).is_dir())
