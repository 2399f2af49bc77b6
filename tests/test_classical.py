"""The classical baseline on real footage (carphone) and on composites whose matte is known."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from matting.classical import ClassicalMatting, closed_form_alpha, main
from matting.trimap import make_trimap
from matting.foreground import estimate_foreground
from matting.video import open_input, sample_video
from core.cli import UserError, compose, to_container

ROOT = Path(__file__).resolve().parent.parent
CARPHONE = sample_video("carphone_pristine.mp4")


def _cfg(*overrides: str) -> dict:
    return to_container(compose("classical", list(overrides)))


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return 1e3 * float(np.abs(a - b).mean())


@pytest.fixture(scope="module")
def carphone_frames() -> list[np.ndarray]:
    return list(open_input(CARPHONE).frames(0, 3))


@pytest.fixture(scope="module")
def disc():
    """A soft disc (6 px edge) of a smooth colour ramp over a blurred checkerboard: image, matte, fg."""
    yy, xx = np.mgrid[:96, :96].astype(np.float32)
    alpha = np.clip((26 - np.hypot(yy - 48, xx - 46)) / 6 + 0.5, 0, 1).astype(np.float32)
    fg = np.dstack([np.full_like(xx, 200), 40 + xx, 60 + yy])
    squares = (((yy // 8 + xx // 8) % 2) > 0)[..., None]
    bg = cv2.GaussianBlur(np.where(squares, [30, 120, 200], [90, 160, 60]).astype(np.float32), (0, 0), 1.0)
    image = np.clip(np.rint(fg * alpha[..., None] + bg * (1 - alpha[..., None])), 0, 255).astype(np.uint8)
    return image, alpha, fg


@pytest.mark.slow
def test_person_in_carphone_is_found(carphone_frames):
    cfg = _cfg()
    with ClassicalMatting(cfg) as matting:
        for frame in carphone_frames:
            alpha, fgr = matting(frame)
            assert alpha.dtype == np.float32 and alpha.shape == (144, 176) and 0 <= alpha.min() <= alpha.max() <= 1
            assert fgr.dtype == np.uint8 and fgr.shape == (144, 176, 3)
            body = alpha[100:, 60:120].mean()  # the man's chest, lower centre of the frame
            corners = np.mean([alpha[:20, :20].mean(), alpha[:20, -20:].mean()])  # car ceiling and window
            assert body > 0.9 and corners < 0.05 and body - corners > 0.85
            # Where the matte is solid, the foreground is the frame itself.
            solid = alpha > 0.99
            assert np.abs(fgr[solid].astype(int) - frame[solid]).mean() < 2


@pytest.mark.slow
def test_pose_segmenter_and_processing_size(carphone_frames):
    frame = carphone_frames[0]
    with ClassicalMatting(_cfg("segmenter=pose")) as pose, ClassicalMatting(_cfg("max_size=88")) as small:
        a_pose, a_small = pose.alpha(frame), small.alpha(frame)
    for a in (a_pose, a_small):
        assert a.shape == (144, 176) and a[100:, 60:120].mean() > 0.8 and a[:20, :20].mean() < 0.1
    with ClassicalMatting(_cfg("segmenter=pose", "pose.static_image_mode=true")) as pose:
        assert pose.alpha(np.full((144, 176, 3), 128, np.uint8)).max() == 0  # nobody there: no mask, no matte


@pytest.mark.slow
def test_trimap_and_closed_form_beat_the_thresholded_mask(disc):
    image, truth, _ = disc
    # A coarse segmentation: the matte seen at 1/8 resolution, upsampled and 2 px off.
    prob = np.roll(cv2.resize(cv2.resize(truth, (12, 12), interpolation=cv2.INTER_AREA), (96, 96)), 2, axis=1)
    cfg = _cfg()
    trimap = make_trimap(prob, cfg["trimap"])
    assert set(np.unique(trimap)) == {0.0, 0.5, 1.0}
    assert (truth[trimap == 1] > 0.5).all() and (truth[trimap == 0] < 0.5).all()  # no confident mistake
    alpha = closed_form_alpha(image, trimap, cfg["closed_form"])
    mask = (prob > 0.5).astype(np.float32)
    assert _mad(alpha, truth) < 0.25 * _mad(mask, truth)
    band = (truth > 0.05) & (truth < 0.95)  # the soft edge itself, which no binary mask can have
    assert np.abs(alpha - truth)[band].mean() < 0.05 < np.abs(mask - truth)[band].mean()


def test_closed_form_recovers_the_soft_edge_from_a_trimap_of_the_known_matte(disc):
    image, truth, _ = disc
    trimap = np.where(truth >= 1, 1.0, np.where(truth <= 0, 0.0, 0.5))
    trimap[cv2.dilate(((truth > 0) & (truth < 1)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] = 0.5
    alpha = closed_form_alpha(image, trimap, _cfg()["closed_form"])
    assert _mad(alpha, truth) < 0.1 * _mad(trimap, truth)
    assert np.array_equal(alpha[trimap != 0.5], trimap[trimap != 0.5])  # known pixels stay as given


def test_one_sided_trimaps_have_constant_solutions(disc):
    image = disc[0]
    cf = _cfg()["closed_form"]
    nobody = np.where(np.arange(96) < 40, 0.0, 0.5)[None].repeat(96, 0)
    assert closed_form_alpha(image, nobody, cf).max() == 0
    everybody = np.where(np.arange(96) < 40, 1.0, 0.5)[None].repeat(96, 0)
    assert closed_form_alpha(image, everybody, cf).min() == 1


def test_estimated_foreground_removes_the_background_from_the_edge(disc):
    image, truth, fg = disc
    fgr = estimate_foreground(image, truth, _cfg()["writer"]["foreground"])
    band = (truth > 0.1) & (truth < 0.9)
    # In the soft band the image mixes in the checkerboard; the estimate is much closer to the true colour.
    assert np.abs(fgr - fg)[band].mean() < 0.3 * np.abs(image - fg)[band].mean()


@pytest.mark.slow
def test_app_mattes_a_frame_folder_into_the_output_layout(carphone_frames, tmp_path):
    frames_dir = tmp_path / "frames"
    frames_dir.mkdir()
    for i, f in enumerate(carphone_frames):
        cv2.imwrite(str(frames_dir / f"frame_{i:03d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    assert main.task(_cfg(f"input={frames_dir}", f"output_dir={out}", "writer.folder_fps=12")) == 0
    assert sorted(p.name for p in (out / "pha").iterdir()) == ["0000.png", "0001.png", "0002.png"]
    assert len(list((out / "fgr").iterdir())) == 3
    preview = open_input(out / "preview.mp4")
    assert preview.n_frames == 3 and preview.fps == 12
    assert open_input(out / "matte.mov").n_frames == 3
    pha = cv2.imread(str(out / "pha" / "0000.png"), cv2.IMREAD_UNCHANGED)
    assert pha[100:, 60:120].mean() > 230 and pha[:20, :20].mean() < 13


def test_bad_config_and_input_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="input: give a video"):
        main.task(_cfg())
    with pytest.raises(UserError, match="segmenter: 'grabcut'"):
        main.task(_cfg(f"input={CARPHONE}", "segmenter=grabcut"))
    with pytest.raises(UserError, match="writer: preview.mp4: FFmpeg's libx264 rejects"):
        main.task(_cfg(f"input={CARPHONE}", f"output_dir={tmp_path / 'out'}", "writer.preview.preset=warp9"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        main.task(_cfg(f"input={CARPHONE}", f"output_dir={a_file}"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_unreadable_video_exits_2_with_one_error_line(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 2048, np.uint8).tobytes())
    r = subprocess.run([sys.executable, "-m", "matting.classical", f"input={bad}", f"output_dir={tmp_path / 'out'}"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error:") and str(bad) in lines[0] and "FFmpeg cannot read" in lines[0]
    assert not (tmp_path / "out").exists()


def test_given_masks_take_the_segmenters_place(disc, tmp_path):
    """mask=: one person of several is matted from the mask given for them (here a disc), frame by
    frame; a mask folder that does not fit the input is one line."""
    image, alpha, _ = disc
    frames, masks = tmp_path / "frames", tmp_path / "masks"
    frames.mkdir(), masks.mkdir()
    for t in range(3):
        cv2.imwrite(str(frames / f"{t:04d}.png"), image[..., ::-1])
        cv2.imwrite(str(masks / f"{t:04d}.png"), np.where(alpha > 0.5, 255, 0).astype(np.uint8))
    out = tmp_path / "out"
    assert main.task(_cfg(f"input={frames}", f"mask={masks}", f"output_dir={out}")) == 0
    pha = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) / 255.0 for p in sorted((out / "pha").glob("*.png"))]
    assert len(pha) == 3 and all(_mad(p, alpha) < 15 for p in pha)
    (masks / "0002.png").unlink()
    with pytest.raises(UserError, match="mask: 2 masks"):
        main.task(_cfg(f"input={frames}", f"mask={masks}", f"output_dir={tmp_path / 'out2'}"))
