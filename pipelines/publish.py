"""`python -m pipelines.publish`: a store becomes a release others download, verify, load and cite.

    python -m pipelines.publish store=data/synth.zarr output_dir=releases/v1
    python -m pipelines.publish verify releases/v1

Publishing reads the store's complete clips (never writes to it), refuses clips made with the
licensed SMPL-X model or AMASS motions unless `allow_licensed=true` (naming them), assigns
splits by identity (pipelines.release), packs shards in both formats, exports the VideoMatte240K
layout, writes previews, `clips.csv` / `arrays.csv`, the card (README.md), CITATION.cff,
Croissant metadata and, last, the manifest of every file with its sha256. A rerun reuses every
shard whose clips and settings are unchanged (recorded in `.state/`). `verify` checks a
downloaded (or partly downloaded) release against its manifest: it names every missing,
truncated or altered file, lists the shards that are whole, and exits 0 only when all files are.
"""
from __future__ import annotations

import datetime as dt
from fractions import Fraction
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

import clipstore
from core import done, provenance, stops
from core.checks import writable
from core.conf import load as load_conf
from core.cli import ArgumentParser, UserError, app, fail, guarded, to_container
from core.colour import alpha_float
from matting import sheet
from matting.video import MatteWriter, VideoSink
from pipelines import card, contact_sheet, release

STATE = ".state"


def check(c: dict) -> dict:
    if not c.get("store"):
        raise UserError("store: give the store to publish (store=PATH)")
    if not c.get("output_dir"):
        raise UserError("output_dir: give the release folder to write (output_dir=PATH)")
    bad = sorted(set(c["formats"]) - set(release.FORMATS))
    if bad or not c["formats"]:
        raise UserError(f"formats: {c['formats']} must name some of {', '.join(release.FORMATS)}")
    shares = c["splits"]
    if set(shares) != set(release.SPLITS) or any(not isinstance(v, (int, float)) or v < 0 for v in shares.values()) \
            or sum(shares.values()) <= 0:
        raise UserError(f"splits: give non-negative shares for exactly {', '.join(release.SPLITS)}, got {shares}")
    if not (isinstance(c["shard_bytes"], (int, float)) and c["shard_bytes"] > 0):
        raise UserError(f"shard_bytes: {c['shard_bytes']!r} is not a positive number")
    out = writable(c["output_dir"], "output_dir").resolve()
    if not clipstore.is_url(str(c["store"])) and Path(c["store"]).resolve() == out:
        raise UserError("output_dir is the store itself; publish into another folder")
    return c


def _stored_bytes(group: Any) -> int:
    return sum(a.nbytes_stored() for _, a in group.arrays())


def _attrs(root: Any, cid: str) -> dict:
    try:
        return dict(root[clipstore.CLIPS][cid].attrs)
    except Exception:   # noqa: BLE001 - unreadable metadata: verified() names the clip
        return {}


def collect(root: Any, c: dict) -> tuple[list[str], dict[str, dict], dict[str, str], dict[str, int], dict[str, tuple]]:
    """Complete clips, verified, their published attrs, splits, stored bytes and alpha shapes;
    licensed clips refused first (from their attributes alone, before any data is read)."""
    raw = {cid: a for cid in clipstore.all_ids(root) if (a := _attrs(root, cid)).get("complete") is True}
    refused = {cid: release.licensed(a) for cid, a in raw.items()}
    refused = {k: v for k, v in refused.items() if v}
    if refused and not c["allow_licensed"]:
        names = ", ".join(f"{cid} ({' + '.join(why)})" for cid, why in sorted(refused.items()))
        raise UserError(f"{len(refused)} clips were made with licensed data and are not published unless "
                        f"allow_licensed=true states that their licences allow it: {names}")
    ids = clipstore.intact(root, c["store"], progress=c["progress"])   # nothing damaged goes out, named if any
    if not ids:
        raise UserError(f"store {c['store']}: no complete clips to publish")
    raw = {cid: raw[cid] for cid in ids}
    splits = {cid: release.split_of(release.identity(a), c["splits"], c["split_salt"]) for cid, a in raw.items()}
    attrs = {cid: release.published_attrs(a, splits[cid]) for cid, a in raw.items()}
    sizes = {cid: _stored_bytes(root[clipstore.CLIPS][cid]) for cid in ids}
    shapes = {cid: tuple(root[clipstore.CLIPS][cid]["alpha"].shape) for cid in ids}
    return ids, attrs, splits, sizes, shapes


def write_shards(root: Any, out: Path, shards: list[release.Shard], attrs: dict, store_attrs: dict, c: dict) -> tuple[int, int]:
    """Every shard in every format; one whose recorded inputs match is kept as it is. (written, reused)."""
    from tqdm import tqdm
    sums = {cid: root[clipstore.CLIPS][cid].attrs.get("checksums") for s in shards for cid in s.clips}
    jobs = [(s, fmt) for s in shards for fmt in c["formats"]]
    packed = []
    try:
        for s, fmt in tqdm(jobs, desc="packing shards", unit="shard", disable=not c["progress"]):
            packed.append(_pack(root, out, s, fmt, sums, attrs, store_attrs, c))
            stops.check()
    except BaseException as e:   # the shards packed so far are whole; a rerun reuses them
        if not stops.stopping(e):
            raise
        print(f"stopped after {len(packed)} of {len(jobs)} shard(s) ({sum(packed)} written); no manifest yet",
              file=sys.stderr, flush=True)
        raise
    return sum(packed), len(packed) - sum(packed)


def _pack(root: Any, out: Path, s: release.Shard, fmt: str, sums: dict, attrs: dict, store_attrs: dict, c: dict) -> bool:
    """One shard in one format, unless one with the same recorded inputs is there; whether it was written."""
    path = out / s.path(fmt)
    state = out / STATE / (s.path(fmt).replace("/", "__") + ".json")
    root_attrs = {**store_attrs, "release": c["name"], "split": s.split}
    # What the shard's bytes depend on: its clips' arrays and published attrs, and the format's settings.
    want = json.loads(json.dumps({"format": fmt, "checksums": {cid: sums[cid] for cid in s.clips},
                                  "attrs": {cid: attrs[cid] for cid in s.clips},
                                  **({"root_attrs": root_attrs} if fmt == "zarr" else
                                     {"png_compression": c["png_compression"]})}, default=str))
    if path.is_file() and state.is_file() and json.loads(state.read_text()) == want:
        return False
    if fmt == "zarr":
        release.write_zarr_shard(path, root, s.clips, attrs, root_attrs, clipstore.Compression.default())
    else:
        release.write_wds_shard(path, root, s.clips, attrs, c["png_compression"])
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(want) + "\n")
    return True


def export_videomatte(root: Any, out: Path, ids: list[str], splits: dict[str, str], level: int) -> None:
    """exports/videomatte/<split>/<clip>/{fgr,pha}/0000.png through matting's MatteWriter, each clip
    written aside and renamed whole; one whose run.json names its checksums is kept."""
    writer = {**load_conf("writer/default"), "alpha_video": "none", "png_compression": level}
    writer["preview"] = {**writer["preview"], "enabled": False}
    for cid in ids:
        folder = out / "exports" / "videomatte" / splits[cid] / cid
        clip = clipstore.read_clip(root, cid)
        record = {"clip_id": cid, "checksums": clip.attrs.get("checksums")}
        if done.is_done(folder, record):
            continue
        tmp = folder.with_name(f".{cid}.part")
        shutil.rmtree(tmp, ignore_errors=True)
        t, h, w = clip["alpha"].shape
        with MatteWriter(tmp, clip.attrs.get("fps", 1.0), w, h, writer, n_frames=t) as sink:
            for i in range(t):
                fgr = clip["fgr"][i]
                sink.write(fgr, alpha_float(clip["alpha"][i]), fgr)
        done.mark(tmp, record)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)


def previews(root: Any, out: Path, ids: list[str], c: dict) -> list[str]:
    """previews/contact_sheet.png and, for a few clips, composites over a plain colour as GIF and MP4."""
    from PIL import Image
    p = c["previews"]
    folder = out / "previews"
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    if contact_sheet.write(root, folder / "contact_sheet.png", p["clips"], p["frames"], p["cell"], 0, ids=ids):
        made.append("previews/contact_sheet.png")
    bg = np.asarray(p["background"], np.float32)
    for cid in ids[:p["animations"]]:
        clip = clipstore.read_clip(root, cid)
        a = alpha_float(clip["alpha"][:])[..., None]
        comp = np.clip(np.rint(a * clip["fgr"][:] + (1 - a) * bg), 0, 255).astype(np.uint8)
        tiles = [sheet.tile(f, long_side=p["cell"] * 2) for f in comp]
        frames = [Image.fromarray(t) for t in tiles]
        frames[0].save(folder / f"{cid}.gif", save_all=True, append_images=frames[1:], duration=round(1000 / p["fps"]), loop=0)
        h, w = (d - d % 2 for d in tiles[0].shape[:2])    # yuv420p: even sides
        mp4 = VideoSink(folder / f"{cid}.mp4", "libx264", "yuv420p", Fraction(p["fps"]), w, h, {})
        for t in tiles:
            mp4.add(t[:h, :w], "rgb24")
        mp4.finish()
        made += [f"previews/{cid}.gif", f"previews/{cid}.mp4"]
    return made


def publish(c: dict) -> dict:
    try:
        root = clipstore.open_store(c["store"])
    except clipstore.StoreError as e:
        raise UserError(str(e)) from None
    out = Path(c["output_dir"])
    ids, attrs, splits, sizes, shapes = collect(root, c)     # refusals before anything is written
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:   # a parent that is a file, a folder not writable
        raise UserError(f"output_dir {out}: cannot be created ({e.strerror or e})") from None
    shards = release.pack(((cid, splits[cid], sizes[cid]) for cid in ids), c["shard_bytes"])
    store_attrs = {k: v for k, v in dict(root.attrs).items() if k not in ("format", "format_version", clipstore.MANIFEST)}
    # Stale shards (a split that emptied, fewer shards than before) would be listed otherwise.
    keep = {s.path(fmt) for s in shards for fmt in c["formats"]}
    for old in (out / "data").rglob("*") if (out / "data").is_dir() else []:
        if old.is_file() and old.relative_to(out).as_posix() not in keep:
            old.unlink()
    written, reused = write_shards(root, out, shards, attrs, store_attrs, c)
    if c["export_videomatte"]:
        export_videomatte(root, out, ids, splits, c["png_compression"])
    shown = previews(root, out, ids, c)
    rows = [card.clip_row(cid, attrs[cid], shapes[cid], splits[cid]) for cid in ids]
    arrays = [{"clip_id": cid, "array": name, "dtype": str(a.dtype), "shape": "x".join(map(str, a.shape))}
              for cid in ids for name, a in root[clipstore.CLIPS][cid].arrays()]
    card.write_tables(out, rows, arrays)
    shard_list = [{"split": s.split, "index": s.index, "clips": s.clips, "files": [s.path(f) for f in c["formats"]]} for s in shards]
    bodies = {}
    for cid in ids:
        m = attrs[cid].get("spec", {}).get("body", {}).get("model", {})
        if m.get("kind"):
            bodies[m["kind"]] = m.get("licence") or ("the licensed SMPL-X model (its licence terms apply)" if m["kind"] == "smplx" else "")
    if any(attrs[cid]["source"] == "pseudo" for cid in ids):
        bodies["real video (pseudo labels)"] = "the input videos' own terms"
    motions = sorted({("AMASS" if attrs[cid].get("spec", {}).get("motion", {}).get("kind") == "amass" else "procedural (gvm-synth)")
                      for cid in ids if attrs[cid]["source"] == "synthetic"})
    today = dt.date.today()
    defn_hash = store_attrs.get("dataset", {}).get("hash")
    (out / "README.md").write_text(card.card(c, rows, shard_list, store_attrs, bodies, motions, shown, defn_hash,
                                             clipstore.outputs_held(root, ids)))
    (out / "CITATION.cff").write_text(card.citation(c, today))
    (out / card.CODEC_FILE).write_text(Path(clipstore.codecs.__file__).read_text())
    sha = {f: provenance.sha256(out / f) for s in shard_list for f in s["files"]}
    sha.update({n: provenance.sha256(out / n) for n in (card.CLIPS_CSV, card.ARRAYS_CSV)})
    card.croissant(out, c, shard_list, sha, today)
    old = json.loads((out / release.MANIFEST).read_text()) if (out / release.MANIFEST).is_file() else {}
    known = {k: {**v, "mtime_ns": (out / k).stat().st_mtime_ns} for k, v in old.get("files", {}).items()
             if k in sha and (out / k).is_file() and sha[k] == v.get("sha256")}
    manifest = release.write_manifest(out, shard_list, known)
    return {"clips": len(ids), "splits": {s: sum(v == s for v in splits.values()) for s in release.SPLITS},
            "shards": len(shards), "written": written, "reused": reused, "files": len(manifest["files"])}


@app("publish")
def publish_main(cfg: DictConfig) -> int:
    c = check(to_container(cfg))
    r = publish(c)
    print(f"{c['output_dir']}: {r['clips']} clips (train {r['splits']['train']}, val {r['splits']['val']}, "
          f"test {r['splits']['test']}) in {r['shards']} shard(s) x {len(c['formats'])} format(s) "
          f"({r['written']} written, {r['reused']} reused); {r['files']} files in manifest.json")
    print(f"check it: python -m pipelines.publish verify {c['output_dir']}")
    return 0


def verify_main(argv: list[str]) -> int:
    p = ArgumentParser(prog="python -m pipelines.publish verify", description="check a release against its manifest")
    p.add_argument("release", type=Path)
    args = p.parse_args(argv)
    try:
        v = release.verify(args.release)
    except (FileNotFoundError, ValueError, KeyError) as e:
        fail(str(e))
    for what, names in (("missing", v.missing), ("truncated", v.truncated), ("altered", v.altered)):
        for n in names:
            print(f"{what}: {n}")
    print(f"shards usable: {len(v.usable_shards)}" + "".join(f"\n  {s}" for s in v.usable_shards))
    if v.broken_shards:
        print(f"shards not usable: {len(v.broken_shards)}" + "".join(f"\n  {s}" for s in v.broken_shards))
    print(f"{args.release}: " + ("every file matches the manifest" if v.ok else
                                 f"{len(v.missing)} missing, {len(v.truncated)} truncated, {len(v.altered)} altered"))
    return 0 if v.ok else 1


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "verify":
        sys.exit(guarded(lambda: verify_main(sys.argv[2:])))
    publish_main()


main.task = publish_main.task
main.config_name = publish_main.config_name

if __name__ == "__main__":
    main()
