"""What describes a release: the dataset card (README.md with Hugging Face YAML front matter),
CITATION.cff, and Croissant JSON-LD metadata (written with mlcroissant's own classes, so what it
writes is what its validator reads).

The card's three loaders are real code: the tests run them from the card's text.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

CLIPS_CSV = "clips.csv"
ARRAYS_CSV = "arrays.csv"
CROISSANT = "croissant.json"
CODEC_FILE = "zarr_imagecodecs.py"   # clipstore/codecs.py, for readers without gvm-synth
CLIP_FIELDS = ("clip_id", "split", "frames", "fps", "width", "height", "source", "body_model", "motion", "hair_style")
ARRAY_FIELDS = ("clip_id", "array", "dtype", "shape")
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}   # the Hub's split names


def clip_row(cid: str, attrs: Mapping[str, Any], shape: tuple[int, ...], split: str) -> dict[str, Any]:
    spec = attrs.get("spec", {})
    return {"clip_id": cid, "split": split, "frames": shape[0], "fps": attrs.get("fps"), "width": shape[2],
            "height": shape[1], "source": attrs.get("source"),
            "body_model": spec.get("body", {}).get("model", {}).get("kind") or ("real video" if attrs.get("source") == "pseudo" else ""),
            "motion": spec.get("motion", {}).get("name") or spec.get("motion", {}).get("kind") or "",
            "hair_style": spec.get("hair", {}).get("geometry", {}).get("style") or ""}


def write_tables(release: Path, rows: list[dict], arrays: list[dict]) -> None:
    for name, fields, data in ((CLIPS_CSV, CLIP_FIELDS, rows), (ARRAYS_CSV, ARRAY_FIELDS, arrays)):
        with open(release / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(data)


def size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "n>1M"


def _front_matter(c: Mapping[str, Any], rows: list[dict], shards: list[dict]) -> str:
    present = [s for s in SPLIT_NAMES if any(r["split"] == s for r in rows)]
    lines = ["---", f"license: {c['licence']}", f"pretty_name: {c['name']}", "task_categories:", "- image-segmentation",
             "tags:", "- video-matting", "- alpha-matting", "- synthetic", "- human", "- hair",
             "size_categories:", f"- {size_category(len(rows))}"]
    if "webdataset" in c["formats"] and present:
        lines += ["configs:", "- config_name: default", "  data_files:"]
        for s in present:
            lines += [f"  - split: {SPLIT_NAMES[s]}", f"    path: data/{s}/webdataset/*.tar"]
    return "\n".join(lines + ["---", ""])


def _stats(rows: list[dict]) -> str:
    out = ["| split | clips | frames | synthetic | pseudo | body models | hair styles |", "|---|---|---|---|---|---|---|"]
    for s in ("train", "val", "test"):
        r = [x for x in rows if x["split"] == s]
        if not r:
            continue
        bodies = ", ".join(f"{k} {v}" for k, v in sorted(Counter(x["body_model"] for x in r).items()))
        hair = ", ".join(f"{k} {v}" for k, v in sorted(Counter(x["hair_style"] for x in r if x["hair_style"]).items())) or "-"
        out.append(f"| {s} | {len(r)} | {sum(x['frames'] for x in r)} | {sum(x['source'] == 'synthetic' for x in r)} | "
                   f"{sum(x['source'] == 'pseudo' for x in r)} | {bodies} | {hair} |")
    return "\n".join(out)


def loaders(zarr_shard: str | None, wds_shard: str | None, split: str) -> list[str]:
    """The card's loader snippets; each leaves `clip_id` and `alpha` (uint16, T x H x W) defined."""
    helper = ('import cv2, json, numpy as np\n\n'
              'def filmstrip(data: bytes, frames: int) -> np.ndarray:\n'
              '    """A sample\'s PNG (every frame stacked top to bottom) as (T, H, W[, 3]); 16-bit alpha stays uint16."""\n'
              '    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)\n'
              '    if img.ndim == 3:\n'
              '        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)\n'
              '    return img.reshape(frames, img.shape[0] // frames, *img.shape[1:])\n')
    out = []
    if zarr_shard:
        out.append('import zarr\n'
                   f'import {CODEC_FILE.removesuffix(".py")}   # the frames\' image codec ({CODEC_FILE}, beside this card; pip install zarr imagecodecs)\n\n'
                   f'root = zarr.open_group(store=zarr.storage.ZipStore("{zarr_shard}", mode="r"), mode="r")\n'
                   'clip_id = sorted(root["clips"].group_keys())[0]\n'
                   'clip = root["clips"][clip_id]\n'
                   'alpha = clip["alpha"][:]      # uint16 (T, H, W): linear coverage, 0..65535\n'
                   'fgr = clip["fgr"][:]          # uint8 (T, H, W, 3): straight (un-premultiplied) sRGB\n'
                   'spec = dict(clip.attrs)["spec"]\n')
    if wds_shard:
        out.append(helper + '\nimport webdataset as wds\n\n'
                   f'for sample in wds.WebDataset("{wds_shard}", shardshuffle=False):\n'
                   '    meta = json.loads(sample["json"])\n'
                   '    clip_id, n = sample["__key__"], meta["spec"]["n_frames"]\n'
                   '    alpha = filmstrip(sample["alpha.png"], n)\n'
                   '    fgr = filmstrip(sample["fgr.png"], n)\n'
                   '    break\n')
        folder = wds_shard.rsplit("/", 1)[0]
        out.append(helper + '\nfrom datasets import Image, load_dataset\n\n'
                   f'ds = load_dataset("webdataset", data_files={{"{SPLIT_NAMES[split]}": "{folder}/*.tar"}}, split="{SPLIT_NAMES[split]}")\n'
                   '# The Image feature would decode the 16-bit alpha to 8 bits: take the PNG bytes instead.\n'
                   'ds = ds.cast_column("alpha.png", Image(decode=False)).cast_column("fgr.png", Image(decode=False))\n'
                   'row = ds[0]\n'
                   'clip_id, n = row["__key__"], row["json"]["spec"]["n_frames"]\n'
                   'alpha = filmstrip(row["alpha.png"]["bytes"], n)\n')
    return out


def card(c: Mapping[str, Any], rows: list[dict], shards: list[dict], store_attrs: Mapping[str, Any],
         bodies: Mapping[str, str], motions: list[str], previews: list[str], definition_hash: str | None,
         held: Mapping[str, tuple[int, str]]) -> str:
    software = store_attrs.get("software", {}).get("packages", {})
    first = {fmt: next((f for s in shards for f in s["files"] if f.endswith(ext)), None)
             for fmt, ext in (("zarr", ".zarr.zip"), ("webdataset", ".tar"))}
    split = next((s["split"] for s in shards), "train")
    code = "\n".join(f"```python\n{snippet}```\n" for snippet in loaders(first["zarr"], first["webdataset"], split))
    defn = store_attrs.get("dataset", {}).get("definition", {})
    hair = defn.get("hair", {})
    ranges = [f"- hair styles: {', '.join(sorted(hair.get('styles', {})))}" if hair.get("styles") else None,
              f"- motions: {', '.join(sorted(k for k, w in defn.get('motion', {}).get('weights', {}).items() if w))}"
              if defn.get("motion") else None,
              f"- light kinds: {', '.join(sorted(k for k, w in defn.get('lighting', {}).get('weights', {}).items() if w))}"
              if isinstance(defn.get("lighting", {}).get("weights"), dict) else None,
              f"- resolution {defn['cycles']['width']}x{defn['cycles']['height']}, {defn['cycles']['samples']} spp colour, "
              f"alpha up to {defn['cycles']['alpha_samples']} spp" if "cycles" in defn else None]
    preview_md = "\n".join(f"![{Path(p).stem}]({p})" for p in previews)
    return "\n".join([
        _front_matter(c, rows, shards),
        f"# {c['name']}", "", c["description"], "",
        "## Contents", "",
        f"{len(rows)} clips, {sum(r['frames'] for r in rows)} frames. The arrays each clip holds (every array "
        "also carries this declaration, with its dtype, channels and units, in its zarr attributes):", "",
        "| array | clips | what it holds |", "|---|---|---|",
        *[f"| `{name}` | {n} | {about} |" for name, (n, about) in held.items()], "",
        "Splits keep one identity (a body, and a motion file where there is one; a pseudo clip's input video) within "
        "one split, by a hash: a clip's split never moves when clips are added.", "",
        _stats(rows), "",
        "## How it was made", "",
        (f"Rendered by gvm-synth with Blender {software.get('bpy', '?')} (Cycles, strand hair as curves, a separate "
         "alpha pass), one fully resolved spec per clip (in every sample's JSON)."
         + (f" Dataset definition hash `{definition_hash}`." if definition_hash else ""))
        if any(r["source"] == "synthetic" for r in rows) else "No rendered clips in this release.", "",
        "Body models in this release, with their licences:", "",
        *[f"- {k}: {v}" for k, v in sorted(bodies.items())], "",
        f"Motion sources: {', '.join(motions) or 'none'}.", "",
        "Sampling (from the store's definition):", "",
        *[r for r in ranges if r], "",
        ("Pseudo-labelled clips (source `pseudo`) come from real videos labelled by segmentation and closed-form "
         "matting, scored without ground truth; their JSON names the input video (sha256) and every parameter; the "
         "input videos' own terms apply to them.") if any(r["source"] == "pseudo" for r in rows) else "", "",
        "## Files", "",
        f"- `data/<split>/zarr/<split>-NNNNN.zarr.zip`: zipped zarr stores in the gvm-synth store contract (`zarr` opens them once `{CODEC_FILE}` is imported: their "
        "8- and 16-bit frames are lossless WebP and JPEG XL, which zarr reads through imagecodecs)",
        "- `data/<split>/webdataset/<split>-NNNNN.tar`: WebDataset shards, one sample per clip: `json`, `fgr.png`, `alpha.png` "
        "(16-bit) and the other image-like arrays, every frame stacked top to bottom in one lossless PNG; float arrays "
        "(`depth`, `flow`) and each person's coverage (`instances`) as `.npy` (`numpy.load(io.BytesIO(sample[\"depth.npy\"]))`)",
        f"- `{CLIPS_CSV}`, `{ARRAYS_CSV}`, `{CROISSANT}` (Croissant metadata), `manifest.json` and `SHA256SUMS` (every file's "
        "size and sha256: `python -m pipelines.publish verify <folder>` or `sha256sum -c SHA256SUMS`)",
        "- `exports/videomatte/<split>/<clip>/{fgr,pha}/0000.png`: the VideoMatte240K layout (8-bit alpha)" if c["export_videomatte"] else "",
        "- `previews/`: a contact sheet and composites as GIF and MP4", "",
        "## Loading", "",
        "Each of these yields the clip's 16-bit alpha exactly as stored.", "",
        code,
        "## Previews", "", preview_md, "",
        "## Known limits", "",
        "- Rendered people: anny / stand-in bodies with shell garments and skirts, strand hair, brows and lashes on "
        "anny bodies; one person per clip; glasses, hats, headphones, earrings, simulated and sheer scarves, things "
        "held, particles, steam and smoke in some clips (labelled in `parts` where the release has it); see the "
        "generating project's docs/limits.md.",
        "- Pseudo labels are estimates (their scores are in the JSON), not ground truth.", "",
        "## Citation", "", "See `CITATION.cff`.", ""])


def citation(c: Mapping[str, Any], today: dt.date) -> str:
    authors = "\n".join(f'  - name: "{a}"' for a in c["authors"])
    url = f'url: "{c["url"]}"\n' if c.get("url") else ""
    return (f'cff-version: 1.2.0\nmessage: "If you use this dataset, please cite it as below."\ntype: dataset\n'
            f'title: "{c["name"]}"\nversion: "{c["version"]}"\ndate-released: "{today.isoformat()}"\n'
            f'license: "{c["licence"]}"\n{url}authors:\n{authors}\n')


def croissant(release: Path, c: Mapping[str, Any], shards: list[dict], sha: Mapping[str, str], today: dt.date) -> dict:
    import mlcroissant as mlc
    files = [mlc.FileObject(id=CLIPS_CSV, name=CLIPS_CSV, content_url=CLIPS_CSV, encoding_formats=["text/csv"], sha256=sha[CLIPS_CSV]),
             mlc.FileObject(id=ARRAYS_CSV, name=ARRAYS_CSV, content_url=ARRAYS_CSV, encoding_formats=["text/csv"], sha256=sha[ARRAYS_CSV])]
    for s in shards:
        for f in s["files"]:
            fmt = "application/zip" if f.endswith(".zip") else "application/x-tar"
            files.append(mlc.FileObject(id=f, name=f, content_url=f, encoding_formats=[fmt], sha256=sha[f],
                                        description=f"{s['split']} shard {s['index']}: clips {', '.join(s['clips'])}"))
    types = {"frames": mlc.DataType.INTEGER, "fps": mlc.DataType.FLOAT, "width": mlc.DataType.INTEGER,
             "height": mlc.DataType.INTEGER}

    def fields(table: str, names: tuple[str, ...]) -> list:
        return [mlc.Field(id=f"{table}/{n}", name=n, data_types=[types.get(n, mlc.DataType.TEXT)],
                          source=mlc.Source(file_object=f"{table}.csv", extract=mlc.Extract(column=n))) for n in names]
    meta = mlc.Metadata(name=c["name"], description=c["description"], license=[c["licence"]], url=c.get("url"),
                        version=c["version"], date_published=dt.datetime(today.year, today.month, today.day),
                        cite_as=citation(c, today), distribution=files,
                        record_sets=[mlc.RecordSet(id="clips", name="clips", fields=fields("clips", CLIP_FIELDS)),
                                     mlc.RecordSet(id="arrays", name="arrays", fields=fields("arrays", ARRAY_FIELDS))])
    doc = meta.to_json()
    (release / CROISSANT).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return doc
