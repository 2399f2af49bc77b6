"""Contact sheets: rows of image tiles with a label above each row and an optional column header.

Every picture of clips this project writes (a store's sheet, a benchmark set's, the loop's
predictions) is laid out here; callers only choose the tiles and the words.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from matting.image import resize

LABEL_H = 14  # pixels of the label strip above a row


def rgb8(img: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) from uint8 or float [0, 1] images, grey or colour."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
    if a.ndim == 2:
        a = a[..., None]
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a[..., :3]


def checker(h: int, w: int, square: int | None = None) -> np.ndarray:
    """(H, W, 1) float32 grey checkerboard, for showing what is transparent."""
    square = square or max(4, h // 16)
    y, x = np.mgrid[:h, :w]
    return np.where(((y // square) + (x // square)) % 2, 0.75, 0.45).astype(np.float32)[..., None]


def over_checker(fgr: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Foreground (uint8 RGB) over a checkerboard with its alpha (float [0, 1]) as float RGB."""
    a = np.asarray(alpha, np.float32)[..., None]
    return fgr.astype(np.float32) / 255 * a + checker(*a.shape[:2]) * (1 - a)


PALETTE = np.array([[0, 0, 0], [230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178],
                    [213, 94, 0], [204, 121, 167], [150, 150, 150], [255, 255, 255]], np.uint8)   # labels, colour-blind safe


def view(convert: str, frame: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """One frame of any output as a picture, by what its converter made (clipstore.outputs):
    foreground over a checkerboard, coverage and multipliers in grey, distance in a near-red
    colour map, flow as hue (direction) and brightness (speed), labels in a palette, each person's
    coverage (instances) in the palette's colour for that person."""
    import cv2
    seen = alpha > 0.5 / 65535
    if convert == "foreground":
        return over_checker(frame, alpha)
    if convert == "distance":
        d = frame.astype(np.float32)
        lo, hi = (d[seen].min(), d[seen].max()) if seen.any() else (0.0, 1.0)
        near = np.clip((hi - d) / max(hi - lo, 1e-6), 0, 1)
        return np.where(seen[..., None], cv2.applyColorMap((near * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1], 0)
    if convert == "flow":
        f = frame.astype(np.float32)
        speed = np.hypot(f[..., 0], f[..., 1])
        # Scaled to the covered pixels' fast end, not the fastest pixel: a strand covering a few
        # thousandths of a pixel may move far faster than the person and would leave the rest black.
        solid = alpha > 0.5 if (alpha > 0.5).any() else seen
        top = max(float(np.percentile(speed[solid], 99)) if solid.any() else 0.0, 1e-3)
        hsv = np.stack([(np.degrees(np.arctan2(f[..., 1], f[..., 0])) % 360) / 2, np.full_like(speed, 255),
                        np.clip(speed / top, 0, 1) * 255], axis=-1).astype(np.uint8)
        return np.where(seen[..., None], cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB), 0)
    if convert == "label":
        return PALETTE[np.minimum(frame, len(PALETTE) - 1)]
    if convert == "instances":
        return instances(frame)
    if frame.dtype == np.uint16:
        return frame.astype(np.float32) / 65535
    return frame


def instances(frame: np.ndarray) -> np.ndarray:
    """People's coverage (H, W, K) as one picture: person k in the palette's colour 1 + k."""
    share = frame.astype(np.float32) / 65535
    return np.einsum("hwk,kc->hwc", share, PALETTE[1:1 + share.shape[-1]].astype(np.float32) / 255)


def tile(img: np.ndarray, height: int | None = None, long_side: int | None = None) -> np.ndarray:
    """An image as a uint8 RGB tile scaled to `height`, or to `long_side` on its longer side."""
    t = rgb8(img)
    h, w = t.shape[:2]
    scale = height / h if height else long_side / max(h, w)
    return resize(t, (max(1, round(w * scale)), max(1, round(h * scale))))


def _strip(width: int, labels: Sequence[str], positions: Sequence[int]) -> np.ndarray:
    head = Image.new("RGB", (width, LABEL_H), "white")
    draw = ImageDraw.Draw(head)
    for text, x in zip(labels, positions):
        draw.text((x + 4, 1), text, fill="black")
    return np.asarray(head)


def row(tiles: Sequence[np.ndarray], label: str | None = None) -> np.ndarray:
    """Tiles side by side (same height), with `label` in a strip above them."""
    out = np.concatenate([rgb8(t) for t in tiles], axis=1)
    return out if label is None else np.concatenate([_strip(out.shape[1], [label], [0]), out])


def grid(rows: Sequence[np.ndarray], columns: Sequence[str] | None = None,
         column_width: int | None = None) -> np.ndarray:
    """Rows stacked, padded on the right with white to the widest; `columns` labels a header strip
    above them, one label every `column_width` pixels (default: the width split evenly)."""
    width = max(r.shape[1] for r in rows)
    body = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    if not columns:
        return body
    step = column_width or width // len(columns)
    return np.concatenate([_strip(width, columns, [i * step for i in range(len(columns))]), body])


def write(path: str | Path, image: np.ndarray) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return path
