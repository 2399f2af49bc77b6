"""pipelines.validate finds each injected fault and names the clip; finalize's manifest and
consolidated metadata describe the store for plain-zarr readers."""
import contextlib
import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

import clipstore
from pipelines import validate
from tests.conftest import write_store

ROOT = Path(__file__).resolve().parent.parent
T, H, W = 6, 24, 32
FAULTY = "clip000001"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """Three valid clips, finalized; clip000000 carries a spec whose frame count and size match."""
    path = tmp_path_factory.mktemp("base") / "store.zarr"
    write_store(path, 3, t=T, h=H, w=W, bgr=True)
    root = clipstore.open_store(path, mode="r+")
    for cid in clipstore.complete_ids(root):
        root[f"clips/{cid}"].attrs["spec"] = {"n_frames": T, "cycles": {"width": W, "height": H}}
    clipstore.finalize(path)
    return path


def _copy(base: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(base, tmp_path / "store.zarr"))


def _hashes(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


def _run(path: Path, tmp_path: Path, *flags: str) -> tuple[int, dict, str]:
    """The command's exit code, its JSON report and its table (run in-process)."""
    out = tmp_path / "report.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = validate.main([str(path), "--json", str(out), "--workers", "2", *flags])
    return code, json.loads(out.read_text()), buf.getvalue()


def _rows(report: dict) -> dict[str, dict]:
    return {c["clip_id"]: c for c in report["clips"]}


def _clip(path: Path, cid: str = FAULTY) -> zarr.Group:
    return zarr.open_group(path, mode="r+", use_consolidated=False)[f"clips/{cid}"]


def _shard(path: Path, array: str) -> Path:
    files = [p for p in (path / "clips" / FAULTY / array / "c").rglob("*") if p.is_file()]
    assert len(files) == 1  # one shard per array per clip
    return files[0]


def _truncate(path: Path) -> None:
    f = _shard(path, "alpha")
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _delete_shard(path: Path) -> None:
    _shard(path, "fgr").unlink()


def _float_alpha(path: Path, frame: int, value: float) -> None:
    g = _clip(path)
    alpha = g["alpha"][:].astype(np.float32) / clipstore.ALPHA_MAX
    alpha[frame, 3, 4] = value
    del g["alpha"]
    g.create_array("alpha", data=alpha, chunks=(1, H, W), dimension_names=("t", "y", "x"))


def _drop_frame(path: Path) -> None:
    g = _clip(path)
    g["fgr"].resize((T - 1, H, W, 3))


def _no_complete(path: Path) -> None:
    g = _clip(path)
    g.attrs.put({k: v for k, v in g.attrs.asdict().items() if k != "complete"})


def _black_fgr(path: Path) -> None:
    g = _clip(path)
    fgr = g["fgr"][:]
    fgr[4] = 0
    g["fgr"][:] = fgr


FAULTS = {
    "truncated shard": (_truncate, ["alpha: unreadable at frame 0"]),
    "deleted shard file": (_delete_shard, ["fgr: 6 of 6 frame chunks not stored"]),
    "deleted required array": (lambda p: shutil.rmtree(p / "clips" / FAULTY / "alpha"), ["alpha: array missing"]),
    "deleted optional array": (lambda p: shutil.rmtree(p / "clips" / FAULTY / "bgr"), ["bgr: array missing"]),
    "alpha NaN": (lambda p: _float_alpha(p, 2, np.nan),
                  ["alpha: dtype float32, expected uint16", "alpha: NaN or inf in frames 2", "alpha: checksum mismatch"]),
    "alpha above 1": (lambda p: _float_alpha(p, 3, 1.5),
                      ["alpha: dtype float32, expected uint16", "alpha: values outside 0..1 in frames 3 (min 0, max 1.5)"]),
    "spec frame count": (lambda p: _clip(p).attrs.update({"spec": {"n_frames": T + 1}}), [f"{T} frames, the spec says {T + 1}"]),
    "spec size": (lambda p: _clip(p).attrs.update({"spec": {"n_frames": T, "cycles": {"width": 64, "height": 64}}}),
                  [f"{W}x{H} pixels, the spec says 64x64"]),
    "a frame short": (_drop_frame, [f"fgr: shape ({T - 1}, {H}, {W}, 3), expected leading (T, H, W) = ({T}, {H}, {W})"]),
    "complete false": (lambda p: _clip(p).attrs.update({"complete": False}), ["incomplete: no `complete: true`"]),
    "complete absent": (_no_complete, ["incomplete: no `complete: true`"]),
    "bad attrs": (lambda p: _clip(p).attrs.update({"source": "scraped", "fps": 0}),
                  ["attrs source is 'scraped'", "attrs fps is 0"]),
    "colour lost": (_black_fgr, ["fgr: all zero where alpha > 0 (colour lost) in frames 4", "fgr: checksum mismatch"]),
}


def test_clean_store_is_valid(base, tmp_path):
    before = _hashes(base)
    code, report, text = _run(base, tmp_path)
    assert code == 0 and report["ok"] and report["invalid"] == [] and report["notes"] == []
    rows = _rows(report)
    assert sorted(rows) == ["clip000000", "clip000001", "clip000002"]
    for row in rows.values():
        assert row["status"] == "ok" and row["problems"] == [] and row["notes"] == []
        assert (row["frames"], row["height"], row["width"]) == (T, H, W) and row["bytes"] > 0
    table = [ln.split() for ln in text.splitlines()[1:4]]
    assert [r[:3] + r[4:] for r in table] == [[cid, str(T), f"{W}x{H}", "ok"] for cid in sorted(rows)]
    assert [float(r[3]) for r in table] == [pytest.approx(rows[cid]["bytes"] / 2**20, abs=0.005) for cid in sorted(rows)]
    assert "3 clips, 3 valid, 0 invalid" in text
    assert _hashes(base) == before  # validating writes nothing


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_is_found_and_named(base, tmp_path, fault):
    path = _copy(base, tmp_path)
    inject, needles = FAULTS[fault]
    inject(path)
    before = _hashes(path)
    code, report, text = _run(path, tmp_path)
    assert code == validate.EXIT_INVALID and report["invalid"] == [FAULTY]
    rows = _rows(report)
    assert rows[FAULTY]["status"] == "INVALID"
    for needle in needles:
        assert any(p.startswith(needle) for p in rows[FAULTY]["problems"]), (needle, rows[FAULTY]["problems"])
    assert all(rows[c]["status"] == "ok" for c in rows if c != FAULTY)
    # The table names the clip on the row of its first problem.
    assert any(ln.startswith(FAULTY) and "INVALID" in ln for ln in text.splitlines())
    assert _hashes(path) == before  # nothing deleted or rewritten without --prune-incomplete


def test_corrupt_clip_metadata_does_not_stop_the_others(base, tmp_path):
    path = _copy(base, tmp_path)
    (path / "clips" / FAULTY / "zarr.json").write_text("{not json")
    code, report, _ = _run(path, tmp_path)
    rows = _rows(report)
    assert code == 1 and report["invalid"] == [FAULTY]
    assert rows[FAULTY]["problems"][0].startswith("clip group unreadable")
    assert rows["clip000000"]["status"] == rows["clip000002"]["status"] == "ok"


def test_prune_removes_only_incomplete_clips(base, tmp_path):
    path = _copy(base, tmp_path)
    _clip(path).attrs["complete"] = False
    keep = {k: v for k, v in _hashes(path).items() if k.startswith("clips/clip000000") or k.startswith("clips/clip000002")}
    code, report, text = _run(path, tmp_path, "--prune-incomplete")
    assert code == 0 and report["removed"] == [FAULTY] and report["invalid"] == []
    assert _rows(report)[FAULTY]["status"] == "removed" and f"removed clips/{FAULTY}" in text
    assert not (path / "clips" / FAULTY).exists()
    after = _hashes(path)
    assert {k: after.get(k) for k in keep} == keep  # complete clips byte-identical
    # The consolidated snapshot that listed the removed group was rewritten.
    assert sorted(zarr.open_group(path, mode="r")["clips"].group_keys()) == ["clip000000", "clip000002"]


def test_finalize_manifest_and_consolidated_metadata(tmp_path):
    path = tmp_path / "s.zarr"
    root = clipstore.create(path, {})
    rng = np.random.default_rng(3)
    made = {}
    for cid, t in (("a", 3), ("b", 5)):
        made[cid] = {"fgr": rng.integers(0, 256, (t, 8, 10, 3), dtype=np.uint8),
                     "alpha": rng.integers(0, 65536, (t, 8, 10), dtype=np.uint16)}
        clipstore.write_clip(root, cid, made[cid], {"source": "pseudo", "fps": 30.0})
    clipstore.write_clip(root, "c", made["a"], {"source": "synthetic", "fps": 30.0})
    root["clips/c"].attrs["complete"] = False  # an unfinished writer: not in the manifest
    m = clipstore.finalize(path)
    assert m["n_clips"] == 2 and m["frames"] == 8 and sorted(m["clips"]) == ["a", "b"]
    b = m["clips"]["b"]
    assert (b["frames"], b["height"], b["width"], b["source"], b["fps"]) == (5, 8, 10, "pseudo", 30.0)
    assert b["arrays"]["alpha"] == {"dtype": "uint16", "shape": [5, 8, 10], "checksum": clipstore.checksum(made["b"]["alpha"])}
    assert b["arrays"]["fgr"]["checksum"] == clipstore.checksum(made["b"]["fgr"]) and b["bytes"] > 0
    assert m["bytes"] == m["clips"]["a"]["bytes"] + b["bytes"]
    # A plain-zarr reader (default open: the consolidated view) lists the clips and reads the manifest.
    plain = zarr.open_group(path, mode="r")
    assert plain.metadata.consolidated_metadata is not None
    assert sorted(plain["clips"].group_keys()) == ["a", "b", "c"]
    assert plain.attrs["manifest"]["clips"]["a"]["frames"] == 3
    np.testing.assert_array_equal(plain["clips/b/alpha"][:], made["b"]["alpha"])
    # Finalizing an unchanged store writes the same bytes.
    before = (path / "zarr.json").read_bytes()
    clipstore.finalize(path)
    assert (path / "zarr.json").read_bytes() == before

    # A clip added after finalize: writers never see the snapshot, readers of it do not see the clip.
    clipstore.write_clip(clipstore.open_store(path, mode="r+"), "d", made["a"], {"source": "pseudo", "fps": 30.0})
    assert "d" not in zarr.open_group(path, mode="r")["clips"].group_keys()
    assert "d" in clipstore.complete_ids(clipstore.open_store(path))
    root = clipstore.open_store(path)
    check = clipstore.check_clip(root, "d", clipstore.read_manifest(root))
    assert check.ok and any(n.startswith("not in manifest") for n in check.notes)
    clipstore.finalize(path)
    assert "d" in zarr.open_group(path, mode="r")["clips"].group_keys()
    assert clipstore.read_manifest(clipstore.open_store(path))["n_clips"] == 3


def test_manifest_disagreements(base, tmp_path):
    path = _copy(base, tmp_path)
    shutil.rmtree(path / "clips" / "clip000002")  # lost since finalize
    root = clipstore.open_store(path, mode="r+")  # a clip replaced since finalize: its checksums moved
    new = {"fgr": np.full((T, H, W, 3), 9, np.uint8), "alpha": np.full((T, H, W), 7, np.uint16)}
    clipstore.write_clip(root, FAULTY, new, {"source": "synthetic", "fps": 24.0}, overwrite=True)
    clipstore.write_clip(root, "clip000009", new, {"source": "synthetic", "fps": 24.0})  # new, not finalized
    code, report, _ = _run(path, tmp_path)
    rows = _rows(report)
    assert code == 1 and report["invalid"] == [FAULTY, "clip000002"]
    assert rows["clip000002"]["problems"] == ["in the manifest but not in the store"]
    assert "alpha: manifest checksum differs from the clip's" in rows[FAULTY]["problems"]
    assert rows["clip000009"]["status"] == "ok*" and "not in manifest" in rows["clip000009"]["notes"][-1]
    assert any("consolidated metadata lists" in n for n in report["notes"])


def test_finalize_flag_only_when_valid(tmp_path):
    path = Path(write_store(tmp_path / "s.zarr", 2, t=3, h=8, w=8))
    assert clipstore.read_manifest(clipstore.open_store(path)) is None
    _clip(path).attrs["complete"] = False
    code, report, _ = _run(path, tmp_path, "--finalize")
    assert code == 1 and clipstore.read_manifest(clipstore.open_store(path)) is None and "not finalized" in report["notes"][-1]
    code, report, _ = _run(path, tmp_path, "--prune-incomplete", "--finalize")
    assert code == 0 and clipstore.read_manifest(clipstore.open_store(path))["n_clips"] == 1


@pytest.mark.blender
@pytest.mark.ray
@pytest.mark.slow
def test_real_render_is_valid_and_finalized(tmp_path, small_cfg):
    """A real 64 px 4-frame render: the driver finalizes; validate passes it, then finds a truncated shard."""
    from pipelines.render import main as render_main
    cfg = small_cfg("n_clips=1")
    assert render_main.task(cfg) == 0
    path = Path(cfg["store"]["path"])
    plain = zarr.open_group(path, mode="r")
    assert plain.metadata.consolidated_metadata is not None and list(plain["clips"].group_keys()) == ["clip000000"]
    entry = plain.attrs["manifest"]["clips"]["clip000000"]
    assert (entry["frames"], entry["height"], entry["width"]) == (4, 64, 64)
    assert set(entry["arrays"]) >= {"fgr", "alpha", "alpha_hair"}
    code, report, _ = _run(path, tmp_path)
    row = _rows(report)["clip000000"]
    assert code == 0 and row["status"] == "ok" and row["notes"] == [] and report["notes"] == []
    f = next(p for p in (path / "clips/clip000000/alpha_hair/c").rglob("*") if p.is_file())
    f.write_bytes(f.read_bytes()[:-10])
    code, report, _ = _run(path, tmp_path)
    assert code == 1 and _rows(report)["clip000000"]["problems"][0].startswith("alpha_hair: unreadable at frame")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.validate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_cli_exit_codes(base, tmp_path):
    a_file = tmp_path / "file.zarr"
    a_file.write_text("x")
    other = tmp_path / "other.zarr"
    zarr.open_group(other, mode="w").attrs["format"] = "something-else"
    for target, needle in [(tmp_path / "absent.zarr", "does not exist"), (a_file, "is a file"),
                           (other, "not a gvm-synth.clips store")]:
        r = _cli(str(target))
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr
    r = _cli(str(base))
    assert r.returncode == 0 and "3 valid, 0 invalid" in r.stdout, r.stderr
    path = _copy(base, tmp_path)
    _truncate(path)
    r = _cli(str(path))
    assert r.returncode == 1 and f"{FAULTY}" in r.stdout and "alpha: unreadable" in r.stdout


@pytest.mark.parametrize("source", clipstore.SOURCES)
def test_every_source_of_the_contract_is_valid(tmp_path, source):
    """synthetic, pseudo and segmentation clips (binary masks as alpha) all meet the contract."""
    path = write_store(tmp_path / "s.zarr", 1, source=source)
    code, report, _ = _run(path, tmp_path)
    assert code == 0 and report["clips"][0]["status"] in ("ok", "ok*"), report


def test_a_clip_of_another_source_is_invalid(base, tmp_path):
    path = _copy(base, tmp_path)
    _clip(path).attrs["source"] = "scraped"
    code, report, _ = _run(path, tmp_path)
    assert code == validate.EXIT_INVALID
    assert any("source is 'scraped'" in p for p in _rows(report)[FAULTY]["problems"])
