"""Motion blur: one shutter for the colour and the alpha pass, so alpha is the blurred coverage the
colour shows; the camera's move and the strands' own motion are both blurred."""
import copy
import dataclasses

import numpy as np
import pytest

import clipstore
from assets import camera
from core.cli import compose, to_container
from pipelines import plan
from pipelines.plan import resolve_model

pytestmark = [pytest.mark.blender, pytest.mark.slow]

SIZE = ["cycles.width=64", "cycles.height=64", "cycles.samples=16", "cycles.alpha_samples=128",
        "cycles.denoise=false", "clip.fps=8", "clip.seconds=0.5", "hair.strand_scale=0.05"]


def only(group: str, names, keep: str) -> list[str]:
    return [f"{group}.{n}={1.0 if n == keep else 0.0}" for n in names]


def spec_with(cache_dir, move: str, motion: str, shutter: float, extra=(), motion_values=None, **move_values):
    cfg = to_container(compose("render", [*SIZE, *extra, f"body.cache_dir={cache_dir}", "n_clips=1",
                                          *only("camera.move.weights", camera.MOVES, move),
                                          *only("motion.weights", ("head_turn", "idle_sway", "nod", "walk_in_place",
                                                                   "wave"), motion)]))
    spec = plan.plan(cfg, resolve_model(cfg))[0]
    cam = copy.deepcopy(spec.camera)
    cam["shutter"] = shutter
    cam["move"].update(move_values)
    moving = copy.deepcopy(spec.motion)
    moving["params"].update(motion_values or {})
    # The colour pass's own alpha as an output of its own: what the colour shows, to hold the coverage pass against.
    own = clipstore.Output("colour_alpha", "the colour pass's coverage", "colour", "coverage", "uint16")
    return dataclasses.replace(spec, camera=cam, motion=moving, outputs={**spec.outputs, own.name: own.attrs})


@dataclasses.dataclass
class Render:
    alpha: np.ndarray     # the coverage pass's
    colour: np.ndarray    # the colour pass's own alpha
    camera: dict


def render(spec) -> Render:
    from assets import scene as scenes
    from render.scene import build_and_render
    out = build_and_render(spec, scenes.build(spec), threads=2)
    return Render(out.arrays["alpha"] / 65535, out.arrays["colour_alpha"] / 65535, out.camera)


def fractional(a):
    return (a > 0.05) & (a < 0.95)


SHAKE = {"rotate_deg": 8.0, "shift_m": 0.0, "freq_hz": 1.0}   # a strong shake: the frame sweeps sideways


@pytest.fixture(scope="module")
def shaken(cache_dir):
    bare = ["hair.strand_scale=0.005"]   # the body's edges, not the strands' own fractional pixels
    still = render(spec_with(cache_dir, "handheld", "idle_sway", 0.0, bare, **SHAKE))
    blurred = render(spec_with(cache_dir, "handheld", "idle_sway", 0.5, bare, **SHAKE))
    return still, blurred


def test_a_moving_camera_blurs_the_edges(shaken):
    still, blurred = shaken
    n_still, n_blur = fractional(still.alpha[1:]).sum(), fractional(blurred.alpha[1:]).sum()
    assert n_blur > 1.5 * n_still, (n_still, n_blur)
    assert blurred.camera["move"] == "handheld" and len(blurred.camera["frames"]["matrix_world"]) == 4


def test_colour_and_alpha_agree_on_the_blur(shaken):
    still, blurred = shaken
    band = fractional(blurred.alpha) & ~fractional(still.alpha)     # made fractional by the blur
    assert band.sum() > 30
    own = blurred.colour                  # the colour pass's own coverage, same shutter, fewer samples
    agree = np.abs(own - blurred.alpha)[band].mean()
    blur = np.abs(still.alpha - blurred.alpha)[band].mean()
    assert agree < 0.3 * blur, (agree, blur)


def test_strands_blur_along_their_velocity(cache_dir, tmp_path):
    """The strands carry no animation: Cycles blurs them along the velocity posing gives them, and
    that velocity is the strands' own motion between the neighbouring frames."""
    import bpy
    from assets import scene as scenes
    from render import scene
    spec = spec_with(cache_dir, "static", "head_turn", 0.5)
    built = scenes.build(spec)
    staged = scene.build(spec, built, threads=2)
    hair, obj = next((o, b) for o, b in staged.objects if o.name == "hair")
    bpy.context.scene.frame_set(3)
    scene.pose(staged, 2)
    velocity = np.array([v.vector[:] for v in obj.data.attributes["velocity"].data])
    np.testing.assert_allclose(velocity, (hair.points(3) - hair.points(1)) * spec.fps / 2, atol=1e-5)
    cover = {}
    sideways = np.broadcast_to(np.array([2.0, 0.0, 0.0], np.float32), velocity.shape)   # 2 m/s: 6 cm a shutter
    for name, v in (("still", np.zeros_like(velocity)), ("moving", sideways)):
        scene.attribute(obj, "velocity", v)
        scene.use_pass(staged, "coverage")
        cover[name] = scene.render_layers(tmp_path / f"{name}.exr")[0]["scalp_hair"]
    scene.reset()
    touched = {k: int((c > 0.003).sum()) for k, c in cover.items()}
    assert touched["moving"] > 1.3 * touched["still"], touched
    # Blur spreads the strands' coverage over more pixels; it does not make hair appear or vanish.
    total = {k: float(c.sum()) for k, c in cover.items()}
    assert abs(total["moving"] - total["still"]) < 0.2 * total["still"], total


def test_depth_of_field_defocuses_colour_and_alpha_alike(cache_dir):
    """Focused on the eyes with a wide aperture: the neck and shoulders behind go soft in both passes."""
    def spec(dof: bool):
        s = spec_with(cache_dir, "static", "idle_sway", 0.0, ["hair.strand_scale=0.005", "camera.framing.weights.full_body=0",
                                                              "camera.framing.weights.upper_body=0",
                                                              "cycles.samples=64"])   # defocus is noisy: more colour samples
        return dataclasses.replace(s, camera={**s.camera, "dof": dof, "f_stop": 0.25})
    sharp, soft = render(spec(False)), render(spec(True))
    assert soft.camera["dof"]["f_stop"] == 0.25 and soft.camera["framing"] == "close_up"
    n_sharp, n_soft = fractional(sharp.alpha).sum(), fractional(soft.alpha).sum()
    assert n_soft > 1.3 * n_sharp, (n_sharp, n_soft)
    band = fractional(soft.alpha) & ~fractional(sharp.alpha)
    agree = np.abs(soft.colour - soft.alpha)[band].mean()
    change = np.abs(sharp.alpha - soft.alpha)[band].mean()
    assert agree < 0.3 * change, (agree, change)
