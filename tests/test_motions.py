import numpy as np
import pytest
from scipy.spatial.transform import Rotation, Slerp

from assets import motions
from core.conf import load as load_conf

NAMES = sorted(motions.PROCEDURAL)
J = {name: i for i, name in enumerate(motions.BODY_JOINTS)}   # index into body_pose / 3
ARM_CHAIN = ("spine1", "spine2", "spine3", "{}_collar", "{}_shoulder")


def params(name, seed=0, **over):
    p = motions.sample_params(name, np.random.default_rng(seed), load_conf("motion/procedural")["ranges"])
    p.update(over)
    return p


def make(name, n=72, fps=24.0, seed=0, **over):
    return motions.motion_frames({"kind": "procedural", "name": name,
                                  "params": params(name, seed, **over)}, n, fps)


def joint_rot(m, joint):
    return Rotation.from_rotvec(m["body_pose"][:, 3 * J[joint]:3 * J[joint] + 3])


def chain(m, side, upto):
    """World rotation of a joint of the arm chain (pelvis -> ... -> upto) per frame."""
    r = Rotation.from_rotvec(m["global_orient"])
    for j in ARM_CHAIN + ("{}_elbow",):
        j = j.format(side)
        r = r * joint_rot(m, j)
        if j == upto.format(side):
            return r
    raise AssertionError(upto)


def all_rotvecs(m):
    T = len(m["transl"])
    return np.concatenate([m[k].reshape(T, -1, 3) for k in
                           ("global_orient", "body_pose", "jaw_pose", "leye_pose", "reye_pose",
                            "left_hand_pose", "right_hand_pose")], axis=1)


def max_step_deg(m):
    """Largest frame-to-frame rotation of any joint, in degrees."""
    rv = all_rotvecs(m)
    T, K, _ = rv.shape
    r = Rotation.from_rotvec(rv.reshape(-1, 3)).as_quat().reshape(T, K, 4)
    dots = np.abs((r[1:] * r[:-1]).sum(-1)).clip(0, 1)
    return np.degrees(2 * np.arccos(dots)).max()


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_dtypes(name):
    m = make(name, n=30)
    assert set(m) == set(motions.MOTION_KEYS)
    for k, d in motions.MOTION_KEYS.items():
        assert m[k].shape == (30, d) and m[k].dtype == np.float32, k
        assert np.isfinite(m[k]).all()


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_and_params_matter(name):
    a, b = make(name, seed=1), make(name, seed=1)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    c = make(name, seed=2)
    assert np.abs(a["body_pose"] - c["body_pose"]).max() > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_smooth_and_moving(name):
    for seed in range(5):
        m = make(name, n=72, fps=24.0, seed=seed)
        assert max_step_deg(m) < 20.0
        # Continuity: ten times the frame rate gives about a tenth of the step (a jump would not).
        fine = make(name, n=240, fps=240.0, seed=seed)
        assert max_step_deg(fine) < 2.5
        # It moves: the head turns by more than a couple of degrees over three seconds.
        head = joint_rot(m, "head")
        assert (head * head[0].inv()).magnitude().max() > np.radians(2.0)
        assert np.ptp(m["body_pose"], axis=0).max() > np.radians(5.0)


@pytest.mark.parametrize("name", NAMES)
def test_arms_down_not_t_pose(name):
    m = make(name)
    sides = ("left", "right")
    if name == "wave" or name in motions.HOLDING:      # the raised or holding arm is not down
        sides = (("left", "right")[params(name)["arm"] ^ 1],)
    for side in sides:
        # The upper arm lies along +-x at rest; relaxed, it must point mostly down.
        along = np.array([1.0 if side == "left" else -1.0, 0, 0])
        arm = chain(m, side, "{}_shoulder").apply(along)
        assert (arm[:, 1] < -0.8).all(), side
        assert joint_rot(m, f"{side}_shoulder").magnitude().min() > np.radians(45)
    # Fingers are curled a little, not flat.
    assert np.abs(m["left_hand_pose"]).max() > np.radians(5)
    assert np.abs(m["right_hand_pose"]).max() > np.radians(5)


def test_idle_sway_shoulders_rotated():
    m = make("idle_sway")
    for side in ("left", "right"):
        assert joint_rot(m, f"{side}_shoulder").magnitude().min() > 0.5
    # Weight shift: the pelvis moves sideways, but stays near the origin.
    assert np.ptp(m["transl"][:, 0]) > 0.005
    assert np.abs(m["transl"]).max() < 0.1


@pytest.mark.parametrize("arm", [0, 1])
def test_wave_raises_the_chosen_arm(arm):
    m = make("wave", arm=arm)
    side = ("left", "right")[arm]
    along = np.array([1.0 if side == "left" else -1.0, 0, 0])
    forearm = chain(m, side, "{}_elbow").apply(along)
    assert (forearm[:, 1] > 0.5).all()                   # forearm up
    elbow = joint_rot(m, f"{side}_elbow")
    assert (elbow * elbow[0].inv()).magnitude().max() > np.radians(15)   # waving
    other = ("left", "right")[1 - arm]
    down = chain(m, other, "{}_shoulder").apply(-along)
    assert (down[:, 1] < -0.8).all()


def test_walk_alternates_legs():
    m = make("walk_in_place", n=96)
    lk = joint_rot(m, "left_knee").magnitude()
    rk = joint_rot(m, "right_knee").magnitude()
    assert lk.max() > np.radians(20) and rk.max() > np.radians(20)
    assert np.corrcoef(lk, rk)[0, 1] < -0.3
    assert np.ptp(m["transl"][:, 1]) > 0.005


def test_head_turn_and_nod_axes():
    turn = make("head_turn")
    yaw = joint_rot(turn, "head").as_rotvec()
    assert np.ptp(yaw[:, 1]) > np.ptp(yaw[:, 0])
    nod = make("nod")
    pitch = joint_rot(nod, "head").as_rotvec()
    assert np.ptp(pitch[:, 0]) > np.ptp(pitch[:, 1])


def test_sample_params_and_spec_errors():
    ranges = load_conf("motion/procedural")["ranges"]
    p = motions.sample_params("wave", 3, ranges)
    assert p == motions.sample_params("wave", 3, ranges) and sorted(p) == sorted(motions.PARAMS["wave"])
    # A motion's own entry overrides `common`; a parameter missing or unknown is named.
    assert motions.sample_params("wave", 3, {**ranges, "wave": {**ranges["wave"], "arm_down": 70.0}})["arm_down"] == 70.0
    common = {k: v for k, v in ranges["common"].items() if k != "elbow_bend"}
    with pytest.raises(ValueError, match="missing \\['elbow_bend'\\]"):
        motions.sample_params("nod", 0, {**ranges, "common": common})
    with pytest.raises(ValueError, match="unknown \\['wiggle'\\]"):
        motions.sample_params("nod", 0, {**ranges, "nod": {**ranges["nod"], "wiggle": 1.0}})
    assert p["arm"] in (0, 1) and isinstance(p["seed"], int)
    lo, hi = ranges["wave"]["wave_freq"]
    assert lo <= p["wave_freq"] <= hi
    with pytest.raises(ValueError, match="moonwalk"):
        motions.sample_params("moonwalk", 0, ranges)
    bad = dict(p)
    del bad["wave_freq"]
    with pytest.raises(ValueError, match="wave_freq"):
        motions.motion_frames({"kind": "procedural", "name": "wave", "params": bad}, 10, 24)
    with pytest.raises(ValueError, match="kind"):
        motions.motion_frames({"kind": "mocap"}, 10, 24)


# --- AMASS ------------------------------------------------------------------------------------

RATE = np.radians(150.0)      # rad/s of the test rotation


def write_amass(path, flavour, fps, n=120):
    """A synthetic AMASS file: the subject stands upright in the Z-up world, its neck turns at a
    constant rate about a tilted axis, its jaw (SMPL-X) and hands hold known poses."""
    width = 156 if flavour == "smplh" else 165
    t = np.arange(n) / fps
    poses = np.zeros((n, width))
    poses[:, 0:3] = [np.pi / 2, 0, 0]            # model Y-up -> world Z-up: standing upright
    axis = np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2])
    neck = 3 + 3 * J["neck"]
    poses[:, neck:neck + 3] = (RATE * t)[:, None] * axis
    hands = 66 if flavour == "smplh" else 75
    poses[:, hands:hands + 45] = 0.1
    poses[:, hands + 45:hands + 90] = -0.2
    if flavour == "smplx":
        poses[:, 66:69] = [0.25, 0, 0]
    trans = np.zeros((n, 3))
    trans[:, 0] = 0.5 * t                         # walks along world x
    trans[:, 2] = 0.9                             # pelvis height, Z-up
    rate_key = "mocap_framerate" if flavour == "smplh" else "mocap_frame_rate"
    np.savez(path, poses=poses, trans=trans, betas=np.zeros(16), **{rate_key: np.array(fps)})
    return axis


@pytest.mark.parametrize("flavour", ["smplh", "smplx"])
@pytest.mark.parametrize("src_fps", [120.0, 60.0])
def test_amass_resampling(tmp_path, flavour, src_fps):
    path = tmp_path / f"{flavour}_{int(src_fps)}.npz"
    axis = write_amass(path, flavour, src_fps)
    m = motions.load_amass(path, fps=24.0, n_frames=20, start_frame=3)
    assert set(m) == set(motions.MOTION_KEYS)          # no betas
    assert all(v.shape[0] == 20 and v.dtype == np.float32 for v in m.values())
    t = (3 + np.arange(20)) / 24.0
    neck = m["body_pose"][:, 3 * J["neck"]:3 * J["neck"] + 3]
    np.testing.assert_allclose(neck, (RATE * t)[:, None] * axis, atol=1e-5)
    # Upright: the model's up axis stays up after the Z-up -> Y-up conversion.
    up = Rotation.from_rotvec(m["global_orient"]).apply([0, 1, 0])
    np.testing.assert_allclose(up, np.tile([0, 1, 0], (20, 1)), atol=1e-6)
    # Translation: world x stays x, height becomes y, horizontally centred over the clip.
    np.testing.assert_allclose(np.diff(m["transl"][:, 0]), 0.5 / 24.0, atol=1e-6)
    np.testing.assert_allclose(m["transl"][:, 1], 0.9, atol=1e-6)
    np.testing.assert_allclose(m["transl"][:, [0, 2]].mean(axis=0), 0, atol=1e-6)
    np.testing.assert_allclose(m["left_hand_pose"], 0.1, atol=1e-6)
    np.testing.assert_allclose(m["right_hand_pose"], -0.2, atol=1e-6)
    jaw = 0.25 if flavour == "smplx" else 0.0
    np.testing.assert_allclose(m["jaw_pose"][:, 0], jaw, atol=1e-6)


def test_amass_matches_scipy_slerp_between_frames(tmp_path):
    """Between source frames the result is the slerp of the neighbours, for any rotation path."""
    n, fps = 40, 30.0
    rng = np.random.default_rng(0)
    poses = np.zeros((n, 156))
    key = Rotation.from_rotvec(rng.normal(scale=1.0, size=(n, 3)))
    poses[:, 3 + 3 * J["left_elbow"]:][:, :3] = key.as_rotvec()
    np.savez(tmp_path / "w.npz", poses=poses, trans=np.zeros((n, 3)), betas=np.zeros(10),
             mocap_framerate=np.array(fps))
    m = motions.load_amass(tmp_path / "w.npz", fps=24.0, n_frames=30)
    t = np.arange(30) / 24.0
    ref = Slerp(np.arange(n) / fps, key)(t)
    got = Rotation.from_rotvec(m["body_pose"][:, 3 * J["left_elbow"]:3 * J["left_elbow"] + 3])
    assert (got * ref.inv()).magnitude().max() < 1e-5


def test_amass_errors_name_the_file(tmp_path):
    path = tmp_path / "short_take.npz"
    write_amass(path, "smplh", 120.0)                  # 119/120 s -> 24 frames at 24 fps
    motions.load_amass(path, 24.0, 24)
    with pytest.raises(ValueError, match="short_take.npz.*24 frames"):
        motions.load_amass(path, 24.0, 25)
    with pytest.raises(ValueError, match="short_take.npz"):
        motions.load_amass(path, 24.0, 20, start_frame=10)
    corrupt = tmp_path / "corrupt_take.npz"
    corrupt.write_bytes(b"PK\x03\x04 this is not a zip archive")
    with pytest.raises(ValueError, match="corrupt_take.npz"):
        motions.load_amass(corrupt, 24.0, 10)
    shape_only = tmp_path / "shape.npz"
    np.savez(shape_only, betas=np.zeros(16), gender="neutral")
    with pytest.raises(ValueError, match="shape.npz.*layout"):
        motions.load_amass(shape_only, 24.0, 10)
    wrong = tmp_path / "wrong_width.npz"
    np.savez(wrong, poses=np.zeros((50, 156)), trans=np.zeros((50, 3)),
             mocap_frame_rate=np.array(60.0))
    with pytest.raises(ValueError, match="wrong_width.npz"):
        motions.load_amass(wrong, 24.0, 10)
    single = tmp_path / "single_array.npz"
    with open(single, "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(ValueError, match="single_array.npz"):
        motions.load_amass(single, 24.0, 10)
    with pytest.raises(FileNotFoundError, match="missing_take.npz"):
        motions.load_amass(tmp_path / "missing_take.npz", 24.0, 10)


def test_motion_frames_amass_spec(tmp_path):
    path = tmp_path / "take.npz"
    write_amass(path, "smplx", 60.0)
    m = motions.motion_frames({"kind": "amass", "path": str(path), "start_frame": 2}, 10, 24.0)
    direct = motions.load_amass(path, 24.0, 10, start_frame=2)
    for k in m:
        np.testing.assert_array_equal(m[k], direct[k])


def test_walk_across_travels_and_its_feet_grip(cache_dir):
    """The pelvis covers speed x duration along the facing, centred on the rest position, and the
    foot on the ground moves far slower than the body: the stride matches the speed."""
    from assets import body
    n, fps = 72, 24.0
    p = params("walk_across", seed=3)
    m = motions.motion_frames({"kind": "procedural", "name": "walk_across", "params": p}, n, fps)
    travel = m["transl"][-1, 2] - m["transl"][0, 2]
    assert travel == pytest.approx(p["speed"] * (n - 1) / fps, rel=1e-5)
    assert abs(m["transl"][:, 2].mean()) < 1e-6 and np.abs(m["transl"][:, 0]).max() < 1e-9
    rec = body.resolve_model(None, cache_dir=cache_dir, kind="standin")
    posed = body.pose_body(rec, [0.0] * 10, m, body.sample(load_conf("body/default"), 0, "standin"))
    ankles = posed.joints[:, [7, 8]].astype(np.float64)                 # left, right ankle
    stance = np.argmin(ankles[:, :, 1], axis=1)                         # the lower foot bears the weight
    foot = ankles[np.arange(n), stance]
    speed = np.linalg.norm(np.diff(foot[:, [0, 2]], axis=0), axis=1) * fps
    same = stance[1:] == stance[:-1]                                    # not across a change of feet
    assert np.median(speed[same]) < 0.15 * p["speed"], (np.median(speed[same]), p["speed"])
    # Both knees bend in turn as each leg swings through.
    lk, rk = joint_rot(m, "left_knee").magnitude(), joint_rot(m, "right_knee").magnitude()
    assert lk.max() > np.radians(20) and rk.max() > np.radians(20) and np.corrcoef(lk, rk)[0, 1] < -0.3
    assert motions.view_deg({"kind": "procedural", "name": "walk_across", "params": p}) == p["view_deg"]
    assert motions.view_deg({"kind": "procedural", "name": "nod", "params": params("nod")}) == 0.0
