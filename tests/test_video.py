"""Video in and mattes out, for real: PyAV/FFmpeg files written and decoded back, no mocks."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from matting.video import MatteWriter, VideoError, open_input, sample_video, wants_foreground
from core.cli import compose, to_container

CARPHONE = sample_video("carphone_pristine.mp4")


def _out_cfg(*overrides: str) -> dict:
    return to_container(compose("classical", [f"writer.{o}" for o in overrides]))["writer"]


def _plane(frame: av.VideoFrame, i: int) -> np.ndarray:
    p = frame.planes[i]
    itemsize = 2 if frame.format.components[i].bits > 8 else 1
    a = np.frombuffer(p, np.uint16 if itemsize == 2 else np.uint8)
    return a.reshape(p.height, p.line_size // itemsize)[:, :p.width]


def _decode(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


def _marker_video(path: Path, n: int, codec: str, **options: str) -> None:
    """Frame i shows a bright bar at column 2*i on black: its index is readable from its pixels."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25, options=options)
        s.width, s.height, s.pix_fmt = 96, 32, "yuv420p"
        for i in range(n):
            img = np.zeros((32, 96, 3), np.uint8)
            img[:, 2 * i:2 * i + 2] = 255
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode(None))


def _index(frame: np.ndarray) -> int:
    return int(frame.mean(axis=(0, 2)).argmax()) // 2


# ---------------------------------------------------------------- reading

def test_carphone_size_rate_count_and_ranges():
    v = open_input(CARPHONE)
    with av.open(str(CARPHONE)) as c:
        rate = c.streams.video[0].average_rate
        reference = [f.to_ndarray(format="rgb24", threads=1) for f in c.decode(video=0)]
    assert (v.width, v.height, v.n_frames) == (176, 144, 120) == (176, 144, len(reference))
    assert v.rate == rate == Fraction(30000, 1001) and v.fps == pytest.approx(29.97, abs=1e-3)
    everything = list(v.frames())
    assert len(everything) == 120 and all(f.dtype == np.uint8 and f.shape == (144, 176, 3) for f in everything)
    assert all(np.array_equal(a, b) for a, b in zip(everything, reference))
    for start, stop in [(0, 3), (1, 4), (57, 60), (118, None), (119, 500), (120, None)]:
        got = list(v.frames(start, stop))
        want = reference[start:stop]
        assert len(got) == len(want) and all(np.array_equal(a, b) for a, b in zip(got, want)), (start, stop)
    with pytest.raises(ValueError, match="frame range"):
        list(v.frames(-1))


@pytest.mark.parametrize("name,codec,options", [
    ("b.mkv", "libx264", {"g": "8", "bf": "3"}),     # Matroska records no frame count; B-frames reorder
    ("b.mp4", "libx264", {"g": "8", "bf": "3"}),
    ("v.webm", "libvpx-vp9", {"g": "8"}),
])
def test_count_and_seeking_are_exact_on_multi_gop_video(tmp_path, name, codec, options):
    path = tmp_path / name
    _marker_video(path, 40, codec, **options)
    v = open_input(path)
    assert v.n_frames == 40 and v.fps == 25.0
    assert [_index(f) for f in v.frames()] == list(range(40))
    for start in (1, 7, 8, 9, 17, 33, 39):  # before, on and after keyframes
        assert [_index(f) for f in v.frames(start, start + 4)] == list(range(start, min(start + 4, 40)))


def test_a_seek_that_lands_wrong_falls_back_to_decoding_from_the_start(tmp_path):
    path = tmp_path / "b.mkv"
    _marker_video(path, 24, "libx264", g="8", bf="3")
    v = open_input(path)
    v._pts = [p + 1 for p in v._pts]  # an index off by one tick: no decoded frame carries the target time
    assert [_index(f) for f in v.frames(10, 14)] == [10, 11, 12, 13]


def test_frame_folder_sorted_by_number_with_given_or_default_fps(tmp_path):
    names = ["f1.png", "f2.jpg", "f10.png", "f9.png"]  # name order is 1, 2, 9, 10 for a person
    for value, name in zip((10, 20, 40, 30), names):
        img = np.full((6, 10, 3), value, np.uint8)
        img[0, 0] = (255, 0, 0)  # red in RGB: catches a BGR/RGB swap
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not a frame")
    v = open_input(tmp_path, fps=12.5)
    assert (v.width, v.height, v.n_frames, v.fps) == (10, 6, 4, 12.5)
    frames = list(v.frames())
    assert [round(np.median(f) / 10) for f in frames] == [1, 2, 3, 4]  # the jpg is lossy
    assert all(tuple(f[0, 0]) == (255, 0, 0) for f in frames if f is not frames[1])  # jpg: near, not exact
    assert [round(np.median(f) / 10) for f in v.frames(1, 3)] == [2, 3]
    default = _out_cfg()["folder_fps"]
    assert open_input(tmp_path).fps == default


def test_bad_inputs_name_the_path_and_the_problem(tmp_path):
    cases: list[tuple[Path, str]] = []
    cases.append((tmp_path / "missing.mp4", "no such file"))
    noise = tmp_path / "noise.mp4"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    cases.append((noise, "FFmpeg cannot read"))
    audio = tmp_path / "audio.mka"
    with av.open(str(audio), "w") as c:
        s = c.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate = 8000
        c.mux(s.encode(frame))
        c.mux(s.encode(None))
    cases.append((audio, "no video stream"))
    whole = tmp_path / "whole.mkv"
    _marker_video(whole, 10, "libx264")
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.mkv"  # cut inside the first Matroska Cluster: a stream, no whole frame
    truncated.write_bytes(data[: data.index(bytes.fromhex("1f43b675")) + 16])
    cases.append((truncated, "no decodable video frames"))
    whole = tmp_path / "whole.mp4"
    _marker_video(whole, 10, "libx264")
    cut = tmp_path / "cut.mp4"  # the index (moov) is written last: half a file has none
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    cases.append((cut, "FFmpeg cannot read"))
    (tmp_path / "no_images").mkdir()
    (tmp_path / "no_images" / "a.txt").write_text("x")
    cases.append((tmp_path / "no_images", "holds no images"))
    broken = tmp_path / "broken"
    broken.mkdir()
    cv2.imwrite(str(broken / "0000.png"), np.zeros((4, 4, 3), np.uint8))
    (broken / "0001.png").write_bytes(b"\x89PNG not really")
    cases.append((broken, "0001.png: unreadable image"))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "0000.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(mixed / "0001.png"), np.zeros((4, 6, 3), np.uint8))
    cases.append((mixed, "frames differ in size"))
    for path, problem in cases:
        with pytest.raises(ValueError) as e:
            open_input(path)
        assert isinstance(e.value, VideoError)
        msg = str(e.value)
        assert str(path) in msg and problem in msg and "\n" not in msg, (path, msg)


# ---------------------------------------------------------------- writing

H, W, T = 37, 51, 6  # odd sides: the preview must pad, the alpha codecs must not care


def _frames(h: int = H, w: int = W) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frame, alpha, fgr): a matte ramp that moves 3 px a frame (values k/255, so 8-bit PNGs hold it exactly)."""
    rng = np.random.default_rng(1)
    out = []
    for t in range(T):
        ramp = np.clip(np.arange(w) - 10 - 3 * t, 0, 17) * 15 / 255.0
        alpha = np.tile(ramp, (h, 1)).astype(np.float32)
        fgr, frame = (np.kron(rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)), np.ones((4, 4, 1)))[:h, :w]
                      .astype(np.uint8) for _ in range(2))  # 4x4 blocks: colour that 4:2:0 can carry
        out.append((frame, alpha, fgr))
    return out


def _write(out_dir: Path, cfg: dict, with_fgr: bool = True, h: int = H, w: int = W, **kw) -> list:
    data = _frames(h, w)
    with MatteWriter(out_dir, 24, w, h, cfg, **kw) as writer:
        for frame, alpha, fgr in data:
            writer.write(frame, alpha, fgr if with_fgr else None)
    return data


# 50x36 is where FFmpeg 8's slice-threaded rgba -> yuva conversion corrupted rows 12 and 24.
@pytest.mark.parametrize("h,w", [(H, W), (36, 50)])
def test_prores_4444_round_trip_and_pngs(tmp_path, h, w):
    data = _write(tmp_path, _out_cfg("alpha_video=prores"), h=h, w=w)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fgr", "matte.mov", "pha", "preview.mp4"]
    for t, (_, alpha, fgr) in enumerate(data):  # PNGs: exact
        pha = cv2.imread(str(tmp_path / "pha" / f"{t:04d}.png"), cv2.IMREAD_UNCHANGED)
        assert pha.dtype == np.uint8 and pha.shape == (h, w)
        assert np.array_equal(pha, np.rint(alpha * 255).astype(np.uint8))
        assert np.array_equal(cv2.imread(str(tmp_path / "fgr" / f"{t:04d}.png"))[..., ::-1], fgr)
    with av.open(str(tmp_path / "matte.mov")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "prores" and s.codec_context.profile == "4444"
        assert s.average_rate == 24
    frames = _decode(tmp_path / "matte.mov")
    assert len(frames) == T
    for f, (_, alpha, fgr) in zip(frames, data):
        assert f.format.name.startswith("yuva444p")  # written 10-bit; FFmpeg's decoder hands out 12-bit
        bits = f.format.components[3].bits
        a = _plane(f, 3) / (2 ** bits - 1)
        assert np.abs(a - alpha).max() < 2 / 1023
        rgb = f.reformat(format="rgb48le", threads=1).to_ndarray() / 257.0
        assert np.abs(rgb - fgr).max() < 3 and np.abs(rgb - fgr).mean() < 1


def test_ffv1_round_trip_is_lossless(tmp_path):
    data = _write(tmp_path, _out_cfg("alpha_video=ffv1", "preview.enabled=false", "pha=false", "fgr=false"))
    assert [p.name for p in tmp_path.iterdir()] == ["matte.mkv"]
    frames = _decode(tmp_path / "matte.mkv")
    assert len(frames) == T
    for f, (_, alpha, fgr) in zip(frames, data):
        rgba = f.reformat(format="rgba64le", threads=1).to_ndarray()
        assert np.array_equal(rgba[..., :3], fgr.astype(np.uint16) * 257)
        assert np.abs(rgba[..., 3] / 65535 - alpha).max() <= 0.5 / 65535 + 1e-7


def test_preview_shows_the_colour_where_alpha_is_zero(tmp_path):
    data = _write(tmp_path, _out_cfg("alpha_video=none", "preview.colour=[0,255,0]"), with_fgr=False)
    assert not (tmp_path / "fgr").exists() and not list(tmp_path.glob("matte.*"))
    v = open_input(tmp_path / "preview.mp4")
    assert v.n_frames == T and (v.width, v.height) == (W + 1, H + 1)  # odd sides padded to even
    with av.open(str(tmp_path / "preview.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.video[0].format.name == "yuv420p"
    for got, (frame, alpha, _) in zip(v.frames(), data):
        got = got[:H, :W].astype(int)
        clear = alpha == 0
        clear[:, max(0, np.argmin(clear[0]) - 2):] = False  # two pixels off the ramp: chroma is subsampled
        assert np.abs(got[clear] - (0, 255, 0)).max() <= 12
        solid = alpha == 1  # the input frame (no fgr given) where the matte is solid
        assert np.abs(got[solid] - frame[solid]).mean() < 12 and np.abs(got[solid] - (0, 255, 0)).mean() > 60


def test_videos_appear_only_when_finished_and_failed_runs_keep_the_old_ones(tmp_path):
    cfg = _out_cfg("alpha_video=ffv1")
    frame, alpha, fgr = _frames()[0]
    w = MatteWriter(tmp_path, 24, W, H, cfg)
    w.write(frame, alpha, fgr)
    assert (tmp_path / "matte.partial.mkv").exists() and not (tmp_path / "matte.mkv").exists()
    assert not (tmp_path / "preview.mp4").exists()  # (x264 holds its first packets: no partial file yet)
    w.close()
    assert not list(tmp_path.glob("*.partial.*")) and open_input(tmp_path / "matte.mkv").n_frames == 1
    before = (tmp_path / "matte.mkv").read_bytes()
    with pytest.raises(RuntimeError, match="boom"):
        with MatteWriter(tmp_path, 24, W, H, cfg) as w:
            for _ in range(3):
                w.write(frame, alpha, fgr)
            raise RuntimeError("boom")
    assert (tmp_path / "matte.mkv").read_bytes() == before and not list(tmp_path.glob("*.partial.*"))


def test_frame_names_widen_with_the_count_and_stale_frames_go(tmp_path):
    cfg = _out_cfg("alpha_video=none", "preview.enabled=false")
    frame, alpha, fgr = _frames()[0]
    (tmp_path / "pha").mkdir()
    (tmp_path / "pha" / "0007.png").write_bytes(b"from an earlier, longer run")
    (tmp_path / "pha" / "0008.png.part").write_bytes(b"from a killed run")
    (tmp_path / "pha" / "notes.txt").write_text("not ours: stays")
    with MatteWriter(tmp_path, 24, W, H, cfg, n_frames=10001) as w:
        w.write(frame, alpha, fgr)
    assert sorted(p.name for p in (tmp_path / "pha").iterdir()) == ["00000.png", "notes.txt"]
    assert sorted(p.name for p in (tmp_path / "fgr").iterdir()) == ["00000.png"]


def test_writer_rejects_bad_frames_and_settings(tmp_path):
    frame, alpha, fgr = _frames()[0]
    with pytest.raises(ValueError, match="alpha_video"):
        MatteWriter(tmp_path, 24, W, H, _out_cfg("alpha_video=gif"))
    with pytest.raises(ValueError, match="colour"):
        MatteWriter(tmp_path, 24, W, H, _out_cfg("preview.colour=[0,300,0]"))
    # Codec settings are tried when the writer opens, before any frame is computed; nothing is left behind.
    with pytest.raises(ValueError, match="prores_ks rejects pix_fmt yuva444p10le with options .*bogus"):
        MatteWriter(tmp_path, 24, W, H, _out_cfg("prores.options.profile=bogus"))
    with pytest.raises(ValueError, match="libx264 rejects"):
        MatteWriter(tmp_path, 24, W, H, _out_cfg("preview.preset=warp9"))
    assert list(tmp_path.iterdir()) == []
    with MatteWriter(tmp_path, 24, W, H, _out_cfg()):
        pass  # no frames: no videos, no error
    assert list(tmp_path.iterdir()) == []
    with MatteWriter(tmp_path, 24, W, H, _out_cfg("alpha_video=none")) as w:
        with pytest.raises(ValueError, match="alpha must be"):
            w.write(frame, alpha[:, :-1], fgr)
        with pytest.raises(ValueError, match="alpha must be float"):
            w.write(frame, (alpha * 255).astype(np.uint8), fgr)
        with pytest.raises(ValueError, match="frame must be uint8"):
            w.write(frame.astype(np.float32), alpha, fgr)


def test_foreground_is_wanted_only_when_an_output_shows_it():
    assert wants_foreground(_out_cfg())
    assert not wants_foreground(_out_cfg("fgr=false", "alpha_video=none", "preview.enabled=false"))
    assert wants_foreground(_out_cfg("fgr=false", "alpha_video=ffv1", "preview.enabled=false"))
    assert wants_foreground(_out_cfg("fgr=false", "alpha_video=none"))
