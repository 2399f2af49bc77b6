"""A contact sheet of a store: per clip, frames composited over a checkerboard beside their alpha.

`python -m pipelines.contact_sheet store.path=<store> [sheet.clips=8 sheet.frames=4 sheet.cell=192]`
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from PIL import Image, ImageDraw

from pipelines import store
from pipelines.cli import UserError, app, to_container

LABEL_H = 14


def default_path(cfg: dict) -> Path:
    if cfg["sheet"].get("path"):
        return Path(cfg["sheet"]["path"])
    p = Path(cfg["store"]["path"])
    return p.with_name(p.name.removesuffix(".zarr") + ".contact_sheet.png")


def _checker(h: int, w: int, square: int) -> np.ndarray:
    y, x = np.mgrid[:h, :w]
    return np.where(((y // square) + (x // square)) % 2, 0.75, 0.45).astype(np.float32)[..., None]


def _tile(fgr: np.ndarray, alpha16: np.ndarray, cell: int) -> np.ndarray:
    a = (alpha16.astype(np.float32) / store.ALPHA_MAX)[..., None]
    comp = fgr.astype(np.float32) / 255 * a + _checker(*alpha16.shape, max(4, alpha16.shape[0] // 16)) * (1 - a)
    pair = np.concatenate([comp, np.repeat(a, 3, axis=2)], axis=1)
    img = Image.fromarray(np.round(pair * 255).astype(np.uint8))
    scale = cell / max(fgr.shape[:2])
    return np.asarray(img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS))


def write(root, out: Path, clips: int, frames: int, cell: int) -> Path | None:
    """Write the sheet for up to `clips` complete clips; None when the store has none."""
    ids = store.complete_ids(root)[:clips]
    if not ids:
        return None
    rows = []
    for cid in ids:
        clip = store.read_clip(root, cid)
        t = np.linspace(0, clip.n_frames - 1, frames).round().astype(int)
        tiles = [_tile(clip["fgr"][i], clip["alpha"][i], cell) for i in t]
        row = np.concatenate(tiles, axis=1)
        spec = clip.attrs.get("spec", {})
        label = (f"{cid}  motion={spec.get('motion', {}).get('name', '?')}  "
                 f"hair={spec.get('hair', {}).get('geometry', {}).get('style', '?')}  "
                 f"body={spec.get('body', {}).get('model', {}).get('kind', '?')}  frames={clip.n_frames}")
        head = Image.new("RGB", (row.shape[1], LABEL_H), "white")
        ImageDraw.Draw(head).text((4, 1), label, fill="black")
        rows.append(np.concatenate([np.asarray(head), row], axis=0))
    width = max(r.shape[1] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(out)
    return out


@app("render")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    try:
        root = store.open_store(c["store"]["path"])
    except store.StoreError as e:
        raise UserError(str(e)) from None
    s = c["sheet"]
    out = write(root, default_path(c), s["clips"], s["frames"], s["cell"])
    if out is None:
        raise UserError(f"store {c['store']['path']} has no complete clips")
    print(out)
    return 0


if __name__ == "__main__":
    main()
