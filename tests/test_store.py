import os
from pathlib import Path
import json

import numpy as np
import pytest
import zarr

import clipstore

SRC = {"source": "synthetic", "fps": 24.0}


def _arrays(t=3, h=8, w=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"fgr": rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8),
            "alpha": rng.integers(0, 65536, (t, h, w), dtype=np.uint16)}


def test_round_trip_readable_with_plain_zarr(tmp_path):
    root = clipstore.create(tmp_path / "s.zarr", {"note": "test"})
    a = _arrays()
    sums = clipstore.write_clip(root, "clip000000", a, {"source": "synthetic", "fps": 24.0, "spec": {"x": 1}})
    # A reader that knows only zarr and the contract.
    g = zarr.open_group(tmp_path / "s.zarr", mode="r")
    assert g.attrs["format"] == "gvm-synth.clips" and g.attrs["format_version"] == 1
    c = g["clips/clip000000"]
    assert c.attrs["complete"] is True and c.attrs["clip_id"] == "clip000000" and c.attrs["spec"] == {"x": 1}
    np.testing.assert_array_equal(c["fgr"][:], a["fgr"])
    np.testing.assert_array_equal(c["alpha"][:], a["alpha"])
    assert c["fgr"].dtype == np.uint8 and c["alpha"].dtype == np.uint16
    assert c["alpha"].metadata.dimension_names == ("t", "y", "x")
    assert c["fgr"].chunks == (1, 8, 6, 3)  # one frame per chunk
    assert sums["alpha"] == clipstore.checksum(a["alpha"]) == c.attrs["checksums"]["alpha"]
    # One shard per array: a single chunk file each.
    shard_files = [p for p in (tmp_path / "s.zarr/clips/clip000000/alpha").rglob("*") if p.is_file() and p.name != "zarr.json"]
    assert len(shard_files) == 1


def test_clip_without_complete_is_invisible(tmp_path):
    root = clipstore.create(tmp_path / "s.zarr", {})
    clipstore.write_clip(root, "a", _arrays(), SRC)
    clipstore.write_clip(root, "b", _arrays(), SRC)
    # A writer that died before its last step leaves complete=False.
    root["clips/b"].attrs["complete"] = False
    assert clipstore.complete_ids(root) == ["a"]
    assert clipstore.incomplete_ids(root) == ["b"]
    with pytest.raises(clipstore.StoreError, match="b is not a complete clip"):
        clipstore.read_clip(root, "b")
    # A rerun replaces the leftover.
    clipstore.write_clip(root, "b", _arrays(seed=1), SRC)
    assert clipstore.complete_ids(root) == ["a", "b"]
    np.testing.assert_array_equal(clipstore.read_clip(root, "b")["alpha"][:], _arrays(seed=1)["alpha"])


def test_complete_clip_is_never_overwritten(tmp_path):
    root = clipstore.create(tmp_path / "s.zarr", {})
    clipstore.write_clip(root, "a", _arrays(), SRC)
    before = (tmp_path / "s.zarr/clips/a/alpha/c/0/0/0").read_bytes()
    with pytest.raises(clipstore.StoreError, match="already complete"):
        clipstore.write_clip(root, "a", _arrays(seed=5), SRC)
    assert (tmp_path / "s.zarr/clips/a/alpha/c/0/0/0").read_bytes() == before


def test_bad_arrays_and_paths(tmp_path):
    root = clipstore.create(tmp_path / "s.zarr", {})
    bad = _arrays()
    bad["alpha"] = bad["alpha"].astype(np.float32)
    with pytest.raises(clipstore.StoreError, match="alpha must be uint16"):
        clipstore.write_clip(root, "a", bad, SRC)
    assert clipstore.complete_ids(root) == []
    f = tmp_path / "file.zarr"
    f.write_text("not a store")
    with pytest.raises(clipstore.StoreError, match="is a file"):
        clipstore.create(f, {})
    other = tmp_path / "other"
    zarr.open_group(other, mode="w").attrs["format"] = "something-else"
    with pytest.raises(clipstore.StoreError, match="not a gvm-synth.clips store"):
        clipstore.open_store(other)


def test_existing_store_keeps_its_attrs(tmp_path):
    clipstore.create(tmp_path / "s.zarr", {"dataset": {"hash": "one"}})
    root = clipstore.create(tmp_path / "s.zarr", {"dataset": {"hash": "two"}})
    assert root.attrs["dataset"] == {"hash": "one"}
    assert json.loads((tmp_path / "s.zarr/zarr.json").read_text())["attributes"]["dataset"]["hash"] == "one"


def test_write_refuses_a_source_outside_the_contract(tmp_path):
    root = clipstore.create(tmp_path / "s.zarr", {})
    with pytest.raises(clipstore.StoreError, match="source 'scraped' is not one of synthetic, pseudo, segmentation"):
        clipstore.write_clip(root, "a", _arrays(), {"source": "scraped", "fps": 24.0})
    assert clipstore.all_ids(root) == []
    clipstore.write_clip(root, "a", _arrays(), {"source": "segmentation", "fps": 24.0})
    assert clipstore.complete_ids(root) == ["a"]


def test_frames_are_lossless_webp_and_jpegxl_and_stores_of_the_old_codecs_still_read(tmp_path):
    """Every 8- and 16-bit output (colour, grey, several channels) round-trips exactly (colour through WebP, the rest JPEG XL, or all JPEG XL);
    float outputs keep Zstd; a store written with image_codec none reads the same; and a fresh process
    with plain zarr reads the frames (the codec found by its name through this package's entry point)."""
    import subprocess
    import sys
    rng = np.random.default_rng(0)
    t, h, w = 3, 21, 34
    arrays = {"fgr": rng.integers(0, 256, (t, h, w, 3), np.uint8),
              "alpha": rng.integers(0, 65536, (t, h, w), np.uint16),
              "instances": rng.integers(0, 65536, (t, h, w, 1), np.uint16),
              "extra": rng.integers(0, 65536, (t, h, w, 3), np.uint16),   # undeclared, several channels
              "depth": rng.random((t, h, w)).astype(np.float16)}
    expect = {"auto": {"fgr": "imagecodecs_webp", "alpha": "imagecodecs_jpegxl", "instances": "imagecodecs_jpegxl",
                       "extra": "imagecodecs_jpegxl", "depth": "zstd"},
              "jpegxl": {"fgr": "imagecodecs_jpegxl", "alpha": "imagecodecs_jpegxl", "instances": "imagecodecs_jpegxl",
                         "extra": "imagecodecs_jpegxl", "depth": "zstd"},
              "none": {"fgr": "blosc", "alpha": "zstd", "instances": "zstd", "extra": "zstd", "depth": "zstd"}}
    for codec in expect:
        root = clipstore.create(tmp_path / f"{codec}.zarr", {})
        compression = clipstore.Compression(3, 3, codec, 2, 50, 3)
        clipstore.write_clip(root, "clip000000", arrays, {"source": "synthetic", "fps": 8.0}, compression)
        clip = clipstore.open_store(tmp_path / f"{codec}.zarr")["clips"]["clip000000"]
        for name, a in arrays.items():
            assert np.array_equal(clip[name][:], a), (codec, name)
            named = [c["name"] for c in clip[name].metadata.to_dict()["codecs"][0]["configuration"]["codecs"]]
            assert expect[codec][name] in named, (codec, name, named)
    code = ("import sys, zarr, numpy as np\n"
            f"g = zarr.open_group({str(tmp_path / 'auto.zarr')!r}, mode='r')['clips']['clip000000']\n"
            "sys.stdout.write(str(int(g['alpha'][:].astype(np.int64).sum() + g['fgr'][:].astype(np.int64).sum())))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    total = int(arrays["alpha"].astype(np.int64).sum() + arrays["fgr"].astype(np.int64).sum())
    assert r.returncode == 0 and int(r.stdout) == total, r.stderr[-1500:]
    with pytest.raises(clipstore.StoreError, match="store.image_codec must be one of auto, jpegxl, none"):
        clipstore.Compression.from_config({"colour_clevel": 3, "mask_clevel": 3, "image_codec": "webp", "jpegxl_effort": 3,
                                          "webp_level": 50, "webp_method": 3})


def test_bench_store_prints_bytes_over_png_and_checks_every_read(tmp_path, capsys):
    from conftest import write_store
    from core.cli import compose, to_container
    from pipelines import bench_store
    write_store(tmp_path / "s.zarr", 2)
    cfg = to_container(compose("bench_store", [f"store.path={tmp_path / 's.zarr'}", f"bench.workdir={tmp_path}",
                                               "~bench.settings.jpegxl_e7", "~bench.settings.jpegxl_e3"]))
    assert bench_store.main.task(cfg) == 0
    out = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line and not line.startswith("bench"))
    assert set(out) >= {"blosc_zstd_over_png", "webp_jpegxl_over_png", "webp_jpegxl_decode_fps", "png_mib_per_clip"}
    assert all(float(v.split()[0]) > 0 for v in out.values() if "n/a" not in v)
    assert out["webp_jpegxl_encode_over_render"].startswith("n/a")   # these clips hold no render record
    assert float(out["webp_jpegxl_over_png"]) != float(out["blosc_zstd_over_png"])   # each setting wrote its own
    assert not list(tmp_path.glob("gvm-bench-store-*"))   # its temporary stores are gone


def test_the_codec_file_alone_reads_a_store_without_this_project(tmp_path):
    """What a reader without gvm-synth has: zarr, imagecodecs and clipstore/codecs.py copied beside
    their code (a release ships it as zarr_imagecodecs.py). The project and its entry points hidden."""
    import shutil
    import subprocess
    import sys
    from conftest import write_store
    write_store(tmp_path / "s.zarr", 1)
    shutil.copy(Path(clipstore.codecs.__file__), tmp_path / "zarr_imagecodecs.py")
    code = ("import sys, importlib.metadata as md\n"
            "sys.modules['clipstore'] = None   # not installed\n"
            "kept = md.EntryPoints(e for d in md.distributions() for e in d.entry_points if not e.value.startswith('clipstore'))\n"
            "md.entry_points = lambda **k: kept.select(**k) if k else kept\n"
            "import zarr\n"
            "import zarr_imagecodecs\n"
            "g = zarr.open_group('s.zarr', mode='r')['clips']['clip000000']\n"
            "sys.stdout.write(f\"{int(g['alpha'][:].sum())} {int(g['fgr'][:].sum())}\")\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    clip = clipstore.open_store(tmp_path / "s.zarr")["clips"]["clip000000"]
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [str(int(clip["alpha"][:].sum())), str(int(clip["fgr"][:].sum()))]
