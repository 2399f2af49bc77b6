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
