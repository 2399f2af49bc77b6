"""Publishing a store, for real: zipped zarr and WebDataset shards read back by plain zarr, webdataset
and Hugging Face `datasets`; Croissant validated and iterated by mlcroissant; verify against damage."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import clipstore
from core.cli import UserError, compose, to_container
from pipelines import publish, release

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow]


def make_store(path, n=10, t=6, h=24, w=32, licensed=()):
    """Clips of moving soft discs with specs like the renderer's: one body (phenotype) per clip,
    two clips per body (so identities span clips), SMPL-X or AMASS where asked."""
    root = clipstore.create(path, {"dataset": {"hash": "abc123", "definition": {}}})
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(0)
    for i in range(n):
        d = np.sqrt((yy - h / 2) ** 2 + (xx[None] - 8 - np.arange(t)[:, None, None] - i) ** 2)
        alpha = np.clip((7.5 - d) / 2, 0, 1)
        arrays = {"fgr": rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
                  "alpha": np.rint(alpha * 65535).astype(np.uint16)}
        kind = "smplx" if i in licensed else "anny"
        model = {"kind": kind, "licence": "anny: Apache-2.0 code, CC0 MakeHuman body data" if kind == "anny" else "SMPL-X",
                 "publishable": kind != "smplx", "path": "/home/me/models", "sha256": "f" * 64}
        spec = {"n_frames": t, "body": {"model": model, "betas": [0.1 * i] * 10 if kind == "smplx" else [],
                                        "phenotype": {"age": float(i // 2)}},
                "motion": {"kind": "procedural", "name": "nod"}, "hair": {"geometry": {"style": "bob"}}}
        clipstore.write_clip(root, f"clip{i:06d}", arrays, {"source": "synthetic", "fps": 12.0, "spec": spec})
    return str(path)


def cfg(store, out, *over):
    return to_container(compose("publish", [f"store={store}", f"output_dir={out}", "progress=false", *over]))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    base = tmp_path_factory.mktemp("publish")
    store = make_store(base / "store.zarr")
    out = base / "release"
    before = clipstore.validate(store, 1).to_dict()
    assert publish.main.task(cfg(store, out, "shard_bytes=20000")) == 0
    return store, out, before


def test_splits_keep_identities_and_never_move():
    shares = {"train": 0.8, "val": 0.1, "test": 0.1}
    ids = [json.dumps({"age": i}) for i in range(2000)]
    got = [release.split_of(i, shares, "s") for i in ids]
    frac = {s: got.count(s) / len(got) for s in release.SPLITS}
    assert abs(frac["train"] - 0.8) < 0.03 and abs(frac["val"] - 0.1) < 0.02
    # Adding identities or changing nothing else moves no existing one; another salt reshuffles.
    assert [release.split_of(i, shares, "s") for i in ids[:100]] == got[:100]
    assert [release.split_of(i, shares, "t") for i in ids] != got


def test_release_layout_card_counts_and_store_unchanged(published):
    store, out, before = published
    root = clipstore.open_store(store)
    assert clipstore.validate(store, 1).to_dict() == before                 # the store is only read
    manifest = json.loads((out / "manifest.json").read_text())
    clips = {c for s in manifest["shards"] for c in s["clips"]}
    assert clips == set(clipstore.complete_ids(root))
    assert len(manifest["shards"]) > 2                                      # 20 kB shards: several per split
    # Both clips of an identity share a split.
    rows = [line.split(",") for line in (out / "clips.csv").read_text().splitlines()[1:]]
    split = {r[0]: r[1] for r in rows}
    for i in range(0, 10, 2):
        assert split[f"clip{i:06d}"] == split[f"clip{i + 1:06d}"]
    text = (out / "README.md").read_text()
    front = text.split("---")[1]
    assert "license: cdla-permissive-2.0" in front and "- video-matting" in front and "configs:" in front
    for s, hub in (("train", "train"), ("val", "validation"), ("test", "test")):
        n = sum(v == s for v in split.values())
        if n:
            assert f"- split: {hub}" in front and re.search(rf"\| {s} \| {n} \| {6 * n} \|", text)
    assert "anny: Apache-2.0 code, CC0 MakeHuman body data" in text and "abc123" in text
    assert (out / "CITATION.cff").read_text().startswith("cff-version: 1.2.0")
    assert (out / "previews" / "contact_sheet.png").is_file() and (out / "previews" / "clip000000.gif").is_file()
    assert (out / "previews" / "clip000000.mp4").stat().st_size > 1000


def test_croissant_validates_and_lists_every_clip(published):
    import mlcroissant as mlc
    store, out, _ = published
    ds = mlc.Dataset(jsonld=str(out / "croissant.json"))
    records = list(ds.records("clips"))
    ids = sorted(r["clips/clip_id"].decode() for r in records)
    assert ids == clipstore.complete_ids(clipstore.open_store(store))
    assert all(r["clips/frames"] == 6 and r["clips/width"] == 32 for r in records)
    arrays = list(ds.records("arrays"))
    assert {(r["arrays/array"].decode(), r["arrays/dtype"].decode()) for r in arrays} == {("fgr", "uint8"), ("alpha", "uint16")}
    doc = json.loads((out / "croissant.json").read_text())
    files = {d["contentUrl"]: d["sha256"] for d in doc["distribution"]}
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert all(manifest[f]["sha256"] == sha for f, sha in files.items())


def test_the_cards_three_loaders_round_trip_alpha_exactly(published, tmp_path):
    store, out, _ = published
    root = clipstore.open_store(store)
    blocks = re.findall(r"```python\n(.*?)```", (out / "README.md").read_text(), re.S)
    assert len(blocks) == 3
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    for code in blocks:   # each in its own interpreter, in the release folder, as a user would
        check = code + ("\nimport sys, zarr\nsys.stdout.write(clip_id + ' ' + str(alpha.dtype) + ' ' + "
                        "str(__import__('hashlib').sha256(alpha.tobytes()).hexdigest()))\n")
        r = subprocess.run([sys.executable, "-c", check], cwd=out, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        cid, dtype, digest = r.stdout.split()[-3:]
        truth = root[clipstore.CLIPS][cid]["alpha"][:]
        assert dtype == "uint16" and digest == __import__("hashlib").sha256(truth.tobytes()).hexdigest()


def test_verify_names_every_damaged_file_and_the_shards_left(published, tmp_path, capsys):
    import shutil
    _, out, _ = published
    copy = tmp_path / "download"
    shutil.copytree(out, copy)
    assert publish.verify_main([str(copy)]) == 0
    tars = sorted((copy / "data").rglob("*.tar"))
    zips = sorted((copy / "data").rglob("*.zarr.zip"))
    altered, truncated, deleted = tars[0], zips[0], copy / "clips.csv"
    data = bytearray(altered.read_bytes())
    data[len(data) // 2] ^= 0x01
    altered.write_bytes(bytes(data))
    truncated.write_bytes(truncated.read_bytes()[:-100])
    deleted.unlink()
    capsys.readouterr()
    assert publish.verify_main([str(copy)]) == 1
    out_text = capsys.readouterr().out
    rel = lambda p: p.relative_to(copy).as_posix()  # noqa: E731
    assert f"altered: {rel(altered)}" in out_text and f"truncated: {rel(truncated)}" in out_text
    assert "missing: clips.csv" in out_text and "1 missing, 1 truncated, 1 altered" in out_text
    usable = out_text.split("shards usable:")[1].split("shards not usable:")[0]
    assert rel(tars[-1]) in usable and rel(altered) not in usable
    # The command line: the same answer and exit status.
    r = subprocess.run([sys.executable, "-m", "pipelines.publish", "verify", str(copy)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 1 and f"altered: {rel(altered)}" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pipelines.publish", "verify", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "no manifest.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_videomatte_export_reads_back_as_ground_truth(published):
    from matting.evaluate import evaluate
    _, out, _ = published
    for split in (out / "exports" / "videomatte").iterdir():
        result = evaluate(split, split, "lr", progress=False)
        assert result["clips"] and all(m["pha_mad"] == 0 for m in result["clips"].values())


def test_rerun_reuses_shards_and_a_new_clip_moves_no_split(published, tmp_path):
    import shutil
    store, out, _ = published
    store2, out2 = tmp_path / "store.zarr", tmp_path / "release"
    shutil.copytree(store, store2)
    shutil.copytree(out, out2)
    stamps = {p: p.stat().st_mtime_ns for p in (out2 / "data").rglob("*") if p.is_file()}
    r = publish.publish(cfg(store2, out2, "shard_bytes=20000"))
    assert r["written"] == 0 and r["reused"] == len(stamps)
    assert {p: p.stat().st_mtime_ns for p in (out2 / "data").rglob("*") if p.is_file()} == stamps
    before = {line.split(",")[0]: line.split(",")[1] for line in (out2 / "clips.csv").read_text().splitlines()[1:]}
    make_more = clipstore.open_store(store2, mode="r+")
    clip = clipstore.read_clip(make_more, "clip000000")
    attrs = {k: v for k, v in clip.attrs.items() if k not in ("clip_id", "complete", "checksums")}
    attrs["spec"] = {**attrs["spec"], "body": {**attrs["spec"]["body"], "phenotype": {"age": 99.0}}}
    clipstore.write_clip(make_more, "clip000099", {n: clip[n][:] for n in clip.arrays}, attrs)
    publish.publish(cfg(store2, out2, "shard_bytes=20000"))
    after = {line.split(",")[0]: line.split(",")[1] for line in (out2 / "clips.csv").read_text().splitlines()[1:]}
    assert {k: after[k] for k in before} == before and "clip000099" in after
    assert publish.verify_main([str(out2)]) == 0


def test_licensed_clips_refused_by_name_unless_allowed_and_stripped(tmp_path):
    store = make_store(tmp_path / "licensed.zarr", n=4, licensed=(1, 3))
    with pytest.raises(UserError, match=r"2 clips .*clip000001 \(SMPL-X body\), clip000003 \(SMPL-X body\)"):
        publish.main.task(cfg(store, tmp_path / "r"))
    assert not (tmp_path / "r" / "manifest.json").exists()
    assert publish.main.task(cfg(store, tmp_path / "r", "allow_licensed=true", "formats=[zarr]")) == 0
    import zarr
    shard = next((tmp_path / "r" / "data").rglob("*.zarr.zip"))
    found = False
    for zp in (tmp_path / "r" / "data").rglob("*.zarr.zip"):
        root = zarr.open_group(store=zarr.storage.ZipStore(str(zp), mode="r"), mode="r")
        for cid in root["clips"].group_keys():
            spec = dict(root["clips"][cid].attrs)["spec"]
            assert spec["body"]["model"]["path"] is None
            if cid in ("clip000001", "clip000003"):
                found = True
                assert spec["body"]["betas"] is None and "sha256" not in spec["body"]["model"]
    assert found and shard.is_file()
    text = (tmp_path / "r" / "README.md").read_text()
    assert "smplx" in text and "anny" in text


def test_bad_config_one_line(tmp_path):
    store = make_store(tmp_path / "s.zarr", n=1)
    for over, match in ((["formats=[tiff]"], "formats"), (["splits.train=-1"], "splits"), (["shard_bytes=0"], "shard_bytes")):
        with pytest.raises(UserError, match=match):
            publish.check(cfg(store, tmp_path / "r", *over))
    with pytest.raises(UserError, match="does not exist"):
        publish.main.task(cfg(tmp_path / "nowhere.zarr", tmp_path / "r"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="output_dir.*cannot be created"):
        publish.main.task(cfg(store, tmp_path / "file" / "release"))


@pytest.mark.parametrize("damage", ["still decodes", "cut short"])
def test_a_damaged_clip_is_refused_by_name_and_nothing_is_written(tmp_path, damage):
    import zarr
    store = make_store(tmp_path / "s.zarr", n=4)
    array = Path(store) / "clips" / "clip000002" / "alpha"
    if damage == "still decodes":   # a valid compressed chunk whose data no longer matches the recorded checksum
        zarr.open_array(str(array), mode="r+")[1, 3, 4] = 7
    else:
        shard = next(p for p in array.rglob("*") if p.is_file() and p.name != "zarr.json")
        shard.write_bytes(shard.read_bytes()[:-64])
    out = tmp_path / "release"
    p = subprocess.run([sys.executable, "-m", "pipelines.publish", f"store={store}", f"output_dir={out}",
                        f"hydra.run.dir={tmp_path / 'h'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "1 damaged clip" in last and "clip000002 (alpha:" in last, last
    assert "--prune-invalid" in last
    assert not out.exists()                                  # no release folder, no shard, no .state
    # The fix it names works: the damaged clip goes, the rest publishes.
    v = subprocess.run([sys.executable, "-m", "pipelines.validate", store, "--prune-invalid"], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert v.returncode == 0 and "removed clips/clip000002" in v.stdout, v.stdout[-2000:]
    assert publish.main.task(cfg(store, out, "formats=[zarr]", "export_videomatte=false")) == 0
    assert "clip000002" not in (out / "clips.csv").read_text() and "clip000003" in (out / "clips.csv").read_text()
