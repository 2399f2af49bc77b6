"""A contact sheet of a store: per clip, frames composited over a checkerboard beside their alpha;
or, with `sheet.outputs=true`, one frame of every output each clip holds, side by side.

`python -m pipelines.contact_sheet store.path=<store> [sheet.clips=8 sheet.frames=4 sheet.cell=192]`
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

import clipstore
from core.checks import integer, one_of, writable
from core.cli import UserError, app, to_container
from core.colour import alpha_float
from matting import sheet


def default_path(cfg: dict) -> Path | None:
    """sheet.path, else next to a store on this disk, or under store.local_dir for one behind a URL."""
    if cfg["sheet"].get("path"):
        return Path(cfg["sheet"]["path"])
    return clipstore.location.beside(cfg["store"]["path"], ".contact_sheet.png", cfg["store"]["local_dir"])


def check(s: dict) -> None:
    """The `sheet` block's numbers (render checks them too: its sheet is drawn after the clips)."""
    for key in ("clips", "frames", "cell"):
        integer(s[key], f"sheet.{key}", 1)
    integer(s["crop"], "sheet.crop", 0)
    one_of(s["crop_on"], (*clipstore.CLASSES, "auto"), "sheet.crop_on")


def _label(clip: clipstore.Clip) -> str:
    spec = clip.attrs.get("spec", {})
    if clip.attrs.get("source") == "pseudo":
        inp = spec.get("input", {})
        return (f"{clip.clip_id}  {inp.get('name', '?')} frames {inp.get('frames', '?')}  "
                f"person={spec.get('mask_source', '?')}  score={spec.get('scores', {}).get('clip', float('nan')):.3f}")
    worn = [f"{k}={v['kind']}" if "kind" in v else f"{k}={v['frame']}/{v['lens_material']['lens']}" if "frame" in v
            else k for k, v in (spec.get("worn") or {}).items() if v]
    if spec.get("held"):
        worn.append(f"held={spec['held']['kind']}" + ("+steam" if spec["held"].get("steam") else ""))
    if spec.get("effects"):
        worn.append(f"air={spec['effects']['kind']}")
    crowd = spec.get("people") or {}
    if crowd.get("count", 1) > 1:
        worn.insert(0, f"people={crowd['count']} {crowd['layout']}")
    return (f"{clip.clip_id}  motion={spec.get('motion', {}).get('name', '?')}  "
            f"hair={spec.get('hair', {}).get('geometry', {}).get('style', '?')}  "
            f"body={spec.get('body', {}).get('model', {}).get('kind', '?')}  frames={clip.n_frames}"
            + "".join(f"  {w}" for w in worn))


def edge_window(alpha: np.ndarray, focus: np.ndarray | None, size: int) -> tuple[slice, slice]:
    """The size x size window on `focus` (a mask; if it is set anywhere) holding the most of it,
    its fractional alpha counting five times: where a matte is hardest."""
    import cv2
    weight = ((alpha > 0.02) & (alpha < 0.98)).astype(np.float32)
    if focus is not None and focus.any():
        weight = focus.astype(np.float32) * (1.0 + 4.0 * weight)
    size = min(size, *alpha.shape)
    box = cv2.boxFilter(weight, -1, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)
    # of the windows holding as much, the one centred on it (a small blob fits many windows)
    centred = cv2.GaussianBlur(weight, (0, 0), size / 4)
    box += 1e-3 * max(float(box.max()), 1e-12) * centred / max(float(centred.max()), 1e-12)
    cy, cx = np.unravel_index(int(np.argmax(box)), box.shape)
    y0 = int(np.clip(cy - size // 2, 0, alpha.shape[0] - size))
    x0 = int(np.clip(cx - size // 2, 0, alpha.shape[1] - size))
    return slice(y0, y0 + size), slice(x0, x0 + size)


AUTO = ("volume", "sheer", "lens", "effects", "opaque_objects", "hair")   # crop_on=auto: the first a frame shows


def focus(clip: clipstore.Clip, i: int, crop_on: str) -> np.ndarray | None:
    """Where frame i's close-up looks: the hair (`alpha_hair`, else the hair labels), or another
    material class by the `parts` labels (`auto`: the first of AUTO the frame shows, so each clip
    of a hard-case store is seen at what makes it hard); None when the clip does not say."""
    if crop_on == "hair" and "alpha_hair" in clip.arrays:
        return alpha_float(clip["alpha_hair"][i]) > 0.02
    if "parts" not in clip.arrays:
        return None
    legend = clip["parts"].attrs.get("parts") or clipstore.OUTPUTS["parts"].parts
    masks = clipstore.class_masks(clip["parts"][i], legend)
    if crop_on == "auto":
        crop_on = next((c for c in AUTO if masks[c].any()), "hair")
    return masks[crop_on]


def write(root, out: Path, clips: int, frames: int, cell: int, crop: int = 0,
          ids: list[str] | None = None, crop_on: str = "hair") -> Path | None:
    """Write the sheet for up to `clips` complete clips (of `ids`, if given); None when there are
    none. A clip of several people shows each one's coverage in their own colour beside the frame,
    others alpha in grey. With `crop` > 0 each row ends with a crop x crop pixel close-up and its alpha where the
    `crop_on` material class (clipstore.CLASSES: hair, lens, ...) is most see-through."""
    ids = (clipstore.complete_ids(root) if ids is None else ids)[:clips]
    if not ids:
        return None
    rows = []
    for cid in ids:
        clip = clipstore.read_clip(root, cid)
        tiles = []
        for i in np.linspace(0, clip.n_frames - 1, frames).round().astype(int):
            a = alpha_float(clip["alpha"][i])
            matte = sheet.instances(clip["instances"][i]) if "instances" in clip.arrays else np.repeat(a[..., None], 3, 2)
            pair = np.concatenate([sheet.over_checker(clip["fgr"][i], a), matte], axis=1)
            tiles.append(sheet.tile(pair, long_side=cell * pair.shape[1] // max(a.shape)))
        if crop > 0:
            ys, xs = edge_window(a, focus(clip, i, crop_on), crop)
            close = np.concatenate([sheet.over_checker(clip["fgr"][i][ys, xs], a[ys, xs]),
                                    np.repeat(a[ys, xs][..., None], 3, 2)], axis=1)
            h = tiles[-1].shape[0]     # as tall as the frames beside it, nearest-neighbour
            w = h * close.shape[1] // close.shape[0]
            rows_, cols = np.arange(h) * close.shape[0] // h, np.arange(w) * close.shape[1] // w
            tiles.append(sheet.rgb8(close)[rows_][:, cols])
        rows.append(sheet.row(tiles, _label(clip)))
    return sheet.write(out, sheet.grid(rows))


def write_outputs(root, out: Path, clips: int, cell: int, ids: list[str] | None = None) -> Path | None:
    """One row per clip: the middle frame of every output it holds, side by side, each shown by what
    it is (matting.sheet.view), with the outputs named above their columns."""
    ids = (clipstore.complete_ids(root) if ids is None else ids)[:clips]
    if not ids:
        return None
    rows, names = [], []
    for cid in ids:
        clip = clipstore.read_clip(root, cid)
        i = (clip.n_frames - 1) // 2   # the middle, never the last: its flow is none
        a = alpha_float(clip["alpha"][i])
        shown = [n for n in clipstore.OUTPUTS if n in clip.arrays] + sorted(set(clip.arrays) - set(clipstore.OUTPUTS))
        tiles = []
        for name in shown:
            o = clipstore.declared(name, dict(clip[name].attrs))
            tiles.append(sheet.tile(sheet.view(o.convert if o else "", clip[name][i], a), long_side=cell))
        rows.append(sheet.row(tiles, _label(clip)))
        names = names if len(names) >= len(shown) else shown
    return sheet.write(out, sheet.grid(rows, names, column_width=rows[0].shape[1] // len(names)))


@app("render")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    check(c["sheet"])
    clipstore.location.configure(c["store"]["path"], c["store"]["options"])
    try:
        root = clipstore.open_store(c["store"]["path"])
    except clipstore.StoreError as e:
        raise UserError(str(e)) from None
    s = c["sheet"]
    path = default_path(c)
    if path is None:
        raise UserError(f"store {c['store']['path']} is not on this disk: give sheet.path=<file.png>")
    writable(path, "sheet.path", folder=False)
    if s["outputs"]:
        path = path.with_name(path.name.replace(".contact_sheet", ".outputs"))
    out = (write_outputs(root, path, s["clips"], s["cell"]) if s["outputs"]
           else write(root, path, s["clips"], s["frames"], s["cell"], s["crop"], crop_on=s["crop_on"]))
    if out is None:
        raise UserError(f"store {c['store']['path']} has no complete clips")
    print(out)
    return 0


if __name__ == "__main__":
    main()
