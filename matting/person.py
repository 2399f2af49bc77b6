"""Which pixels are the person: segmenter probabilities or user masks -> one bool mask per frame.

Footage often holds several people, and segmenters mark them all. The subject is one connected
region per frame, chosen by a stated rule: `largest`, or `track` (the region that overlaps the
previous frame's subject most, starting from the largest in the first frame). User masks follow
the DAVIS / YouTube-VOS layout: `<masks>/<video>/<frame>.png`, binary or instance-indexed (a
palette PNG whose values are object ids), one per frame in name order.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from PIL import Image

from matting.video import VideoError, natural_key, video_name

RULES = ("largest", "track")


def subject(mask: np.ndarray, rule: str, previous: np.ndarray | None = None) -> np.ndarray:
    """The one connected region of a bool mask that is the subject (all False when there is none)."""
    if rule not in RULES:
        raise ValueError(f"people: {rule!r} is not one of {', '.join(RULES)}")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    pick = 1 + int(np.argmax(areas))
    if rule == "track" and previous is not None and previous.any():
        overlap = np.bincount(labels[previous], minlength=n)[1:]
        if overlap.max() > 0:
            pick = 1 + int(np.argmax(overlap))
    return labels == pick


def mask_files(masks_dir: str | Path, video: Path) -> list[Path]:
    """The mask PNGs of one video: <masks_dir>/<video stem or folder name>/*.png in name order."""
    folder = Path(masks_dir) / video_name(video)
    if not folder.is_dir():
        raise VideoError(f"{video.name}: no mask folder {folder}")
    files = sorted(folder.glob("*.png"), key=natural_key)
    if not files:
        raise VideoError(f"{video.name}: mask folder {folder} holds no .png files")
    return files


def check_masks(files: list[Path], n_frames: int, width: int, height: int, video: Path) -> None:
    """Masks must match the video one to one: same count, same size (checked before any work)."""
    if len(files) != n_frames:
        raise VideoError(f"{video.name}: {len(files)} masks in {files[0].parent} for {n_frames} frames")
    for f in (files[0], files[-1]):
        with Image.open(f) as im:
            if im.size != (width, height):
                raise VideoError(f"{video.name}: mask {f.name} is {im.size[0]}x{im.size[1]}, the video {width}x{height}")


def read_mask(path: Path, instance: int | None) -> np.ndarray:
    """bool (H, W): a binary mask's foreground, or one instance's pixels of an indexed mask (any
    non-zero id when `instance` is None)."""
    with Image.open(path) as im:
        if im.mode == "P":                        # DAVIS / YouTube-VOS: palette indices are the ids
            ids = np.asarray(im)
        else:
            a = np.asarray(im.convert("L"))
            ids = a if instance is not None else (a > 127)
    if instance is None:
        return np.asarray(ids) > 0
    return np.asarray(ids) == instance


def instance_ids(files: list[Path]) -> list[int]:
    """Every object id an indexed mask sequence holds (palette PNGs; any frame), ascending; a binary
    sequence holds one object, id 1 ... here, none but its foreground: [] (use instance=null)."""
    ids: set[int] = set()
    for f in files:
        with Image.open(f) as im:
            if im.mode == "P":
                ids.update(int(i) for i in np.unique(np.asarray(im)) if i > 0)
    return sorted(ids)


def masks(files: list[Path], start: int, stop: int, instance: int | None) -> Iterator[np.ndarray]:
    for f in files[start:stop]:
        yield read_mask(f, instance)


def guide_files(folder: str | Path, video: Path, n_frames: int, width: int, height: int) -> list[Path]:
    """A mask-guided model's masks for one video: `<folder>/<video>/*.png` (DAVIS layout) or, when
    that does not exist, the PNGs in `folder` itself (a pseudo-label's or a matting run's pha/);
    at least `n_frames` of the video's size."""
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise VideoError(f"mask: {root} is not a folder")
    nested = root / video_name(video)
    files = sorted((nested if nested.is_dir() else root).glob("*.png"), key=natural_key)
    if not files:
        raise VideoError(f"mask: no .png files in {nested if nested.is_dir() else root}")
    if len(files) < n_frames:
        raise VideoError(f"mask: {len(files)} masks in {files[0].parent} for {n_frames} frames")
    check_masks(files[:n_frames], n_frames, width, height, video)
    return files[:n_frames]


def read_guide(path: Path) -> np.ndarray:
    """float32 (H, W) in [0, 1]: palette ids -> any object; grey (8 or 16 bit) -> its value."""
    with Image.open(path) as im:
        if im.mode == "P":
            return (np.asarray(im) > 0).astype(np.float32)
        a = np.asarray(im)
    if a.ndim == 3:
        a = a[..., 0]
    return (a.astype(np.float32) / (65535.0 if a.dtype == np.uint16 or a.max() > 255 else 255.0)).clip(0, 1)
