"""`python -m pipelines.gpu_check` (`make gpu-check`): what this machine's GPU does for the project.

One run, a few minutes on one GPU, printed as `name: value` lines:
- cycles_<kind>: the devices Cycles finds for OptiX and for CUDA; torch_cuda: torch's CUDA devices.
- render_<preset>_<kind>_<pass>_s: seconds of one frame's colour and coverage (alpha) pass, each
  preset's planned clip built once and rendered on every backend found (check.kinds), and on the
  CPU for `check.cpu_preset`.
- alpha_mae_<kind>_vs_cpu: that frame's alpha on the GPU against the CPU's (Cycles' GPU curve
  intersection is not the CPU's; the samples differ too, so this is at least the Monte Carlo noise).
- cost_ratio_<kind>: (colour + alpha seconds) / colour seconds at the default preset, bench-fidelity's
  cost ratio, on the GPU.
- svd_train_step_s, svd_train_peak_gib: one training step of an SVD-sized model (random weights,
  conf/finetune.yaml's bench.svd) in bf16 autocast, and the most GPU memory it held.
- svd_infer_fps_<n>step: frames per second of the pipeline around that model at check.infer's size
  (1280x720) with n flow-matching steps, bf16 weights.

A machine with no GPU (Cycles finds no OptiX or CUDA device and torch no CUDA device) gets one
line and exit status 2. The measurements are functions of a device, so the tests run them on the
CPU at toy sizes.
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from core import quiet
from core.cli import UserError, app, compose, overrides_between, to_container
from pipelines import plan


def inventory(kinds: Sequence[str]) -> dict[str, list[str]]:
    """Cycles' devices of each GPU kind, and torch's CUDA devices (`torch`)."""
    import torch
    from render import scene
    with quiet.chatter():   # Blender's device probes print to stdout
        found = {kind: scene.gpu_devices(kind) for kind in kinds}
    found["torch"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return found


def render_frame(spec, frame: int, kinds: Sequence[str], threads: int = 0) -> dict[str, dict[str, Any]]:
    """One frame of a planned clip, its scene built once, rendered on each kind (OPTIX, CUDA, CPU):
    per kind the colour and coverage passes' seconds and the frame's alpha."""
    import bpy
    from assets import scene as scenes
    from render import scene
    with quiet.chatter():
        staged = scene.build(spec, scenes.build(spec), threads)
    bpy.context.scene.frame_set(frame + 1)
    scene.pose(staged, frame)
    out = {}
    with tempfile.TemporaryDirectory(prefix="gvm-gpu-check-") as tmp:
        for kind in kinds:
            scene.select_device(kind.lower())
            row: dict[str, Any] = {}
            for name in ("colour", "coverage"):
                scene.use_pass(staged, name)
                layers, row[f"{name}_s"] = scene.render_layers(Path(tmp) / f"{kind}-{name}.exr")
                if name == "coverage":
                    row["alpha"] = layers["Combined"][..., 3]
            out[kind] = row
    scene.reset()
    return out


def infer_fps(pipe, width: int, height: int, frames: int, steps: int, seed: int) -> float:
    """Frames per second of the pipeline on `frames` random frames of width x height at their own
    size, one window, `steps` flow-matching steps (after one untimed warm-up call)."""
    import torch
    rng = np.random.default_rng(seed)
    video = list(rng.integers(0, 256, (frames, height, width, 3), np.uint8))
    masks = [rng.random((height, width), np.float32) for _ in video] if pipe.model.config.mask_guided else None
    kwargs = dict(masks=masks, window=frames, overlap=0, num_inference_steps=steps)
    pipe.set_progress_bar_config(disable=True)
    pipe(video, **kwargs)
    if pipe.model.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    pipe(video, **kwargs)
    if pipe.model.device.type == "cuda":
        torch.cuda.synchronize()
    return frames / (time.perf_counter() - start)


def preset_spec(c: dict, preset: str):
    """The first planned clip of this config with another preset (the command line's other keys kept)."""
    mine = overrides_between(to_container(compose("render", [])), c)
    cfg = to_container(compose("render", [f"preset={preset}", *mine]))
    cfg["n_clips"] = 1
    return plan.plan(cfg, plan.resolve_model(cfg))[0]


@app("gpu_check")
def main(cfg: DictConfig) -> int:
    import torch
    c = to_container(cfg)
    k = c["check"]
    found = inventory(k["kinds"])
    gpus = [kind for kind in k["kinds"] if found[kind]]
    if not gpus and not found["torch"]:
        raise UserError(f"no GPU here: Cycles finds no {' or '.join(k['kinds'])} device and torch {torch.__version__} "
                        f"no CUDA device{' (a CPU build: README, GPUs)' if torch.version.cuda is None else ''}")
    for kind in k["kinds"]:
        print(f"cycles_{kind.lower()}: {', '.join(found[kind]) or 'none'}")
    print(f"torch_cuda: {', '.join(found['torch']) or 'none'} (torch {torch.__version__})", flush=True)
    if gpus:
        for preset in k["presets"]:
            spec = preset_spec(c, preset)
            n = spec.n_frames
            frame = min(k["frame"], n - 1)
            kinds = gpus + (["CPU"] if preset == k["cpu_preset"] else [])
            start = time.perf_counter()
            rows = render_frame(spec, frame, kinds, c["cycles"]["threads"] or 0)
            for kind, row in rows.items():
                for name in ("colour", "coverage"):
                    print(f"render_{preset}_{kind.lower()}_{name}_s: {row[f'{name}_s']:.2f}")
                if kind in gpus and "CPU" in rows:
                    print(f"alpha_mae_{kind.lower()}_vs_cpu: {np.abs(row['alpha'] - rows['CPU']['alpha']).mean():.4f}")
                if kind in gpus and preset == "default":
                    print(f"cost_ratio_{kind.lower()}: {(row['colour_s'] + row['coverage_s']) / row['colour_s']:.3f}")
            print(f"# {preset}: {spec.cycles['width']}x{spec.cycles['height']}, frame {frame}, "
                  f"{time.perf_counter() - start:.0f} s with the scene build", flush=True)
    else:
        print("render: skipped (Cycles finds no GPU)")
    if not found["torch"]:
        print("svd: skipped (torch finds no CUDA device)")
        return 0
    from gvm_train.bench import svd_sized, train_step
    from gvm_train.pipeline import GVMPipeline
    f = to_container(compose("finetune", []))
    svd, s = f["bench"]["svd"], k["infer"]
    model = svd_sized(f["model"], svd["vae"]).cuda()
    seconds, peak = train_step(model, svd["size"], svd["frames"], f["bench"]["steps"], f["model"]["loss"], c["seed"],
                               torch.bfloat16)
    print(f"svd_train_step_s: {seconds:.3f} ({svd['frames']} frames, {svd['size']}x{svd['size']}, bf16 autocast)")
    print(f"svd_train_peak_gib: {peak:.1f}", flush=True)
    model.zero_grad(set_to_none=True)
    pipe = GVMPipeline.from_model(model.to(dtype=torch.bfloat16))
    for steps in s["steps"]:
        fps = infer_fps(pipe, s["width"], s["height"], s["frames"], steps, c["seed"])
        print(f"svd_infer_fps_{steps}step: {fps:.2f} ({s['frames']} frames, {s['width']}x{s['height']}, bf16)", flush=True)
    return 0


if __name__ == "__main__":
    main()
