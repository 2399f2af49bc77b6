"""Camera moves as per-frame offsets: each reaches its drawn amount, starts where the framing is, and
the sampler refuses moves and shutters it does not know."""
import numpy as np
import pytest

from assets import camera
from core.conf import load

CFG = load("camera/portrait")


def test_moves_start_at_the_framing_and_reach_their_amount():
    T, fps = 25, 24.0
    orbit = camera.path({"kind": "orbit", "azimuth_deg": 20.0}, T, fps)
    assert orbit.azimuth_deg[0] == 0 and orbit.azimuth_deg[-1] == pytest.approx(20.0)
    assert (np.diff(orbit.azimuth_deg) >= 0).all() and np.diff(orbit.azimuth_deg)[0] < np.diff(orbit.azimuth_deg)[T // 2]
    dolly = camera.path({"kind": "dolly", "distance": -0.2}, T, fps)
    assert dolly.distance[0] == 1 and dolly.distance[-1] == pytest.approx(0.8)
    zoom = camera.path({"kind": "zoom", "focal_ratio": 1.3}, T, fps)
    assert zoom.focal[0] == 1 and zoom.focal[-1] == pytest.approx(1.3)
    still = camera.path({"kind": "static"}, T, fps)
    assert not still.rotate_deg.any() and not still.shift_m.any() and (still.focal == 1).all()


def test_handheld_shakes_within_its_amplitude_and_repeats():
    move = {"kind": "handheld", "rotate_deg": 1.0, "shift_m": 0.01, "freq_hz": 1.5, "seed": 7}
    a, b = camera.path(move, 72, 24.0), camera.path(move, 72, 24.0)
    np.testing.assert_array_equal(a.rotate_deg, b.rotate_deg)
    assert 0.3 < np.abs(a.rotate_deg).max() <= 1.6 and np.abs(a.shift_m).max() <= 0.016
    lag1 = [np.corrcoef(a.rotate_deg[1:, k], a.rotate_deg[:-1, k])[0, 1] for k in range(3)]
    assert min(lag1) > 0.8, lag1          # a smooth shake, not per-frame jitter


def test_sampler_draws_every_move_and_refuses_unknown_ones():
    kinds = {camera.sample(CFG, s)["move"]["kind"] for s in range(200)}
    assert kinds == set(camera.MOVES)
    with pytest.raises(ValueError, match="camera.move.weights name unknown moves"):
        camera.sample({**CFG, "move": {**CFG["move"], "weights": {"crane": 1.0}}}, 0)
    with pytest.raises(ValueError, match="camera.shutter must lie in"):
        camera.sample({**CFG, "shutter": 1.5}, 0)


def test_exposure_meets_the_target_unless_the_highlights_would_blow_out():
    from core.colour import luminance
    from render.frames import exposure_gain
    rng = np.random.default_rng(0)
    person = np.full((40, 40, 4), 1.0)
    person[..., :3] = 0.02 + 0.01 * rng.random((40, 40, 3))          # dark hair and clothes ...
    ok = exposure_gain(person, 0.18, 64.0, CFG["exposure_highlight"], CFG["exposure_highlight_percentile"])
    assert np.median(luminance((person[..., :3] * ok).reshape(-1, 3))) == pytest.approx(0.18, rel=1e-6)
    person[:12, :, :3] = 0.3                                          # ... beside sunlit skin
    gain = exposure_gain(person, 0.18, 64.0, CFG["exposure_highlight"], CFG["exposure_highlight_percentile"])
    lit = person[..., :3].reshape(-1, 3) * gain
    assert gain < ok and np.percentile(lit.max(axis=1), CFG["exposure_highlight_percentile"]) == pytest.approx(
        CFG["exposure_highlight"], rel=1e-6)
    assert (lit.max(axis=1) > 1.0).mean() == 0                        # nothing clips to white
    half = {**CFG, "exposure_highlight_percentile": 0.0}
    with pytest.raises(ValueError, match="exposure_highlight_percentile"):
        camera.sample(half, 0)


def _figure(T: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """A standing figure in the world frame (Z up, facing -Y): a 1.7 m column of points and the
    SMPL-X joints placement reads (head, spine, shoulders, eyes)."""
    from assets import stage
    z = np.linspace(0.0, 1.7, 200)
    vertices = np.stack([np.stack([0.15 * np.cos(7 * z), 0.1 * np.sin(7 * z), z], 1)] * T)
    joints = np.zeros((T, 55, 3))
    joints[:, stage.HEAD] = [0.0, 0.0, 1.6]
    joints[:, stage.SPINE3] = [0.0, 0.0, 1.3]
    joints[:, stage.L_SHOULDER], joints[:, stage.R_SHOULDER] = [0.2, 0.0, 1.45], [-0.2, 0.0, 1.45]
    joints[:, stage.EYES] = [0.0, -0.08, 1.62]
    return vertices, joints


def test_the_camera_frames_the_head_and_its_move_keeps_the_framing():
    """Placement without Blender: aimed at the head from the front, the target at the image's centre,
    the frame's height as the framing asks, the orbit round the target at a constant distance."""
    from assets import stage
    vertices, joints = _figure()
    cam = {**camera.sample(CFG, 0), "azimuth_deg": 0.0, "elevation_deg": 0.0, "roll_deg": 0.0, "center_offset_m": [0.0] * 3,
           "move": {"kind": "orbit", "azimuth_deg": 30.0}, "dof": True}
    p = camera.place(vertices, joints, 0.05, cam, 200, 100, 24.0)
    target = np.asarray(p.record["target"])
    m = p.matrix_world[0]
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-9)        # a rotation
    assert m[1, 3] < -1.0 and m[:3, 2] @ (m[:3, 3] - target) > 0                      # in front, looking at it
    np.testing.assert_allclose(p.project(target[None], 0)[0], [100.0, 50.0], atol=1e-6)   # at the centre
    # The framed height: from the target, half the frame height up is the image's top edge.
    top = target + [0.0, 0.0, cam["frame_height_m"] / 2]
    assert p.project(top[None], 0)[0, 1] == pytest.approx(0.0, abs=1e-6)
    distances = np.linalg.norm(p.matrix_world[:, :3, 3] - target, axis=1)
    np.testing.assert_allclose(distances, distances[0], rtol=1e-9)                    # an orbit, round the aim
    assert np.degrees(np.arccos(np.clip((p.matrix_world[0, :3, 2] @ p.matrix_world[-1, :3, 2]), -1, 1))) \
        == pytest.approx(30.0, abs=1e-6)
    for t in (0, len(vertices) - 1):                                                  # focused on the eyes
        assert p.focus_m[t] == pytest.approx(np.linalg.norm(joints[t, stage.EYES].mean(0) - p.matrix_world[t, :3, 3]))
