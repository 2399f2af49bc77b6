"""Benchmark sets from store clips: layout, exact compositing, the held-out split, resuming, backgrounds."""
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from gvm_train import data
from matting.sheet import LABEL_H
from pipelines.benchmark_set import build
import clipstore
from core.cli import UserError, compose, to_container
from tests.conftest import write_store

pytestmark = [pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
SIDE, T = 36, 6  # store clips are SIDE x SIDE, T frames; 64x36 places them unscaled
SMALL = ["resolutions=[64x36,96x54]", "frames=4", "contact_sheet.cell=24", "workers=2"]


def _cfg(*args: str) -> dict:
    return to_container(compose("benchmark_set", [*SMALL, *args]))


def _png(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img.astype(np.float32)


def _clips(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _layer(folder: Path, clip: str, layer: str) -> list[np.ndarray]:
    return [_png(p) for p in sorted((folder / clip / layer).glob("*.png"))]


def _files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in folder.rglob("*") if p.is_file() and p.parent != folder}


def _alpha8(a16: np.ndarray) -> np.ndarray:
    return np.round(a16.astype(np.float64) / clipstore.ALPHA_MAX * 255)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    discs = write_store(d / "discs.zarr", 6, t=T, h=SIDE, w=SIDE, value=200)
    hair = write_store(d / "hair.zarr", 2, t=T, h=SIDE, w=SIDE, value=90)
    clip = clipstore.read_clip(clipstore.open_store(hair), "clip000000")
    arrays = {"fgr": clip["fgr"][:], "alpha": clip["alpha"][:], "alpha_hair": clip["alpha"][:] // 3}
    clipstore.write_clip(clipstore.create(hair, {}), "clip000002", arrays, {"source": "synthetic", "fps": 24.0})
    # a clip whose figure is a lens, labelled in `parts` with its legend
    legend = ["skin", "lens"]
    parts = np.where(clip["alpha"][:] > 0, 2, 0).astype(np.uint8)
    clipstore.write_clip(clipstore.open_store(hair, "r+"), "clip000003",
                         {"fgr": clip["fgr"][:], "alpha": clip["alpha"][:], "parts": parts},
                         {"source": "synthetic", "fps": 24.0}, array_attrs={"parts": {"parts": legend}})
    return discs, hair


@pytest.fixture(scope="module")
def built(stores, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cfg = _cfg(f"stores=[{stores[0]}]", f"output_dir={out}")
    return cfg, build(cfg)


@pytest.mark.slow
def test_layout_holds_out_exactly_the_finetune_split(stores, built):
    cfg, folders = built
    out = Path(cfg["output_dir"])
    assert folders == [out / "heldout_64x36", out / "heldout_96x54"]
    refs = data.index_stores([stores[0]])
    train, val = data.split(refs, cfg["data"]["val_fraction"], cfg["data"]["val_min_clips"])
    assert val and train  # the test means something only if the split leaves clips on both sides
    expected = sorted(f"discs-{r.clip_id}-{k}" for r in val for k in ("still", "motion"))
    for folder, (w, h) in zip(folders, [(64, 36), (96, 54)]):
        assert _clips(folder) == expected
        for clip in expected:
            assert sorted(p.name for p in (folder / clip).iterdir() if p.is_dir()) == ["bgr", "com", "fgr", "pha"]
            for layer in ("com", "fgr", "pha", "bgr"):
                frames = sorted((folder / clip / layer).glob("*.png"))
                assert [p.name for p in frames] == ["0000.png", "0001.png", "0002.png", "0003.png"]
                assert _png(frames[0]).shape[:2] == (h, w)
        manifest = json.loads((folder / "manifest.json").read_text())
        assert sorted(c["name"] for c in manifest["clips"]) == expected
        assert manifest["size"] == [w, h] and all(c["frames"] == 4 for c in manifest["clips"])
        assert {c["background"]["kind"] for c in manifest["clips"]} == {"still", "motion"}
        sheet = _png(folder / "contact_sheet.png")
        assert sheet.shape[0] == len(expected) * (cfg["contact_sheet"]["cell"] + LABEL_H)


def test_pha_is_the_placed_store_alpha_and_com_the_composite(stores, built):
    _, (low, high) = built
    root = clipstore.open_store(stores[0])
    for clip in _clips(low):
        alpha8 = _alpha8(clipstore.read_clip(root, clip.split("-")[1])["alpha"][:4])
        for t, pha in enumerate(_layer(low, clip, "pha")):
            # Unscaled and at a whole-pixel offset: the store alpha itself, somewhere along the width.
            assert pha.sum() == alpha8[t].sum()
            assert any(np.array_equal(pha[:, x:x + SIDE], alpha8[t]) for x in range(64 - SIDE + 1))
        for t, pha in enumerate(_layer(high, clip, "pha")):
            assert pha.sum() == pytest.approx(alpha8[t].sum() * 1.5**2, rel=0.02)
        for folder in (low, high):
            com, fgr, pha, bgr = (_layer(folder, clip, n) for n in ("com", "fgr", "pha", "bgr"))
            for c, f, p, b in zip(com, fgr, pha, bgr):
                a = p[..., None] / 255
                assert np.abs(c - (f * a + b * (1 - a))).max() <= 1
                assert (f == 200).all()  # the store's flat colour, extended over the whole frame


def test_moving_background_moves_and_still_one_does_not(built):
    _, (low, _) = built
    for clip in _clips(low):
        bgr = _layer(low, clip, "bgr")
        steps = [np.abs(b - a).mean() for a, b in zip(bgr, bgr[1:])]
        if clip.endswith("-still"):
            assert steps == [0.0] * 3
        else:
            assert min(steps) > 0.5, steps


def test_panning_still_background_drifts(stores, tmp_path):
    (folder,) = build(_cfg(f"stores=[{stores[0]}]", f"output_dir={tmp_path}", "resolutions=[64x36]",
                           "backgrounds.kinds=[still]", "backgrounds.still.pan=0.05"))
    for clip in _clips(folder):
        bgr = _layer(folder, clip, "bgr")
        assert all(np.abs(b - a).mean() > 0.5 for a, b in zip(bgr, bgr[1:]))


def test_all_clips_and_hair_only_where_the_store_has_it(stores, tmp_path):
    (folder,) = build(_cfg(f"stores=[{stores[1]}]", f"output_dir={tmp_path}", "resolutions=[64x36]",
                           "backgrounds.kinds=[still]", "clips=all"))
    assert _clips(folder) == [f"hair-clip00000{i}-still" for i in range(4)]
    with_hair = [c for c in _clips(folder) if (folder / c / "hair").is_dir()]
    assert with_hair == ["hair-clip000002-still"]
    hair16 = clipstore.read_clip(clipstore.open_store(stores[1]), "clip000002")["alpha_hair"][:4]
    for t, hair in enumerate(_layer(folder, "hair-clip000002-still", "hair")):
        assert hair.sum() == _alpha8(hair16[t]).sum() > 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {c["name"]: c["hair"] for c in manifest["clips"]} == {c: c in with_hair for c in _clips(folder)}
    # Material classes where the store labels parts: the lens's pixels, placed as the alpha is.
    assert [c for c in _clips(folder) if (folder / c / "classes").is_dir()] == ["hair-clip000003-still"]
    lens = 1 + clipstore.CLASS_LABELS.index("lens")
    for pha, labels in zip(_layer(folder, "hair-clip000003-still", "pha"), _layer(folder, "hair-clip000003-still", "classes")):
        assert set(np.unique(labels)) == {0, lens} and ((labels == lens) == (pha > 0)).all()
    # evaluate splits its metrics by class: an error only inside the lens shows there, not in the rest
    from matting.evaluate import evaluate
    pred = tmp_path / "pred"
    for c in _clips(folder):
        (pred / c / "pha").mkdir(parents=True)
        for f in sorted((folder / c / "pha").glob("*.png")):
            a = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
            cv2.imwrite(str(pred / c / "pha" / f.name), np.where(a > 0, np.maximum(a.astype(int) - 20, 0), a).astype(np.uint8))
    result = evaluate(pred, folder, progress=False)
    scores = result["clips"]["hair-clip000003-still"]
    assert scores["lens_mad"] > 1.0 and np.isnan(scores["rest_mad"]) and np.isnan(scores["sheer_mad"])
    assert "lens_mad" in result["metrics"] and "lens_mad" not in result["clips"]["hair-clip000000-still"]


def test_rerun_skips_complete_clips_and_redoes_interrupted_ones(stores, tmp_path):
    args = [f"stores=[{stores[1]}]", f"output_dir={tmp_path}", "resolutions=[64x36]", "clips=all",
            "backgrounds.kinds=[still]"]
    (folder,) = build(_cfg(*args))
    first = _files(folder)
    build(_cfg(*args))
    assert _files(folder) == first  # same bytes, same mtimes: nothing rewritten
    # A run killed mid-clip leaves its temp folder; a folder copied in part lacks its marker.
    killed, partial = "hair-clip000000-still", "hair-clip000001-still"
    os.rename(folder / killed, folder / f".{killed}.tmp")
    (folder / f".{killed}.tmp" / "com" / "0003.png").unlink()
    (folder / partial / "run.json").unlink()
    (folder / partial / "pha" / "0002.png").unlink()
    build(_cfg(*args))
    again = _files(folder)
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    assert {k: v[1] for k, v in again.items()} == {k: v[1] for k, v in first.items()}  # redone byte for byte
    for name, (mtime, _) in again.items():
        redone = name.startswith((killed, partial))
        assert (mtime != first[name][0]) == redone, name
    # Changed settings make a clip another clip: it is redone, not kept.
    build(_cfg(*args, "frames=3"))
    assert all(len(list((folder / c / "com").glob("*.png"))) == 3 for c in _clips(folder))


def test_short_video_folder_plays_back_and_forth(stores, tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    with av.open(str(videos / "flat.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for v in (40, 120, 200):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), v, np.uint8), format="rgb24")
            c.mux(s.encode(frame))
        c.mux(s.encode())
    (folder,) = build(_cfg(f"stores=[{stores[0]}]", f"output_dir={tmp_path / 'out'}", "resolutions=[64x36]",
                           "backgrounds.kinds=[motion]", f"backgrounds.motion.folder={videos}", "frames=5"))
    for clip in _clips(folder):
        levels = [b.mean() for b in _layer(folder, clip, "bgr")]
        assert np.allclose(levels, [40, 120, 200, 120, 40], atol=3), levels


@pytest.mark.slow
def test_bad_inputs_are_one_line_and_write_nothing(stores, tmp_path):
    out = tmp_path / "out"
    clipstore.create(tmp_path / "empty.zarr", {})
    single = write_store(tmp_path / "single.zarr", 1, t=T, h=SIDE, w=SIDE)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("x")
    (junk / "broken.png").write_bytes(b"not a png")
    (junk / "broken.mp4").write_bytes(b"not a video")
    base = [f"output_dir={out}"]
    cases = [
        ([], "no stores given"),
        ([f"stores=[{tmp_path / 'empty.zarr'}]"], "has no complete clips"),
        ([f"stores=[{tmp_path / 'missing.zarr'}]"], "does not exist"),
        ([f"stores=[{stores[0]}]", "resolutions=[64by36]"], "64by36"),
        ([f"stores=[{stores[0]}]", "resolutions=[0x36]"], "0x36"),
        ([f"stores=[{stores[0]}]", f"backgrounds.still.folder={junk}"], "holds no readable images"),
        ([f"stores=[{stores[0]}]", f"backgrounds.motion.folder={junk}"], "holds no decodable videos"),
        ([f"stores=[{stores[0]}]", f"backgrounds.motion.folder={tmp_path / 'nowhere'}"], "is not a folder"),
        ([f"stores=[{single}]"], "clips=all"),
    ]
    for args, needle in cases:
        with pytest.raises(UserError, match=needle):
            build(_cfg(*base, *args))
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", "pipelines.benchmark_set", *base, f"stores=[{single}]"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: no held-out clips") and "clips=all" in lines[0], r.stderr
    assert not out.exists()


def test_a_clip_of_several_people_is_matted_for_each_with_the_others_apart(tmp_path):
    """instances=each: one benchmark clip per person, its pha that person's coverage, others/ the
    rest of the people's, com the frame with everyone in it; evaluate splits the error by them."""
    from matting.evaluate import evaluate
    yy, xx = np.mgrid[:SIDE, :SIDE]
    inst = np.zeros((T, SIDE, SIDE, 2), np.uint16)
    inst[:, (xx - 9) ** 2 + (yy - 18) ** 2 < 36, 0] = 65535
    inst[:, (xx - 26) ** 2 + (yy - 18) ** 2 < 36, 1] = 65535
    root = clipstore.create(tmp_path / "two.zarr", {})
    clipstore.write_clip(root, "clip000000", {"fgr": np.full((T, SIDE, SIDE, 3), 200, np.uint8),
                                             "alpha": inst.sum(-1).astype(np.uint16), "instances": inst},
                         {"source": "synthetic", "fps": 24.0},
                         outputs={"instances": clipstore.Output.from_attrs({**clipstore.OUTPUTS["instances"].attrs,
                                                                            "channels": ["person0", "person1"]})})
    (folder,) = build(_cfg(f"stores=[{tmp_path / 'two.zarr'}]", f"output_dir={tmp_path / 'b'}", "resolutions=[64x36]",
                           "clips=all", "instances=each", "backgrounds.kinds=[still]"))
    assert _clips(folder) == ["two-clip000000-still-p0", "two-clip000000-still-p1"]
    everyone = _alpha8(inst.sum(-1).clip(0, 65535))
    for k in (0, 1):
        name = f"two-clip000000-still-p{k}"
        pha, others = _layer(folder, name, "pha")[0], _layer(folder, name, "others")[0]
        assert pha.sum() == _alpha8(inst[0, ..., k]).sum() and others.sum() == _alpha8(inst[0, ..., 1 - k]).sum()   # placed whole
        assert (pha * others).sum() == 0
        guide = _layer(folder, name, "guide")[0]
        assert np.array_equal(guide > 0, pha >= 128)   # the person's instance mask, for mask=<set>
        com, bgr = _layer(folder, name, "com")[0], _layer(folder, name, "bgr")[0]
        assert (np.abs(com - bgr).max(-1) > 0).sum() == (everyone[0] > 0).sum()   # both people in the frame
    # Scored against itself plus the other person (everyone's matte): all the error is on the other.
    pred = tmp_path / "pred"
    for k in (0, 1):
        name = f"two-clip000000-still-p{k}"
        (pred / name / "pha").mkdir(parents=True)
        for f in sorted((folder / name / "pha").glob("*.png")):
            leak = np.maximum(_png(f), _png(folder / name / "others" / f.name))
            cv2.imwrite(str(pred / name / "pha" / f.name), leak.astype(np.uint8))
    out = evaluate(pred, folder, progress=False)
    assert out["dataset"]["others_mad"] > 0 and out["dataset"]["target_mad"] == 0
    # The classical baseline guided by each person's instance mask (mask=<set>: its guide/) mattes that person.
    from matting import classical
    assert classical.main.task(to_container(compose("classical", [f"input={folder}", f"mask={folder}",
                                                                  f"output_dir={tmp_path / 'cl'}"]))) == 0
    scored = evaluate(tmp_path / "cl", folder, progress=False)
    assert scored["dataset"]["others_mad"] < 20 and scored["dataset"]["pha_mad"] < 20
