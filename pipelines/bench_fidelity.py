"""`python -m pipelines.bench_fidelity` (`make bench-fidelity`): how close the stored alpha is to
the converged coverage, and what it costs.

For each case (a planned clip of one style family, wind forced on or off, and any other render keys
the case sets under `with`: glasses on, a sheer scarf) one frame is rendered
three times in one scene: the colour pass alone (the plain single-pass render at the default
colour samples), the alpha pass at the default settings, and a reference alpha pass at
`fidelity.reference_samples` fixed samples with another seed. Printed as `name: value` lines:
- alpha_mae_fractional, alpha_p99_fractional: |alpha - reference| over the pixels whose
  reference alpha is fractional (the strands and edges a matte has to get right),
- alpha_mae_hair: the same over the hair region (reference hair coverage > fidelity.hair_min), and
  alpha_mae_<class> over each other material class of clipstore.CLASSES the frame shows (lens,
  sheer, opaque_objects, volume: the reference coverage of its groups above fidelity.hair_min), averaged
  over the cases that show it,
- fgr_mae_straight: the colour pass un-premultiplied by its own alpha (as the store does, before
  it extends colour into pixels below cycles.fgr_min_alpha) against the same colour
  un-premultiplied by the reference alpha, where the reference alpha exceeds
  fidelity.fgr_min_alpha, in sRGB [0, 1],
- cost_ratio: (colour + default alpha seconds) / colour seconds.
"""
from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

import clipstore
from core import quiet
from core.cli import UserError, app, to_container
from core.colour import linear_to_srgb
from pipelines import plan


def case_spec(c: dict, case: dict, model: dict):
    cfg = copy.deepcopy(c)
    if case["style"] not in cfg["hair"]["styles"]:
        raise UserError(f"fidelity case style {case['style']!r} is not a hair style "
                        f"({', '.join(sorted(cfg['hair']['styles']))})")
    cfg["hair"]["style_weights"] = {case["style"]: 1.0}
    cfg["n_clips"] = 1
    for dotted, value in (case.get("with") or {}).items():   # any render key, as on the command line
        *path, last = dotted.split(".")
        node = cfg
        for k in path:
            if not isinstance(node.get(k), dict):
                raise UserError(f"fidelity case key {dotted!r} is not a render config key")
            node = node[k]
        if last not in node:
            raise UserError(f"fidelity case key {dotted!r} is not a render config key")
        node[last] = value
    spec = plan.plan(cfg, model)[0]
    if case.get("wind") is not None:
        h = copy.deepcopy(spec.hair)
        h["dynamics"]["wind"]["speed"] = float(case["wind"])
        spec = dataclasses.replace(spec, hair=h)
    return spec


def measure(spec, frame: int, f: dict, threads: int) -> dict:
    import bpy
    from assets import scene as scenes
    from render import layers, scene
    with quiet.chatter():   # the body model's kernel compiler and Blender's device probes print to stdout
        staged = scene.build(spec, scenes.build(spec), threads)
    bpy.context.scene.frame_set(frame + 1)
    scene.pose(staged, frame)
    c = spec.cycles
    reference = dataclasses.replace(staged, spec=dataclasses.replace(spec, cycles={
        **c, "alpha_samples": f["reference_samples"], "alpha_adaptive_threshold": 0.0}))
    with tempfile.TemporaryDirectory(prefix="gvm-fidelity-") as tmp:
        scene.use_pass(staged, "colour")
        colour, colour_s = scene.render_layers(Path(tmp) / "c.exr")
        scene.use_pass(staged, "coverage")
        cov, alpha_s = scene.render_layers(Path(tmp) / "a.exr")
        scene.use_pass(reference, "coverage")
        bpy.context.scene.cycles.seed = c["seed"] + 1
        ref, ref_s = scene.render_layers(Path(tmp) / "r.exr")
    scene.reset()
    r = staged.cover.residual
    if r:   # the volumes' group: alpha beyond the surfaces' (render/layers.py)
        ref[r] = layers.residual(ref, staged.cover.groups, r)
    rgba = colour["Combined"]
    a, r = cov["Combined"][..., 3], ref["Combined"][..., 3]
    lo, hi = f["fractional"]
    frac = (r > lo) & (r < hi)
    hair = np.minimum(ref["scalp_hair"], r) > f["hair_min"]
    err = np.abs(a - r)
    own = np.clip(rgba[..., 3], 1e-8, None)
    solid = r > f["fgr_min_alpha"]
    store_fgr = linear_to_srgb(np.clip(rgba[..., :3] / own[..., None], 0, 1))
    ref_fgr = linear_to_srgb(np.clip(rgba[..., :3] / np.maximum(r, 1e-8)[..., None], 0, 1))
    row = {"alpha_mae_fractional": float(err[frac].mean()), "alpha_p99_fractional": float(np.percentile(err[frac], 99)),
           "alpha_mae_hair": float(err[hair].mean()), "fgr_mae_straight": float(np.abs(store_fgr - ref_fgr)[solid].mean()),
           "fractional_share": float(frac.mean()), "colour_s": colour_s, "alpha_s": alpha_s, "reference_s": ref_s}
    for name, groups in clipstore.CLASSES.items():
        shown = [ref[g] for g in groups if g in ref]
        region = np.minimum(sum(shown), r) > f["hair_min"] if shown else None
        if name != "hair" and region is not None and region.any():
            row[f"alpha_mae_{name}"] = float(err[region].mean())
    return row


@app("bench_fidelity")
def main(cfg: DictConfig) -> int:
    from pipelines.plan import resolve_model
    c = to_container(cfg)
    plan.check(c)
    f = c["fidelity"]
    if not isinstance(f["reference_samples"], int) or f["reference_samples"] < 1024:
        raise UserError(f"fidelity.reference_samples must be an integer of at least 1024, got {f['reference_samples']!r}")
    if not f["cases"]:
        raise UserError("fidelity.cases is empty")
    n = plan.n_frames(c)
    if not isinstance(f["frame"], int) or not 0 <= f["frame"] < n:
        raise UserError(f"fidelity.frame must be a frame of the {n}-frame clip, got {f['frame']!r}")
    model = resolve_model(c)
    cy = c["cycles"]
    print(f"bench: {len(f['cases'])} cases, frame {f['frame']}, {cy['width']}x{cy['height']}, colour {cy['samples']} spp, "
          f"alpha up to {cy['alpha_samples']} spp (adaptive {cy['alpha_adaptive_threshold']}), reference "
          f"{f['reference_samples']} spp", flush=True)
    specs = [case_spec(c, case, model) for case in f["cases"]]   # every case planned (and so checked) first
    rows = []
    for case, spec in zip(f["cases"], specs):
        start = time.perf_counter()
        row = measure(spec, f["frame"], f, cy["threads"] or 0)
        rows.append(row)
        print(f"case {case['style']} wind={case.get('wind')}{' with ' + str(case['with']) if case.get('with') else ''}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items())
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    mean = {k: float(np.mean([r[k] for r in rows if k in r])) for k in dict.fromkeys(k for r in rows for k in r)}
    print(f"cost_ratio: {(mean['colour_s'] + mean['alpha_s']) / mean['colour_s']:.3f}")
    for k in ("alpha_mae_fractional", "alpha_p99_fractional", "alpha_mae_hair", "fgr_mae_straight",
              *(f"alpha_mae_{name}" for name in clipstore.CLASSES if f"alpha_mae_{name}" in mean)):
        print(f"{k}: {mean[k]:.4f}")
    for k in ("colour_s", "alpha_s", "reference_s", "fractional_share"):
        print(f"{k}: {mean[k]:.3f}")
    return 0


if __name__ == "__main__":
    main()
