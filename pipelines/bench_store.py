"""`python -m pipelines.bench_store store.path=<rendered store>` (`make bench-store`): what the store's codecs cost.

Each clip of the store (at most `bench.clips`) is written again, whole, into a temporary store once per
setting of `bench.settings` (store keys: `image_codec`, `jpegxl_effort`, the levels), as the renderer
writes it, and read back. Printed as `name: value` lines, per setting:
- <setting>_over_png: bytes of fgr + alpha in the store over lossless PNG of the same frames (8-bit RGB,
  16-bit grey; OpenCV's PNG at `bench.png_level`), and fgr_/alpha_ each alone; all_arrays_mib: the whole
  clip's bytes, every output, per clip.
- <setting>_encode_over_render: seconds writing a frame (every array) over the seconds Cycles took to
  render it (the clip's own record).
- <setting>_decode_fps: frames of fgr + alpha read back per second, in this process (the loader's work).
Every read is checked equal to what was written.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from omegaconf import DictConfig

import clipstore
from core.cli import UserError, app, to_container


def png_bytes(frames: np.ndarray, level: int) -> int:
    """Bytes of every frame as its own lossless PNG (RGB as 8-bit colour, uint16 grey as 16-bit)."""
    total = 0
    for f in frames:
        img = cv2.cvtColor(f, cv2.COLOR_RGB2BGR) if f.ndim == 3 else f
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, level])
        if not ok:
            raise RuntimeError("OpenCV could not encode a PNG")
        total += len(buf)
    return total


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@app("bench_store")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    b = c["bench"]
    root = clipstore.open_store(c["store"]["path"])
    ids = clipstore.complete_ids(root)[: b["clips"]]
    if not ids:
        raise UserError(f"store {c['store']['path']} has no complete clips to measure")
    settings = {name: clipstore.Compression.from_config({**c["store"], **over}) for name, over in b["settings"].items()}
    rows: dict[str, dict[str, float]] = {name: {} for name in settings}
    png = {"fgr": 0, "alpha": 0}
    frames = render_s = 0.0
    with tempfile.TemporaryDirectory(prefix="gvm-bench-store-", dir=b["workdir"]) as tmp:
        for cid in ids:
            clip = clipstore.read_clip(root, cid)
            arrays = {n: clip[n][:] for n in clip.arrays}
            attrs = dict(clip.attrs)
            kept = {k: v for k, v in attrs.items() if k not in ("complete", "checksums", "clip_id")}   # write_clip's own
            n = len(arrays["alpha"])
            frames += n
            render_s += float(attrs.get("render", {}).get("cycles_seconds") or np.nan)   # nan: not rendered here
            for name in png:
                png[name] += png_bytes(arrays[name], b["png_level"])
            for name, compression in settings.items():
                path = Path(tmp) / f"{name}.zarr"
                out = clipstore.create(path, {})
                start = time.perf_counter()
                clipstore.copy_clip(root, out, cid, kept, compression, arrays)
                r = rows[name]
                r["encode_s"] = r.get("encode_s", 0.0) + time.perf_counter() - start
                group = path / clipstore.CLIPS / cid
                for k in ("fgr", "alpha"):
                    r[f"{k}_bytes"] = r.get(f"{k}_bytes", 0) + folder_bytes(group / k)
                r["all_bytes"] = r.get("all_bytes", 0) + folder_bytes(group)
                back = clipstore.open_store(path)[clipstore.CLIPS][cid]
                start = time.perf_counter()
                got = {k: back[k][:] for k in ("fgr", "alpha")}
                r["decode_s"] = r.get("decode_s", 0.0) + time.perf_counter() - start
                if any(not np.array_equal(got[k], arrays[k]) for k in got):
                    raise RuntimeError(f"{name}: clip {cid} did not read back as written")
                shutil.rmtree(path)
    print(f"bench: {len(ids)} clip(s) of {c['store']['path']}, {int(frames)} frames at "
          f"{arrays['alpha'].shape[2]}x{arrays['alpha'].shape[1]}; PNG level {b['png_level']}", flush=True)
    for name, r in rows.items():
        print(f"{name}_over_png: {(r['fgr_bytes'] + r['alpha_bytes']) / (png['fgr'] + png['alpha']):.3f}")
        print(f"{name}_fgr_over_png: {r['fgr_bytes'] / png['fgr']:.3f}")
        print(f"{name}_alpha_over_png: {r['alpha_bytes'] / png['alpha']:.3f}")
        print(f"{name}_encode_s_per_frame: {r['encode_s'] / frames:.4f}")
        print(f"{name}_encode_over_render: " + (f"{r['encode_s'] / render_s:.5f}" if render_s > 0 else "n/a (no render record)"))
        print(f"{name}_decode_fps: {frames / r['decode_s']:.1f}")
        print(f"{name}_all_arrays_mib_per_clip: {r['all_bytes'] / len(ids) / 2 ** 20:.3f}")
    print(f"png_mib_per_clip: {(png['fgr'] + png['alpha']) / len(ids) / 2 ** 20:.3f}")
    if render_s > 0:
        print(f"render_s_per_frame: {render_s / frames:.2f}")
    return 0


if __name__ == "__main__":
    main()
