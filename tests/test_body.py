import hashlib

import numpy as np
import pytest

from assets import body, standin

pytestmark = [pytest.mark.slow]

V, NJ = 10475, 55


@pytest.fixture(scope="module")
def built():
    return standin.build_standin()


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    return body.resolve_model(None, cache_dir=tmp_path_factory.mktemp("cache"), kind="standin")


def _still(T=1):
    return {k: np.zeros((T, w), np.float32) for k, w in body.MOTION_WIDTHS.items()}


def _random_motion(T, seed, scale=0.3):
    rng = np.random.default_rng(seed)
    return {k: rng.normal(0.0, scale, (T, w)).astype(np.float32)
            for k, w in body.MOTION_WIDTHS.items()}


@pytest.mark.slow
def test_build_is_deterministic_and_well_formed(built):
    standin._layout.cache_clear()       # rebuild everything, topology included
    again = standin.build_standin()
    assert built.keys() == again.keys()
    for k in built:
        assert built[k].dtype == again[k].dtype and np.array_equal(built[k], again[k]), k
    assert built["v_template"].shape == (V, 3) and built["weights"].shape == (V, NJ)
    assert built["J_regressor"].shape == (NJ, V) and built["posedirs"].shape == (V, 3, 486)
    f = built["f"]
    assert f.min() == 0 and f.max() == V - 1 and len(np.unique(f)) == V  # every vertex used
    # Closed, outward-facing parts: every edge shared by two faces in opposite directions.
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(edges, axis=0)) == len(edges)
    assert {tuple(e) for e in edges[:, ::-1].tolist()} == {tuple(e) for e in edges.tolist()}
    v = built["v_template"].astype(np.float64)
    volume = np.einsum("ij,ij->", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])) / 6
    assert 0.05 < volume < 0.09   # m^3 summed over the overlapping parts
    assert (f[:, 0] != f[:, 1]).all() and (f[:, 1] != f[:, 2]).all() and (f[:, 0] != f[:, 2]).all()
    hc = built["hands_componentsl"].astype(np.float64)
    np.testing.assert_allclose(hc @ hc.T, np.eye(45), atol=1e-5)
    assert built["lmk_faces_idx"].shape == (51,) and built["lmk_faces_idx"].max() < len(f)
    np.testing.assert_allclose(built["lmk_bary_coords"].sum(1), 1.0, atol=1e-5)
    # The first 20 shape directions are all used, the rest of the 400 columns are zero.
    norms = np.abs(built["shapedirs"]).reshape(-1, 400).max(0)
    assert (norms[:20] > 1e-3).all() and (norms[20:] == 0).all()


def test_skinning_and_regressor_rows(built):
    W, JR = built["weights"].astype(np.float64), built["J_regressor"].astype(np.float64)
    assert W.min() >= 0 and JR.min() >= 0
    np.testing.assert_allclose(W.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(JR.sum(1), 1.0, atol=1e-5)
    joints = JR @ built["v_template"].astype(np.float64)
    J = standin.J
    v = built["v_template"]
    assert 1.65 < v[:, 1].max() - v[:, 1].min() < 1.75
    assert abs(joints[J["pelvis"], 1]) < 0.4 and -1.2 < v[:, 1].min() < -1.1
    # Skeleton order and sides: y up, x to the body's left, the face towards +z.
    ys = [joints[J[n], 1] for n in ("left_ankle", "left_knee", "left_hip", "spine1", "spine2",
                                     "spine3", "neck", "head", "left_eye_smplhf")]
    assert all(a < b for a, b in zip(ys, ys[1:]))
    assert joints[J["left_wrist"], 0] > 0.5 and joints[J["right_wrist"], 0] < -0.5
    nose = standin.SMPLX_VERTEX_IDS["nose"]
    assert v[nose, 2] > joints[J["head"], 2] + 0.08
    # Each finger chain runs outwards and smplx's fingertip vertices sit past the last joint.
    for side, s in (("left", 1.0), ("right", -1.0)):
        for finger in ("index", "middle", "ring", "pinky"):
            xs = [s * joints[J[f"{side}_{finger}{i}"], 0] for i in (1, 2, 3)]
            tip = standin.SMPLX_VERTEX_IDS[side[0] + finger]
            assert xs[0] < xs[1] < xs[2] < s * v[tip, 0], (side, finger)


@pytest.mark.slow
def test_cache_written_once_and_byte_identical(tmp_path, record):
    folder = standin.ensure_standin(tmp_path)
    npz = folder / "smplx" / "SMPLX_NEUTRAL.npz"
    stamp = npz.stat().st_mtime_ns
    assert standin.ensure_standin(tmp_path) == folder and npz.stat().st_mtime_ns == stamp
    assert f"v{standin.STANDIN_VERSION}" in folder.name
    assert [p.name for p in npz.parent.iterdir()] == ["SMPLX_NEUTRAL.npz"]   # no temp files left
    # Built at another time in another folder: the same bytes, so the same sha256 in specs.
    assert hashlib.sha256(npz.read_bytes()).hexdigest() == record["sha256"]


def test_loads_through_smplx_create_and_runs_a_batch(record):
    import smplx
    import torch
    from pathlib import Path

    folder = Path(record["path"]).parent.parent
    T = 16
    m = smplx.create(str(folder), model_type="smplx", gender="neutral", use_pca=False,
                     num_betas=20, batch_size=T, flat_hand_mean=True)
    mo = {k: torch.from_numpy(v) for k, v in _random_motion(T, 1).items()}
    with torch.no_grad():
        out = m(betas=torch.zeros(T, 20), **mo)
    assert out.vertices.shape == (T, V, 3) and torch.isfinite(out.vertices).all()
    assert out.joints.shape[1] >= NJ
    # Different frames, different bodies.
    assert (out.vertices[0] - out.vertices[1]).abs().max() > 0.01


def test_record_and_errors(record, tmp_path):
    assert record["kind"] == "standin" and record["gender"] == "neutral"
    assert record["sha256"] == hashlib.sha256(open(record["path"], "rb").read()).hexdigest()
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        body.resolve_model(str(missing))
    empty = tmp_path / "empty_folder"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="SMPLX_NEUTRAL.npz"):
        body.resolve_model(str(empty))
    junk = tmp_path / "junk" / "SMPLX_NEUTRAL.npz"
    junk.parent.mkdir()
    junk.write_text("not a zip")
    with pytest.raises(ValueError, match="junk"):
        body.resolve_model(str(junk.parent))
    partial = tmp_path / "partial.npz"
    np.savez(partial, v_template=np.zeros((3, 3)), f=np.zeros((1, 3), int))
    with pytest.raises(ValueError, match=r"partial\.npz.*shapedirs"):
        body.resolve_model(str(partial))
    with pytest.raises(ValueError, match="gender"):
        body.resolve_model(str(partial), gender="robot")


def test_betas_height_and_girth(record):
    def posed(betas):
        return body.pose_body(record, betas, _still()).vertices[0].astype(np.float64)

    base = posed([0.0] * 10)
    tall = posed([1.5] + [0.0] * 9)
    height = lambda v: v[:, 1].max() - v[:, 1].min()
    assert height(tall) > height(base) + 0.05
    heavy = posed([0.0, 2.0] + [0.0] * 8)
    waist = lambda v: v[(np.abs(v[:, 1] + 0.07) < 0.02) & (np.abs(v[:, 0]) < 0.2)]
    assert np.ptp(waist(heavy)[:, 0]) > np.ptp(waist(base)[:, 0]) + 0.02
    assert np.ptp(waist(heavy)[:, 2]) > np.ptp(waist(base)[:, 2]) + 0.02
    assert abs(height(heavy) - height(base)) < 0.01


def test_head_transform_is_exact_for_scalp(record):
    T = 6
    motion = _random_motion(T, 7, scale=0.4)
    motion["transl"] = np.random.default_rng(3).normal(0, 0.5, (T, 3)).astype(np.float32)
    pb = body.pose_body(record, body.sample_betas(2, 16, 1.0), motion)
    assert pb.head_transform.shape == (T, 4, 4) and pb.vertices.shape == (T, V, 3)
    assert pb.joints.shape == (T, NJ, 3) and pb.faces.dtype == np.int32
    rest = np.c_[pb.rest_vertices[pb.scalp], np.ones(pb.scalp.sum())]
    pred = np.einsum("tij,vj->tvi", pb.head_transform, rest)[..., :3]
    err = np.abs(pred - pb.vertices[:, pb.scalp]).max()
    assert err < 1e-4
    # ... and the pose really moved the head (the check is not trivially true).
    assert np.abs(pb.vertices[:, pb.scalp] - pb.rest_vertices[pb.scalp]).max() > 0.05


def test_finger_rotation_moves_that_finger_only(record):
    still = body.pose_body(record, [0.0] * 10, _still())
    m = _still()
    m["left_hand_pose"][0, 3:9] = [0.0, 0.0, -1.2, 0.0, 0.0, -1.0]   # index2, index3 curl
    bent = body.pose_body(record, [0.0] * 10, m)
    tip = standin.SMPLX_VERTEX_IDS["lindex"]
    moved = np.linalg.norm(bent.vertices[0] - still.vertices[0], axis=1)
    assert moved[tip] > 0.02
    assert bent.vertices[0, tip, 1] < still.vertices[0, tip, 1] - 0.01     # curls palm-wards
    W = standin.build_standin(1)["weights"]
    right_hand = np.isin(W.argmax(1), [standin.J["right_wrist"]] + list(range(40, 55)))
    other_left = np.isin(W.argmax(1), [standin.J["left_middle3"], standin.J["left_pinky3"]])
    assert moved[right_hand].max() < 1e-6 and moved[other_left].max() < 1e-6


def test_scalp_mask(record, built, tmp_path):
    pb = body.pose_body(record, [0.0], _still())
    scalp, v = pb.scalp, pb.rest_vertices.astype(np.float64)
    joints = built["J_regressor"].astype(np.float64) @ built["v_template"].astype(np.float64)
    eyes = joints[[standin.J["left_eye_smplhf"], standin.J["right_eye_smplhf"]]]
    assert 300 < scalp.sum() < 3000
    assert v[scalp, 1].min() > eyes[:, 1].mean() - 0.1 and v[scalp, 1].max() == v[:, 1].max()
    # Nothing on the face: no scalp vertex in front of the eyes below the forehead.
    face = (v[:, 2] > eyes[:, 2].mean() - 0.01) & (v[:, 1] < eyes[:, 1].mean() + 0.03)
    assert not (scalp & face).any() and not scalp[standin.SMPLX_VERTEX_IDS["nose"]]
    # Hair is rigid with the head: the scalp is skinned to the head joint alone.
    assert built["weights"][scalp, standin.J["head"]].min() > 0.999
    assert pb.head[scalp].all() and pb.head.sum() > scalp.sum()
    # The geometric rule for real SMPL-X files (no scalp_mask key) finds about the same patch.
    plain = {k: built[k] for k in body.REQUIRED_KEYS}
    np.savez(tmp_path / "SMPLX_NEUTRAL.npz", **plain)
    rec = body.resolve_model(str(tmp_path))
    assert rec["kind"] == "smplx" and rec["publishable"] is False   # the licensed model's meshes stay private
    derived = body.pose_body(rec, [0.0], _still()).scalp
    iou = (derived & scalp).sum() / (derived | scalp).sum()
    assert iou > 0.6, iou


def test_sample_betas():
    a = body.sample_betas(5, 10, 1.5)
    assert a == body.sample_betas(np.random.default_rng(5), 10, 1.5) and len(a) == 10
    assert max(abs(x) for x in body.sample_betas(0, 2000, 0.5)) <= 1.25
    assert body.sample_betas(0, 4, 0.0) == [0.0] * 4
    with pytest.raises(ValueError):
        body.sample_betas(0, 4, -1.0)
