"""`python -m gvm_train.infer`: matte a video file or a folder of frames with a trained model.

    python -m gvm_train.infer input=clip.mp4 checkpoint=runs/a/final output_dir=outputs/clip

Writes to output_dir (see matting.video.MatteWriter): `pha/0000.png`... (VideoMatte240K layout),
`fgr/` (foreground colour estimated from the frame and the predicted alpha), the matte as an
RGBA video (ProRes 4444 or FFV1), a green-screen preview `preview.mp4`, and `run.json` (input,
checkpoint, settings, seconds), written last (core.done): a rerun with the same settings finds it and stops.
"""
from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from tqdm import tqdm

from core import done, stops
from core.conf import load as load_conf
from core.checks import integer, writable
from core.cli import UserError, app, to_container
from gvm_train.pipeline import GVMPipeline, window_starts
from matting import layout, person, video
from matting.foreground import estimate_foreground
from matting.segment import person_maps

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# What decides the output; a finished run with the same record is not redone.
RECORD_KEYS = ("input", "checkpoint", "mask", "chain", "window", "overlap", "decode_context", "num_steps",
               "short_side", "max_long_side", "seed", "max_frames", "writer")


def device_and_dtype(c: dict) -> tuple[torch.device, torch.dtype]:
    want = c["device"]
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    if want == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is available (use device=auto or cpu)")
    if want not in ("cpu", "cuda"):
        raise UserError(f"device: {want!r} is not auto, cpu or cuda")
    if c["dtype"] not in DTYPES:
        raise UserError(f"dtype: {c['dtype']!r} is not one of {', '.join(DTYPES)}")
    dtype = DTYPES[c["dtype"]]
    if want == "cpu" and dtype != torch.float32:
        raise UserError(f"dtype={c['dtype']} needs device=cuda; on the CPU use float32")
    return torch.device(want), dtype


def load_pipeline(checkpoint: str | None, device: torch.device, dtype: torch.dtype) -> GVMPipeline:
    if not checkpoint:
        raise UserError("checkpoint is not set: give checkpoint=<model folder> (e.g. <finetune output_dir>/final)")
    try:
        pipe = GVMPipeline.from_pretrained(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"checkpoint: {e}") from None
    return pipe.to(device, dtype)


def check(c: dict) -> None:
    """Every value checked before the model loads; the window against the overlap once the model
    says what a window is (the pipeline's own rule, window_starts)."""
    if not c["input"]:
        raise UserError("input is not set: give input=<video file or folder of frames> (input=sample: the bundled clip)")
    for key in ("window", "num_steps", "short_side", "max_long_side", "max_frames"):
        if c[key] is not None:
            integer(c[key], key, 1)
    for key in ("overlap", "decode_context", "seed", "threads"):
        integer(c[key], key, 0)
    writable(c["output_dir"], "output_dir")


def settings(c: dict) -> dict[str, Any]:
    """What decides a run's output: a finished run with the same settings (run.json) is not redone."""
    return {k: c[k] for k in RECORD_KEYS}


def matte(c: dict, pipe: GVMPipeline | None = None) -> dict[str, Any]:
    """Run inference as the config says; returns the run record."""
    check(c)
    out = Path(c["output_dir"])
    record = settings(c)
    if done.is_done(out, record):
        print(f"{out}: already matted with these settings (run.json); nothing to do")
        return done.read(out)
    if c["threads"]:
        torch.set_num_threads(c["threads"])
    device, dtype = device_and_dtype(c)
    try:
        out_cfg = video.check_output_config(c["writer"])
        source = video.open_input(c["input"], fps=out_cfg["folder_fps"])
    except ValueError as e:
        raise UserError(str(e)) from None
    pipe = pipe or load_pipeline(c["checkpoint"], device, dtype)
    try:
        window_starts(1, int(c["window"] or pipe.unet.config.num_frames), c["overlap"])
    except ValueError as e:
        raise UserError(f"{e} (window null: the model's {pipe.unet.config.num_frames})") from None
    n = source.n_frames if c["max_frames"] is None else min(source.n_frames, int(c["max_frames"]))
    guided = pipe.model.config.mask_guided
    if not guided and (c["mask"] != "segmenter" or c["chain"] != load_conf("chain/default")):
        raise UserError(f"mask / chain: the model at {c['checkpoint']} is mask-free (it mattes from the frames alone): "
                        f"leave mask and chain.* at their defaults, or give a mask-guided model")
    files = None
    if guided and c["mask"] != "segmenter":
        try:
            files = person.guide_files(c["mask"], Path(source.path), n, source.width, source.height)
        except video.VideoError as e:
            raise UserError(str(e)) from None
    print(f"matting {n} frames of {source.path} ({source.width}x{source.height}"
          + (f", short side {c['short_side']}" if c["short_side"] else ", native size")
          + (f", guided by {'the segmenter' if files is None else c['mask']}" if guided else "") + f") on {device}",
          flush=True)
    start = time.perf_counter()
    # One decode, several readers: the pipeline reads at most a window ahead of the alphas it has
    # given out, so tee holds about a window of frames, whatever the video's length.
    to_model, to_writer, to_mask = itertools.tee(source.frames(0, n), 3)
    masks = None
    if guided:
        masks = person_maps(to_mask, c["chain"]) if files is None else map(person.read_guide, files)
    alphas = pipe.stream(to_model, n, masks=masks, window=c["window"],
                         overlap=c["overlap"], num_inference_steps=c["num_steps"], short_side=c["short_side"],
                         max_long_side=c["max_long_side"], decode_context=c["decode_context"], seed=c["seed"])
    out.mkdir(parents=True, exist_ok=True)
    done.clear(out)
    want_fgr = video.wants_foreground(out_cfg)
    pipe.set_progress_bar_config(disable=True)   # this loop's bar counts frames, the pipeline's counted windows
    written = 0
    try:
        with (video.MatteWriter(out, source.rate, source.width, source.height, out_cfg, n_frames=n) as writer,
              tqdm(total=n, desc="infer", unit="frame") as bar):
            for frame, alpha in zip(to_writer, alphas):
                writer.write(frame, alpha, estimate_foreground(frame, alpha, out_cfg["foreground"]) if want_fgr else None)
                bar.update()
                written += 1
                stops.check()
    except BaseException as e:   # the PNGs written are whole frames; the videos and run.json wait for a full run
        if not stops.stopping(e):
            raise
        print(f"stopped after {written} of {n} frames -> {out} (no run.json: the same command mattes it again)",
              file=sys.stderr, flush=True)
        raise
    seconds = time.perf_counter() - start
    record.update(frames=n, fps=source.fps, width=source.width, height=source.height, seconds=round(seconds, 3),
                  device=str(device), dtype=c["dtype"])
    done.mark(out, record)
    return record


def _line(r: dict, out: str) -> str:
    return (f"{r['frames']} frames of {r['width']}x{r['height']} matted in {r['seconds']:.1f} s "
            f"({r['frames'] / max(r['seconds'], 1e-9):.2f} frames/s) -> {out}")


@app("infer")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    clips = layout.set_clips(c["input"])
    if not clips:
        print(_line(matte(c), c["output_dir"]))
        return 0
    # A benchmark set (<set>/<clip>/com/): each clip into <output_dir>/<clip>/, the layout evaluate reads.
    check(c)
    pipe = load_pipeline(c["checkpoint"], *device_and_dtype(c))
    for i, clip in enumerate(clips, 1):
        print(f"clip {i}/{len(clips)}: {clip.name}", flush=True)
        dest = str(Path(c["output_dir"]) / clip.name)
        mask = c["mask"]
        if mask != "segmenter":
            mask = layout.clip_masks(mask, clip.name)
        print(_line(matte({**c, "input": str(clip / layout.COM), "output_dir": dest, "mask": mask}, pipe), dest))
    print(f"{len(clips)} clips of {c['input']} matted -> {c['output_dir']}; score them with\n"
          f"  python -m matting.evaluate pred={c['output_dir']} gt={c['input']}")
    return 0


if __name__ == "__main__":
    main()
