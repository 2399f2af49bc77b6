"""Secondary motion on the stand-in body: roots on the scalp, inertia and settling after a head
turn, wind, body collisions, determinism."""
import copy
import dataclasses

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from assets import body
from assets.hair.field import nearest_bone_point, vertex_normals
from pipelines import plan
from assets.hair.objects import hair_motion

pytestmark = [pytest.mark.slow]
FPS, T = 24.0, 48


def _turn(yaw_deg: float):
    """Still, then the head and neck turn by yaw_deg over a third of a second, then hold."""
    m = {k: np.zeros((T, w), np.float32) for k, w in body.MOTION_WIDTHS.items()}
    # body_pose holds joints 1..21, three numbers each: joint j's z rotation is at 3 * (j - 1) + 2.
    # The arms stay in the T-pose with the elbows (18, 19) bent by 70 degrees about z.
    m["body_pose"][:, 3 * 17 + 2] = np.radians(-70.0)
    m["body_pose"][:, 3 * 18 + 2] = np.radians(70.0)
    x = np.clip((np.arange(T) - 4) / 8.0, 0.0, 1.0)
    yaw = np.radians(yaw_deg) * x * x * (3 - 2 * x)
    m["body_pose"][:, 3 * 11 + 1] = 0.4 * yaw            # neck (12), about y
    m["body_pose"][:, 3 * 14 + 1] = 0.6 * yaw            # head (15)
    return m


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from core.cli import compose, to_container
    cache = str(tmp_path_factory.mktemp("cache"))
    cfg = to_container(compose("render", [f"body.cache_dir={cache}", "n_clips=1",
                                          "hair.style_weights={long_straight: 1.0}", "hair.strand_scale=0.04"]))
    model = body.resolve_model(None, cache_dir=cache, kind="standin")
    spec = plan.plan(cfg, model)[0]
    spec = dataclasses.replace(spec, fps=FPS, n_frames=T)
    return spec, model


def _with_wind(spec, speed):
    h = copy.deepcopy(spec.hair)
    h["dynamics"]["wind"]["speed"] = speed
    return dataclasses.replace(spec, hair=h)


def _tips(motion):
    return np.stack([motion.guide_offset[t][:, -1] for t in range(T)])   # (T, G, 3), head frame


def test_roots_ride_the_scalp_and_tips_lag_then_settle(setup):
    spec, model = setup
    posed = body.pose_body(model, spec.body["betas"], _turn(60.0))
    motion, groom = hair_motion(_with_wind(spec, 0.0), posed)
    for t in (0, 10, T - 1):
        m = posed.head_transform[t].astype(np.float64)
        want = groom.points[:, 0] @ m[:3, :3].T + m[:3, 3]
        np.testing.assert_allclose(motion.strands(t)[:, 0], want, atol=1e-5)
    # In the head's frame a rigid groom would not move; these tips swing during the turn
    # (inertia) and come to rest once the head holds still (where they drape on the shoulders
    # of the turned body, not necessarily where they started).
    tips = _tips(motion)
    d = np.linalg.norm(tips - tips[0], axis=-1).mean(axis=1)
    speed = np.linalg.norm(np.diff(tips, axis=0), axis=-1).mean(axis=1) * FPS     # m/s
    peak = d.max()
    assert peak > 0.01, f"tips moved {peak * 1000:.1f} mm in the head frame"
    assert 4 <= int(np.argmax(speed)) <= 20
    assert speed[-6:].max() < 0.15 * speed.max(), (speed[-6:].max(), speed.max())
    still, _ = hair_motion(_with_wind(spec, 0.0), body.pose_body(model, spec.body["betas"], _turn(0.0)))
    assert np.linalg.norm(_tips(still) - _tips(still)[0], axis=-1).mean(axis=1).max() < 0.1 * peak


def test_wind_moves_the_tips(setup):
    spec, model = setup
    posed = body.pose_body(model, spec.body["betas"], _turn(0.0))
    calm, _ = hair_motion(_with_wind(spec, 0.0), posed)
    windy, _ = hair_motion(_with_wind(spec, 4.0), posed)
    wobble = lambda m: _tips(m).std(axis=0).mean()  # noqa: E731
    assert wobble(windy) > 0.003 and wobble(windy) > 5 * wobble(calm), (wobble(windy), wobble(calm))


def test_no_strand_point_inside_the_body(setup):
    spec, model = setup
    posed = body.pose_body(model, spec.body["betas"], _turn(60.0))
    motion, _ = hair_motion(_with_wind(spec, 4.0), posed)
    keep = ~posed.head[posed.faces].any(axis=1)
    faces = posed.faces[keep]
    worst = []
    for t in (0, 12, T - 1):
        v = posed.vertices[t].astype(np.float64)
        mesh = trimesh.Trimesh(v, faces, process=False)
        pts = motion.strands(t)[:, 1:].reshape(-1, 3).astype(np.float64)
        near = cKDTree(v[np.unique(faces)]).query(pts, distance_upper_bound=0.03)[0] < np.inf
        closest, _, tri = trimesh.proximity.closest_point(mesh, pts[near])
        # Normals of the closest triangles turned away from their nearest bone (the stand-in is
        # not one wound surface).
        n = vertex_normals(v, posed.faces)[faces[tri]].mean(axis=1)
        bone = nearest_bone_point(closest, posed.joints[t], posed.parents)
        n *= np.sign(((closest - bone) * n).sum(axis=1))[:, None]
        depth = ((pts[near] - closest) * n).sum(axis=1)
        worst.append((depth < -0.003).mean())
    # Where the stand-in's parts overlap (neck into torso and head, arm beside chest) the closest
    # triangle can belong to a hidden part; the collider's nearest-vertex planes and this measure
    # then disagree for a few points (README: known limits).
    assert max(worst) < 0.01, f"{max(worst):.2%} of the points near the body lie over 3 mm inside it"


def test_same_spec_same_strands(setup):
    spec, model = setup
    posed = body.pose_body(model, spec.body["betas"], _turn(40.0))
    a, _ = hair_motion(_with_wind(spec, 3.0), posed)
    b, _ = hair_motion(_with_wind(spec, 3.0), posed)
    for t in (0, 20, T - 1):
        np.testing.assert_array_equal(a.strands(t), b.strands(t))
