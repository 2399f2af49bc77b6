"""The files of a release: splits, shards in two formats, the file manifest and its verification.

- Splits go by identity, not by clip: a clip's identity is its body (model and shape or
  phenotype) and its motion file where it has one, or for a pseudo clip its input video; an
  identity's split is a hash of it, so it never moves when clips are added.
- A shard holds whole clips, the same clips in both formats: a zip of a zarr store in the store
  contract (plain `zarr` opens it with a ZipStore) and a WebDataset tar with one sample per clip:
  `<clip>.json` (its published attrs) and each array as its declaration exports it
  (clipstore.outputs): `<clip>.fgr.png`, `<clip>.alpha.png` and the other image-like outputs with
  every frame stacked top to bottom in one lossless PNG (16-bit where the array is), float ones
  (`depth`, `flow`) and those of many channels (`instances`) as `<clip>.<name>.npy`.
- The manifest lists every file with its size and sha256; `verify` names every missing,
  truncated or altered file and says which shards are whole.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import cv2
import numpy as np

import clipstore
from core import provenance, stops

MANIFEST = "manifest.json"
SHA256SUMS = "SHA256SUMS"
SPLITS = ("train", "val", "test")
FORMATS = ("zarr", "webdataset")


# --- splits -------------------------------------------------------------------------------------

def identity(attrs: Mapping[str, Any]) -> str:
    """What must not be split across train / val / test: the person (and the motion file) a clip shows."""
    spec = attrs.get("spec", {})
    if attrs.get("source") == "pseudo":
        return "video:" + str(spec.get("input", {}).get("sha256"))
    b = spec.get("body", {})
    who = {"model": b.get("model", {}).get("kind"), "betas": b.get("betas"), "phenotype": b.get("phenotype"),
           "skin": b.get("skin", {}).get("ita_deg")}
    m = spec.get("motion", {})
    if m.get("kind") == "amass":
        who["motion"] = Path(str(m.get("path"))).name
    return json.dumps(who, sort_keys=True, default=str)


def split_of(ident: str, shares: Mapping[str, float], salt: str) -> str:
    u = int.from_bytes(hashlib.sha256(f"{salt}\0{ident}".encode()).digest()[:8], "big") / 2 ** 64
    total = sum(shares[s] for s in SPLITS)
    edge = 0.0
    for s in SPLITS:
        edge += shares[s] / total
        if u < edge:
            return s
    return SPLITS[-1]


# --- licences ----------------------------------------------------------------------------------

def licensed(attrs: Mapping[str, Any]) -> list[str]:
    """Why a clip needs a licence to publish (the licensed SMPL-X model, AMASS motions), or []."""
    spec = attrs.get("spec", {})
    why = []
    model = spec.get("body", {}).get("model", {})
    if model.get("publishable") is False or model.get("kind") == "smplx":
        why.append("SMPL-X body")
    if spec.get("motion", {}).get("kind") == "amass":
        why.append("AMASS motion")
    return why


def published_attrs(attrs: Mapping[str, Any], split: str) -> dict[str, Any]:
    """A clip's attrs as released: SMPL-X shape parameters and AMASS file paths stripped, local
    paths reduced to names, the split added."""
    a = json.loads(json.dumps({k: v for k, v in attrs.items() if k not in ("complete", "checksums")}, default=str))
    spec = a.get("spec", {})
    body = spec.get("body", {})
    model = body.get("model", {})
    if model.get("kind") == "smplx":
        body["betas"] = None                      # SMPL-X shape parameters are the licensed model's
        model.pop("sha256", None)
    if "path" in model:
        model["path"] = None
    motion = spec.get("motion", {})
    if motion.get("kind") == "amass":
        motion["path"] = Path(str(motion.get("path"))).name
    if "input" in spec:
        spec["input"]["path"] = spec["input"].get("name")
    a["split"] = split
    return a


# --- shards -------------------------------------------------------------------------------------

@dataclass
class Shard:
    split: str
    index: int
    clips: list[str] = field(default_factory=list)
    bytes: int = 0

    @property
    def stem(self) -> str:
        return f"{self.split}-{self.index:05d}"

    def path(self, fmt: str) -> str:
        return f"data/{self.split}/{fmt}/{self.stem}" + (".zarr.zip" if fmt == "zarr" else ".tar")


def pack(clips: Iterable[tuple[str, str, int]], shard_bytes: float) -> list[Shard]:
    """(clip_id, split, stored bytes) -> shards per split, in clip order, each closed once it reaches shard_bytes."""
    shards: dict[str, list[Shard]] = {}
    for cid, split, size in sorted(clips):
        own = shards.setdefault(split, [Shard(split, 0)])
        if own[-1].clips and own[-1].bytes >= shard_bytes:
            own.append(Shard(split, len(own)))
        own[-1].clips.append(cid)
        own[-1].bytes += size
    return [s for split in SPLITS for s in shards.get(split, [])]


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    try:
        write(tmp)
    except BaseException:   # a failure or a stop signal leaves no half shard behind, hidden or not
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def write_zarr_shard(path: Path, root: Any, ids: list[str], attrs: Mapping[str, Mapping[str, Any]],
                     store_attrs: Mapping[str, Any], compression: clipstore.Compression) -> None:
    """A zip of a zarr store in the store contract holding these clips (written as a folder, then
    zipped once, stored: the chunks are compressed already)."""
    def write(tmp: Path) -> None:
        # The folder sits beside the shard, hidden, not in a TemporaryDirectory: a stop signal leaves
        # zarr's writer thread finishing its chunks after this thread has gone, which no cleanup can
        # wait for; the next write of this shard clears whatever it left.
        folder = tmp.with_name(tmp.name + ".zarr")
        shutil.rmtree(folder, ignore_errors=True)
        try:
            out = clipstore.create(folder, {**store_attrs})
            for cid in ids:
                stops.check()   # a stop swallowed by zarr's threads: this shard is dropped whole
                clipstore.copy_clip(root, out, cid, attrs[cid], compression)
            with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
                for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                    z.write(f, f.relative_to(folder).as_posix())
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    _atomic(path, write)


def filmstrip_png(frames: np.ndarray, level: int) -> bytes:
    """All frames of one array stacked top to bottom, as one lossless PNG (uint16 stays 16-bit)."""
    t, h, w = frames.shape[:3]
    img = frames.reshape(t * h, w, *frames.shape[3:])
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, level])
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def npy(frames: np.ndarray) -> bytes:
    """An array as the bytes of a .npy file (outputs exported so: depth, flow, instances)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(frames), allow_pickle=False)
    return buf.getvalue()


def wds_entry(name: str, a: Any, level: int) -> tuple[str, bytes]:
    """A clip's array in a WebDataset sample, as its declaration exports it: `<name>.png` (every
    frame stacked in one lossless PNG, 16-bit where the array is) or `<name>.npy`."""
    o = clipstore.declared(name, dict(a.attrs))
    if o is not None and o.export == "npy":
        return f"{name}.npy", npy(a[:])
    return f"{name}.png", filmstrip_png(a[:], level)


def write_wds_shard(path: Path, root: Any, ids: list[str], attrs: Mapping[str, Mapping[str, Any]], level: int) -> None:
    import webdataset as wds

    def write(tmp: Path) -> None:
        with wds.TarWriter(str(tmp)) as sink:
            for cid in ids:
                stops.check()
                clip = clipstore.read_clip(root, cid)
                sample: dict[str, Any] = {"__key__": cid, "json": json.dumps(attrs[cid]).encode()}
                sample.update(wds_entry(name, clip[name], level) for name in clip.arrays)
                sink.write(sample)
    _atomic(path, write)


# --- manifest and verification ------------------------------------------------------------------

def write_manifest(release: Path, shards: list[dict[str, Any]], known: Mapping[str, Mapping[str, Any]] | None = None) -> dict:
    """Every file of the release (but the manifest and the checksum list) with size and sha256;
    `known` entries whose size and mtime still match are reused instead of hashed again."""
    files = {}
    for p in sorted(release.rglob("*")):
        rel = p.relative_to(release).as_posix()
        if not p.is_file() or rel in (MANIFEST, SHA256SUMS) or rel.startswith(".") or "/." in rel:
            continue
        st = p.stat()
        k = (known or {}).get(rel)
        same = k and k.get("size") == st.st_size and k.get("mtime_ns") == st.st_mtime_ns
        files[rel] = {"size": st.st_size, "sha256": k["sha256"] if same else provenance.sha256(p), "mtime_ns": st.st_mtime_ns}
    manifest = {"format": "gvm-synth.release", "files": {k: {"size": v["size"], "sha256": v["sha256"]} for k, v in files.items()},
                "shards": shards}
    (release / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    (release / SHA256SUMS).write_text("".join(f"{v['sha256']}  {k}\n" for k, v in manifest["files"].items()))
    return manifest


@dataclass
class Verification:
    missing: list[str]
    truncated: list[str]      # shorter (or longer) than the manifest says
    altered: list[str]        # the right size, another sha256
    usable_shards: list[str]
    broken_shards: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.truncated or self.altered)


def verify(release: Path) -> Verification:
    path = release / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{release}: no {MANIFEST} (not a release, or its manifest was not downloaded)")
    try:
        manifest = json.loads(path.read_text())
        files = {str(k): (int(v["size"]), str(v["sha256"])) for k, v in manifest["files"].items()}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise ValueError(f"{path}: not a release manifest ({type(e).__name__}: {' '.join(str(e).split())[:100]})") from None
    missing, truncated, altered = [], [], []
    for rel, (size, sha) in files.items():
        p = release / rel
        if not p.is_file():
            missing.append(rel)
        elif p.stat().st_size != size:
            truncated.append(rel)
        elif provenance.sha256(p) != sha:
            altered.append(rel)
    bad = set(missing) | set(truncated) | set(altered)
    usable, broken = [], []
    for s in manifest.get("shards", []):
        for f in s["files"]:
            (broken if f in bad else usable).append(f)
    return Verification(missing, truncated, altered, usable, broken)
