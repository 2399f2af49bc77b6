"""`python -m pipelines.bench_layers` (`make bench-layers`): are the layers a trainer composites right,
and what does each output cost?

For each case (a planned clip; the light kind and the sun can be forced) one frame is rendered in
one scene as the store gets it (colour, coverage and plate passes, converted to the stored arrays)
and once more as a camera would see the person standing in the set (the "scene" pass: person and
set together, opaque film, the colour pass's settings). The layered composite,
`fgr * alpha + bgr * shadow * (1 - alpha)` in linear light from the stored 8-bit arrays, is
compared with that frame in sRGB [0, 1]; printed as `name: value` lines (means over the cases):
- layers_mae, layers_mae_edge, layers_mae_shadow: with the shadow layer, over the frame, on the
  person's edge (fractional alpha, or within `layers.edge_px` of the silhouette), and under the
  shadow (the set where the shadow layer is below `layers.shadow_below`),
- the same without the shadow layer (`*_no_shadow`): what the layer buys,
- the same over each material class (where hair, a lens, an opaque worn thing or the rest of the
  person gives the pixel most of its alpha, by the `parts` labels): `layers_mae_lens`, ...; nan
  where a case has none,
- noise_mae (and each region above): the scene frame against itself rendered with another seed,
  the floor any layered composite can reach at these samples.
Then, for the first case, each output's cost: seconds for the frame's posing, passes and conversion
with the required outputs only, and with each optional output added, over the colour pass's
seconds (each setting the fastest of `layers.cost_repeats`); and each kind of thing worn or held
and each effect's (`layers.objects`: its keys set on that case, the baseline with every one of
their `share` keys at 0: nothing worn, held or in the air), its clip's simulations counted per frame.
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
from core.colour import linear_to_srgb, srgb_to_linear
from pipelines import plan


def case_spec(c: dict, case: dict, model: dict, outputs: dict[str, bool]):
    cfg = copy.deepcopy(c)
    cfg["n_clips"] = 1
    cfg["outputs"] = outputs
    for key, value in (case or {}).items():   # e.g. lighting.weights: {environment: 1}
        node = cfg
        *path, last = key.split(".")
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise UserError(f"layers: {key} is not a key of the render config")
        node[last] = value
    return plan.plan(cfg, model)[0]


def render_frame(spec, frame: int, threads: int, extra: tuple[str, ...] = ()) -> tuple[dict, dict, dict]:
    """Frame `frame` of the spec: its outputs as stored, the layers of any `extra` passes (e.g. the
    in-scene frame) and the seconds of each pass and of the conversion."""
    import bpy
    from assets import scene as scenes
    from render import layers, scene
    with quiet.chatter():   # the body model's kernel compiler and Blender's device probes print to stdout
        staged = scene.build(spec, scenes.build(spec), threads)
    bpy.context.scene.frame_set(frame + 1)
    start = time.perf_counter()
    scene.pose(staged, frame)
    # a clip's simulations (cloth, particles, puffs) and the people beside the target, shared out over its frames
    simulate = (sum(o.stats.get("simulate_s", 0.0) for o in staged.scene.objects)
                + staged.scene.seconds.get("people", 0.0)) / spec.n_frames
    seconds, frames = {"simulate": simulate, "pose": time.perf_counter() - start}, {}
    clip = layers.Clip.start(spec, staged.cover)
    with tempfile.TemporaryDirectory(prefix="gvm-layers-") as tmp:
        for name in (*staged.passes, *extra):
            scene.use_pass(staged, name)
            frames[name], seconds[name] = scene.render_layers(Path(tmp) / f"{name}.exr")
        start = time.perf_counter()
        clip.add(0, {k: v for k, v in frames.items() if k in staged.passes})   # as a first frame: its own exposure
        seconds["convert"] = time.perf_counter() - start
    scene.reset()
    return {k: v[0] for k, v in clip.arrays.items()}, {k: frames[k] for k in extra}, {**seconds, "gain": clip.gain}


def errors(arrays: dict, seen: np.ndarray, gain: float, edge_px: int, shadow_below: float) -> dict:
    """Layered composite against the in-scene frame `seen` (linear RGB), in sRGB [0, 1]."""
    import cv2
    a = arrays["alpha"].astype(np.float64)[..., None] / 65535
    fgr, bgr = srgb_to_linear(arrays["fgr"] / 255.0), srgb_to_linear(arrays["bgr"] / 255.0)
    shadow = arrays["shadow"] / 255.0
    truth = linear_to_srgb(np.clip(seen[..., :3] * gain, 0, 1))
    solid = (a[..., 0] > 0.5).astype(np.uint8)
    ring = cv2.dilate(solid, np.ones((2 * edge_px + 1,) * 2, np.uint8)) != cv2.erode(solid, np.ones((2 * edge_px + 1,) * 2, np.uint8))
    regions = {"": np.ones(a.shape[:2], bool), "_edge": ring | ((a[..., 0] > 0) & (a[..., 0] < 1)),
               "_shadow": (shadow.mean(-1) < shadow_below) & (a[..., 0] == 0),
               **({f"_{k}": m for k, m in clipstore.class_masks(arrays["parts"], clipstore.OUTPUTS["parts"].parts).items()}
                  if "parts" in arrays else {})}
    out = {}
    for tag, layer in (("", shadow), ("_no_shadow", np.ones_like(shadow))):
        comp = linear_to_srgb(np.clip(fgr * a + bgr * layer * (1 - a), 0, 1))
        err = np.abs(comp - truth).mean(-1)
        out.update({f"layers_mae{r}{tag}": float(err[m].mean()) if m.any() else float("nan") for r, m in regions.items()})
    return out, regions


@app("bench_layers")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    plan.check(c)
    lay = c["layers"]
    if not lay["cases"]:
        raise UserError("layers.cases is empty")
    for key in ("costs", "output_costs"):
        if not isinstance(lay[key], bool):
            raise UserError(f"layers.{key} must be true or false, got {lay[key]!r}")
    if not isinstance(lay["cost_repeats"], int) or lay["cost_repeats"] < 1:
        raise UserError(f"layers.cost_repeats must be a positive integer, got {lay['cost_repeats']!r}")
    n = plan.n_frames(c)
    if not isinstance(lay["frame"], int) or not 0 <= lay["frame"] < n:
        raise UserError(f"layers.frame must be a frame of the {n}-frame clip, got {lay['frame']!r}")
    model = plan.resolve_model(c)
    threads = c["cycles"]["threads"] or 0
    every = {name: True for name, o in clipstore.OUTPUTS.items() if not o.required}
    rows = []
    for i, case in enumerate(lay["cases"]):
        spec = case_spec(c, case, model, every)
        start = time.perf_counter()
        arrays, extra, secs = render_frame(spec, lay["frame"], threads, ("scene",))
        again = dataclasses.replace(spec, cycles={**spec.cycles, "seed": spec.cycles["seed"] + 1})
        _, noise, _ = render_frame(again, lay["frame"], threads, ("scene",))
        row, regions = errors(arrays, extra["scene"]["Combined"], secs["gain"], lay["edge_px"], lay["shadow_below"])
        seen = [linear_to_srgb(np.clip(f["scene"]["Combined"][..., :3] * secs["gain"], 0, 1)) for f in (extra, noise)]
        diff = np.abs(seen[0] - seen[1]).mean(-1)
        row.update({f"noise_mae{r}": float(diff[m].mean()) if m.any() else float("nan") for r, m in regions.items()})
        rows.append(row)
        print(f"case {i} ({spec.lighting['kind']}): " + ", ".join(f"{k} {v:.4f}" for k, v in row.items())
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)
    for k in rows[0]:
        values = [r[k] for r in rows if not np.isnan(r[k])]
        print(f"{k}: {np.mean(values) if values else float('nan'):.4f}")
    if not lay["costs"]:
        return 0
    # What each output costs on the first case's frame: posing, the passes and the conversion, with
    # it and without; each setting measured `cost_repeats` times in turn, its fastest kept (timing
    # noise only adds), after one render that warms Cycles up.
    first = {**lay["cases"][0], **{k: 0.0 for keys in lay["objects"].values() for k in keys
                                   if k.endswith("share")}}   # nothing worn, held or in the air
    specs = {None: case_spec(c, first, model, {name: False for name in every})}
    costed = every if lay["output_costs"] else {}
    specs.update({name: case_spec(c, first, model, {k: k == name for k in every}) for name in costed})
    specs.update({name: case_spec(c, {**first, **keys}, model, {k: False for k in every})
                  for name, keys in lay["objects"].items()})
    from tqdm import tqdm
    runs = [None] + [name for _ in range(lay["cost_repeats"]) for name in specs]
    costs: dict = {}
    for i, name in enumerate(tqdm(runs, desc="cost", unit="render")):
        secs = render_frame(specs[name], lay["frame"], threads)[2]
        if i:   # the first render only warms Cycles up
            costs[name] = {k: min(v, costs.get(name, {}).get(k, v)) for k, v in secs.items() if k != "gain"}
    for name, secs in costs.items():
        print(f"cost with {name or 'fgr and alpha only, nothing worn, held or in the air'}: " + ", ".join(f"{k} {v:.2f} s" for k, v in secs.items()))
    total = lambda s: sum(s.values())   # noqa: E731
    colour = costs[None]["colour"]
    print(f"colour_pass_s: {colour:.2f}")
    print(f"required_over_colour: {total(costs[None]) / colour:.3f}")
    for name in (*costed, *lay["objects"]):
        print(f"{name}_extra_over_colour: {(total(costs[name]) - total(costs[None])) / colour:.3f}")
    return 0


if __name__ == "__main__":
    main()
