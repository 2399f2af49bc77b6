"""The evaluate app on small PNG folders written here: report files, known values and every bad input."""
import csv
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from matting.evaluate import compare_table, evaluate, main
from core.cli import UserError, compose, to_container

ROOT = Path(__file__).resolve().parent.parent
H, W = 24, 32
YY, XX = np.mgrid[:H, :W]


def alpha(t: int) -> np.ndarray:
    """A soft-edged disc moving one pixel a frame, 8-bit, at most 200 so offsets stay in range."""
    return np.clip((7 - np.hypot(XX - 12 - t, YY - 12)) * 60 + 100, 0, 200).astype(np.uint8)


def write_clip(root: Path, name: str, phas, fgrs=None, hairs=None) -> None:
    for sub, frames in (("pha", phas), ("fgr", fgrs), ("hair", hairs)):
        if frames is None:
            continue
        (root / name / sub).mkdir(parents=True, exist_ok=True)
        for t, img in enumerate(frames):
            cv2.imwrite(str(root / name / sub / f"{t:04d}.png"), img)


@pytest.fixture
def folders(tmp_path):
    """gt: clip a (3 frames, fgr, hair), clip b (5 frames, fgr only in gt); pred: constant alpha offsets."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    a = [alpha(t) for t in range(3)]
    b = [alpha(t) for t in range(5)]
    fgr = [np.full((H, W, 3), (40, 90, 160), np.uint8) for _ in a]
    hair = [np.where(x > 150, 255, 0).astype(np.uint8) for x in a]
    write_clip(gt, "a", a, fgr, hair)
    write_clip(gt, "b", b, [np.zeros((H, W, 3), np.uint8)] * 5)
    write_clip(pred, "a", [x + 25 for x in a], [f + 10 for f in fgr])
    write_clip(pred, "b", [x + 51 for x in b])
    (gt / "not_a_clip").mkdir()  # no pha/: ignored
    (gt / ".half_written" / "pha").mkdir(parents=True)  # hidden: a clip still being written, ignored
    return pred, gt


def _cfg(*overrides: str) -> dict:
    return to_container(compose("evaluate", list(overrides)))


@pytest.mark.slow
def test_writes_json_csvs_markdown_and_plot_with_known_values(folders, tmp_path, capsys):
    pred, gt = folders
    out = tmp_path / "report" / "m.json"
    assert main.task(_cfg(f"pred={pred}", f"gt={gt}", f"output={out}", "progress=false")) == 0
    r = json.loads(out.read_text())
    assert (r["protocol"], r["resolution"], r["n_clips"], r["n_frames"]) == ("lr", f"{W}x{H}", 2, 8)
    assert r["clips"]["a"]["pha_mad"] == pytest.approx(1e3 * 25 / 255, rel=1e-5)
    assert r["clips"]["b"]["pha_mad"] == pytest.approx(1e3 * 51 / 255, rel=1e-5)
    # Each clip weighs the same: (a + b) / 2, not weighted by their 3 and 5 frames.
    assert r["dataset"]["pha_mad"] == pytest.approx(1e3 * (25 + 51) / 255 / 2, rel=1e-5)
    assert r["dataset"]["pha_dtssd"] == pytest.approx(0, abs=1e-4)
    # fgr only where both sides have it (clip a), over pixels with true alpha > 0; hair only where gt has it.
    assert r["clips"]["a"]["fgr_mad"] == pytest.approx(1e3 * 10 / 255, rel=1e-5)
    assert "fgr_mad" not in r["clips"]["b"] and r["dataset"]["fgr_mad"] == r["clips"]["a"]["fgr_mad"]
    assert r["clips"]["a"]["hair_mad"] == pytest.approx(1e3 * 25 / 255, rel=1e-5)
    assert "hair_mad" not in r["clips"]["b"]
    assert {"pha_conn", "pha_grad", "pha_messddt"} <= set(r["dataset"]) and "1e3*mean|p-g|" in r["notes"]

    with open(tmp_path / "report" / "m_frames.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(x["clip"], int(x["frame"])) for x in rows] == [("a", t) for t in range(3)] + [("b", t) for t in range(5)]
    assert float(rows[4]["pha_mad"]) == pytest.approx(1e3 * 51 / 255, rel=1e-5) and rows[4]["fgr_mad"] == ""
    with open(tmp_path / "report" / "m_clips.csv") as f:
        clips = list(csv.DictReader(f))
    assert [(c["clip"], c["frames"], c["resolution"]) for c in clips] == [("a", "3", f"{W}x{H}"), ("b", "5", f"{W}x{H}")]

    md = (tmp_path / "report" / "m.md").read_text()
    assert md.startswith(f"Protocol lr, resolution {W}x{H}")
    body = [ln for ln in md.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in body] == ["| clip", "| a", "| b", "| **mean**"]
    assert f"{1e3 * 38 / 255:.3f}" in body[-1]
    assert md in capsys.readouterr().out  # the same table is printed
    plot = cv2.imread(str(tmp_path / "report" / "m.png"))
    assert plot is not None and plot.shape[0] > 100


def test_hr_protocol_parallel_workers_and_compare_table(folders):
    pred, gt = folders
    lr = evaluate(pred, gt, "lr", progress=False)
    hr = evaluate(pred, gt, "hr", workers=2, progress=False)
    assert "pha_conn" not in hr["dataset"] and hr["protocol"] == "hr"
    assert hr["dataset"]["pha_mad"] == lr["dataset"]["pha_mad"]
    table = compare_table({"ours": lr, "baseline": hr})
    assert "protocol hr" in table and "protocol lr" in table
    rows = [ln for ln in table.splitlines() if ln.startswith("| ")]
    assert [ln.split(" | ")[0] for ln in rows] == ["| method", "| ours", "| baseline"]
    assert rows[0].split(" | ")[1:3] == ["MAD", "MSE"] and "n/a" in rows[2]  # hr has no Conn


def test_frames_scored_in_threads_give_the_same_numbers(tmp_path):
    """Frames read and scored ahead in threads, the temporal metrics of each pair beside them: every
    per-frame value equal to the last bit to one frame at a time, with noisy predictions, many frames
    and MESSDdt's unknown region (its per-frame mask travels with the frame)."""
    rng = np.random.default_rng(3)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    true = [alpha(t % 12) for t in range(23)]
    write_clip(gt, "a", true, [rng.integers(0, 256, (H, W, 3), np.uint8) for _ in true], [x // 2 for x in true])
    write_clip(pred, "a", [np.clip(x + rng.normal(0, 20, x.shape), 0, 255).astype(np.uint8) for x in true],
               [rng.integers(0, 256, (H, W, 3), np.uint8) for _ in true])
    cfg = _cfg()["metrics"]
    cfg["messddt"]["region"] = "unknown"
    one = evaluate(pred, gt, "lr", cfg, progress=False, threads=1)
    for threads in (2, 5):
        many = evaluate(pred, gt, "lr", cfg, progress=False, threads=threads)
        assert many["frames"] == one["frames"] and list(many["frames"]["a"]) == list(one["frames"]["a"])
    assert one["frames"]["a"]["pha_messddt"][0] == 0 and min(one["frames"]["a"]["pha_messddt"][1:]) > 0
    # the truth kept for the next evaluation of the same set: the same numbers, the first time and the next
    for _ in range(2):
        assert evaluate(pred, gt, "lr", cfg, progress=False, threads=3, truth_cache_mb=64)["frames"] == one["frames"]
    # a truth file written again is read again, not taken from the cache
    cv2.imwrite(str(gt / "a" / "pha" / "0005.png"), np.zeros((H, W), np.uint8))
    changed = evaluate(pred, gt, "lr", cfg, progress=False, threads=3, truth_cache_mb=64)["frames"]["a"]
    assert changed["pha_mad"][5] != one["frames"]["a"]["pha_mad"][5] and changed["pha_mad"][4] == one["frames"]["a"]["pha_mad"][4]
    with pytest.raises(UserError, match="threads must be a non-negative integer"):
        evaluate(pred, gt, threads=-1)


def _count_mismatch(pred, gt):
    (pred / "b" / "pha" / "0004.png").unlink()
    return "clip b: pred pha/ has 4 frames but gt pha/ has 5"


def _size_mismatch(pred, gt):
    cv2.imwrite(str(pred / "a" / "pha" / "0001.png"), np.zeros((H, W + 2), np.uint8))
    return f"clip a frame 1 (0001.png): pred pha is {W + 2}x{H} but gt pha is {W}x{H}"


def _not_png(pred, gt):
    (gt / "b" / "pha" / "0002.png").write_text("not an image")
    return "0002.png: not a PNG file"


def _corrupt_png(pred, gt):
    path = pred / "b" / "pha" / "0003.png"
    path.write_bytes(path.read_bytes()[:60])  # a real header, the pixel data cut short
    return "0003.png: not a readable PNG"


def _no_clips(pred, gt):
    for clip in ("a", "b"):
        (gt / clip / "pha").rename(gt / clip / "alpha")
    return "has no clips"


@pytest.mark.parametrize("break_it", [_count_mismatch, _size_mismatch, _not_png, _corrupt_png, _no_clips])
def test_bad_input_is_one_named_error(folders, tmp_path, break_it):
    pred, gt = folders
    needle = break_it(pred, gt)
    out = tmp_path / "o.json"
    with pytest.raises(UserError, match="^[^\n]+$") as e:
        main.task(_cfg(f"pred={pred}", f"gt={gt}", f"output={out}", "progress=false"))
    assert needle in str(e.value) and not out.exists()


def test_missing_folders_and_settings_are_named(folders, tmp_path):
    pred, gt = folders
    with pytest.raises(UserError, match="gt folder .*nowhere does not exist"):
        evaluate(pred, tmp_path / "nowhere")
    with pytest.raises(UserError, match="pred is not set"):
        main.task(_cfg(f"gt={gt}"))
    with pytest.raises(UserError, match="protocol must be lr or hr"):
        evaluate(pred, gt, "4k")


@pytest.mark.slow
def test_cli_missing_clip_exits_2_with_one_error_line(folders, tmp_path):
    pred, gt = folders
    for f in (pred / "b" / "pha").iterdir():
        f.unlink()
    (pred / "b" / "pha").rmdir()
    r = subprocess.run([sys.executable, "-m", "matting.evaluate", f"pred={pred}", f"gt={gt}",
                        f"output={tmp_path / 'o.json'}", f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and "has no clip b" in lines[0], r.stderr
    assert not (tmp_path / "o.json").exists()
