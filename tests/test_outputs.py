"""The outputs beside colour and alpha, for real: each declared once (clipstore.outputs) and found
wherever a store's arrays go; depth, flow, parts and shadow measured against what they must be."""
from __future__ import annotations

import dataclasses
import tarfile

import cv2
import numpy as np
import pytest

import clipstore
from assets.lighting import Rig
from assets.scene import Scene
from assets.shapes import Mesh, SceneObject
from assets import camera, stage
from core.cli import compose, to_container
from pipelines import plan
from tests.conftest import SMALL

pytestmark = [pytest.mark.blender, pytest.mark.slow]


def spec_of(cache_dir, *overrides):
    cfg = to_container(compose("render", [*SMALL, f"body.cache_dir={cache_dir}", "n_clips=1", *overrides]))
    return plan.plan(cfg, plan.resolve_model(cfg))[0]


# --- one table, read everywhere ------------------------------------------------------------------

@pytest.mark.ray
def test_an_output_declared_in_a_test_reaches_store_validate_estimate_and_release(small_cfg, tmp_path, monkeypatch):
    """A new output is one entry: here a copy of the scalp hair's coverage, declared in this test,
    switched on from the command line's keys, with no other code edited."""
    from pipelines import cost, publish
    from pipelines.render import main as render_main
    dummy = clipstore.Output("dummy", "a second copy of the hair's coverage", "coverage", "coverage", "uint16",
                             parts=("scalp_hair",))
    monkeypatch.setitem(clipstore.OUTPUTS, "dummy", dummy)
    cfg = small_cfg("+outputs.dummy=true", "n_clips=1")
    assert render_main.task(cfg) == 0                    # Ray workers render it from the spec's declaration
    root = clipstore.open_store(cfg["store"]["path"])
    clip = clipstore.read_clip(root, "clip000000")
    assert "dummy" in clip.arrays and clip["dummy"].attrs["about"] == dummy.about
    np.testing.assert_array_equal(clip["dummy"][:], clip["alpha_hair"][:])
    assert "dummy" in clip.attrs["checksums"]            # validate recomputes it ...
    root = clipstore.open_store(cfg["store"]["path"], mode="r+")
    zarr_dummy = root["clips/clip000000/dummy"]
    zarr_dummy[0, 0, 0] = 12345                          # ... and so finds damage to it
    assert any(p.startswith("dummy: checksum mismatch") for p in clipstore.check_clip(root, "clip000000").problems)
    zarr_dummy[0, 0, 0] = clip["alpha_hair"][0, 0, 0]
    assert not clipstore.validate(cfg["store"]["path"]).invalid
    # The dry run's size estimate holds it: the same probe without it stores fewer bytes.
    spec = plan.plan(cfg, plan.resolve_model(cfg))[0]
    compression = clipstore.Compression.from_config(cfg["store"])
    with_it = cost.probe(spec, 2, compression).stored_bytes
    without = cost.probe(dataclasses.replace(spec, outputs={k: v for k, v in spec.outputs.items() if k != "dummy"}),
                         2, compression).stored_bytes
    assert with_it > without
    # A release carries it in both formats and names it on the card.
    out = tmp_path / "release"
    assert publish.main.task(to_container(compose("publish", [f"store={cfg['store']['path']}", f"output_dir={out}",
                                                              "progress=false", "export_videomatte=false"]))) == 0
    tar = next((out / "data").rglob("*.tar"))
    assert "clip000000.dummy.png" in tarfile.open(tar).getnames()
    assert "| `dummy` | 1 | a second copy of the hair's coverage |" in (out / "README.md").read_text()


# --- depth ---------------------------------------------------------------------------------------

def _plane_scene(spec, distance: float, tilt_deg: float) -> tuple[Scene, camera.Placement]:
    """A 4 m square facing a camera at the origin that looks along +Y, `distance` m away on its
    axis, turned `tilt_deg` about the vertical: the foreground, with no person."""
    T, w, h = spec.n_frames, spec.cycles["width"], spec.cycles["height"]
    eye = stage.look_at(np.zeros(3), np.array([0.0, 1.0, 0.0]))
    cam = camera.Placement(np.repeat(eye[None], T, 0), np.full(T, 35.0), None, 24.0, w, h,
                           {"dof": None, "matrix_world": eye.tolist()})
    s = 2.0
    corners = np.array([[-s, 0.0, -s], [s, 0.0, -s], [s, 0.0, s], [-s, 0.0, s]])   # in the XZ plane, facing -Y
    turn = stage.rotation("Z", np.radians(tilt_deg))
    placed = stage.translation([0.0, distance, 0.0]) @ turn
    plane = SceneObject("plane", "person", "static", (), Mesh(np.array([[0, 1, 2], [0, 2, 3]]), corners),
                        ({"kind": "flat", "name": "plane", "colour": [0.5, 0.5, 0.5], "roughness": 0.5, "part": "skin"},),
                        transform=placed[None])
    rig = Rig((), {"kind": "studio", "color": [1.0, 1.0, 1.0], "strength": 1.0})
    return Scene((plane,), cam, rig, 0), placed


@pytest.mark.parametrize("tilt_deg", [0.0, 50.0])
def test_depth_of_a_plane_at_a_known_distance(cache_dir, tilt_deg):
    from render.scene import build_and_render
    spec = spec_of(cache_dir, "clip.seconds=0.125", "camera.shutter=0", "camera.dof_share=0")   # one frame
    scene, placed = _plane_scene(spec, 3.0, tilt_deg)
    out = build_and_render(spec, scene, threads=2)
    depth, alpha = out.arrays["depth"][0].astype(np.float64), out.arrays["alpha"][0] / 65535
    # Where each pixel's centre ray meets the plane: its distance from the camera.
    h, w = alpha.shape
    f = 35.0 / 24.0 * h
    ys, xs = np.mgrid[:h, :w] + 0.5
    rays = np.stack([(xs - w / 2) / f, np.ones_like(xs), -(ys - h / 2) / f], -1)   # x right, +Y forward, z up
    normal, point = placed[:3, 1], placed[:3, 3]
    t = (point @ normal) / (rays @ normal)
    want = t * np.linalg.norm(rays, axis=-1)
    inner = cv2.erode((alpha >= 1.0).astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert inner.mean() > 0.3
    rel = np.abs(depth[inner] / want[inner] - 1)
    assert rel.max() < 0.01, rel.max()                   # right within 1% everywhere on it
    assert (depth[alpha == 0] == 0).all()                # empty where nothing covers the pixel


# --- flow ----------------------------------------------------------------------------------------

def warp_gain(arrays: dict) -> float:
    """Colour error (RMS) on pixels covered in frames t and t+1, unwarped over warped by `flow`: frame
    t+1 sampled where the flow says frame t's pixels went, against frame t."""
    fgr, alpha, flow = arrays["fgr"].astype(np.float32), arrays["alpha"] / 65535.0, arrays["flow"].astype(np.float32)
    h, w = alpha.shape[1:]
    ys, xs = np.mgrid[:h, :w].astype(np.float32)
    warped_err, plain_err = [], []
    for t in range(len(alpha) - 1):
        mx, my = xs + flow[t, ..., 0], ys + flow[t, ..., 1]
        there = cv2.remap(fgr[t + 1], mx, my, cv2.INTER_LINEAR)
        covered = (cv2.remap(alpha[t + 1].astype(np.float32), mx, my, cv2.INTER_LINEAR) > 0.99) & (alpha[t] > 0.99) \
            & (alpha[t + 1] > 0.99)
        warped_err.append((there - fgr[t])[covered])
        plain_err.append((fgr[t + 1] - fgr[t])[covered])
    rms = lambda e: np.sqrt((np.concatenate(e) ** 2).mean())   # noqa: E731
    return float(rms(plain_err) / rms(warped_err))


# A turning head under even light (its shading does not turn with it, which no flow could follow):
# an anny face, its brows and lashes the texture; a camera moving round a person in the studio light.
UNIFORM = ["lighting.weights.studio=1", "lighting.weights.sky=0", "lighting.weights.environment=0",
           "lighting.studio.key.power_w=0", "lighting.studio.rim.power_w=0", "lighting.studio.fill.ratio=0",
           "lighting.studio.world_strength=1", "lighting.backlit_share=0"]


@pytest.mark.parametrize("case", ["turning head", "camera move"])
def test_flow_carries_each_frame_onto_the_next(cache_dir, case):
    from render.clip import render_clip
    moves = {"turning head": ["motion.weights.head_turn=1", "camera.move.weights.static=1", "body.model=anny",
                              "cycles.width=160", "cycles.height=160", "hair.strand_scale=0.001", *UNIFORM],
             "camera move": ["motion.weights.idle_sway=1", "camera.move.weights.orbit=1", "camera.move.orbit.azimuth_deg=40",
                             "cycles.width=96", "cycles.height=96", "hair.strand_scale=0.02"]}
    weights = to_container(compose("render", []))["motion"]["weights"]
    others = [f"motion.weights.{m}=0" for m in weights]
    still = [f"camera.move.weights.{m}=0" for m in camera.MOVES]
    spec = spec_of(cache_dir, "cycles.samples=64", "camera.shutter=0.5", "camera.framing.weights.full_body=0",
                   "camera.framing.weights.upper_body=0", "camera.dof_share=0", *others, *still, *moves[case])
    out = render_clip(spec, threads=2)
    assert out.attrs["flow"] == {"invalid_frames": [spec.n_frames - 1]}
    assert not out.arrays["flow"][-1].any()              # no next frame: zeros, listed as invalid
    speed = np.hypot(*np.moveaxis(out.arrays["flow"][:-1].astype(np.float32), -1, 0))
    assert np.median(speed[out.arrays["alpha"][:-1] > 65000]) > 0.5, "the clip should move"
    assert warp_gain(out.arrays) >= 3.0


# --- parts ---------------------------------------------------------------------------------------

def test_parts_name_the_part_covering_most_of_each_pixel(cache_dir):
    from render.clip import render_clip
    out = render_clip(spec_of(cache_dir, "hair.strand_scale=0.2"), threads=2)
    legend = {v: int(k) for k, v in out.attrs["parts"]["legend"].items()}
    parts, alpha, hair = out.arrays["parts"], out.arrays["alpha"].astype(float), out.arrays["alpha_hair"].astype(float)
    assert legend["background"] == 0 and ((parts == 0) == (alpha == 0)).all()
    mostly_hair, little_hair = (alpha > 0) & (hair > 0.6 * alpha), (alpha > 0) & (hair < 0.4 * alpha)
    assert mostly_hair.sum() > 50 and little_hair.sum() > 50
    assert (parts[mostly_hair] == legend["scalp_hair"]).all()   # agrees with alpha_hair where hair dominates
    assert (parts[little_hair] != legend["scalp_hair"]).all()
    assert (parts[little_hair] == legend["skin"]).mean() > 0.9  # the stand-in is skin and hair


# --- shadow --------------------------------------------------------------------------------------

def test_the_shadow_layer_darkens_the_floor_beside_the_person_and_is_one_far_from_them(cache_dir):
    """Frame 0 rendered as the store gets it and as the person standing in the set (the bench's
    own functions): the shadow lies beside the feet, and with it the layered composite comes close
    to the in-scene frame under the shadow, where without it the set is too bright."""
    from pipelines import bench_layers
    side_sun = ["lighting.weights.studio=0", "lighting.weights.sky=0", "lighting.weights.environment=1",
                "lighting.environment.sun_azimuth_deg=90", "lighting.environment.sun_elevation_deg=35",
                "lighting.environment.sun_power=6", "lighting.environment.sun_angle_deg=1", "lighting.backlit_share=0",
                "camera.framing.weights.close_up=0", "camera.framing.weights.upper_body=0", "camera.elevation_deg=20",
                "camera.dof_share=0", "outputs.shadow=true", "outputs.bgr=true"]
    spec = spec_of(cache_dir, "cycles.width=96", "cycles.height=96", "cycles.samples=32", "clip.seconds=0.125",
                   "hair.strand_scale=0.02", *side_sun)
    arrays, extra, secs = bench_layers.render_frame(spec, 0, threads=2, extra=("scene",))
    shadow = arrays["shadow"].astype(float).mean(-1) / 255
    alpha = arrays["alpha"] / 65535
    rows = np.flatnonzero((alpha > 0.5).any(axis=1))
    feet, top = rows.max(), rows.min()
    floor = alpha == 0
    near = np.zeros_like(floor)
    near[max(feet - (feet - top) // 8, 0):feet + 4] = True          # the floor around the feet, beside the person
    assert (shadow[near & floor] < 0.6).sum() >= 20                 # the person's shadow lies there
    far = floor.copy()
    far[top + (feet - top) // 2:] = False                           # the floor far behind them, above their knees
    assert far.sum() > 500 and np.percentile(shadow[far], 1) > 0.95
    err, regions = bench_layers.errors(arrays, extra["scene"]["Combined"], secs["gain"], edge_px=2, shadow_below=0.9)
    assert regions["_shadow"].sum() >= 20
    assert err["layers_mae_shadow"] < err["layers_mae_shadow_no_shadow"] / 3
    assert err["layers_mae"] < 0.02 and err["layers_mae"] < err["layers_mae_no_shadow"]
