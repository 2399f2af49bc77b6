"""The anny body: built offline, posed by every motion through the SMPL-X joint mapping (its limbs
point where the SMPL-X-format stand-in's do), hair grows on its scalp, and its clips say so."""
import socket

import numpy as np
import pytest

from assets import anny_body, body, hair, motions
from core.conf import load

pytestmark = [pytest.mark.slow]

LIMBS = {"left upper arm": (16, 18), "right upper arm": (17, 19), "left forearm": (18, 20), "right forearm": (19, 21),
         "left thigh": (1, 4), "right thigh": (2, 5), "left shin": (4, 7), "right shin": (5, 8), "neck": (12, 15)}


@pytest.fixture(scope="module")
def anny_model(cache_dir):
    return body.resolve_model(None, cache_dir=cache_dir, kind="anny")


@pytest.fixture(scope="module")
def standin_model(cache_dir):
    return body.resolve_model(None, cache_dir=cache_dir, kind="standin")


def _body(seed=0):
    return body.sample(load("body/default"), seed, "anny")


def test_builds_and_poses_offline(anny_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("anny tried to reach the network")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    assert anny_model["kind"] == "anny" and anny_model["publishable"]
    rest = {k: np.zeros((1, w), np.float32) for k, w in body.MOTION_WIDTHS.items()}
    posed = body.pose_body(anny_model, [], rest, _body())
    assert posed.vertices.shape == (1, 13718, 3) and posed.faces.shape == (27420, 3)
    assert np.isfinite(posed.vertices).all()
    # SMPL-X's rest is a T-pose: anny's A-pose is corrected to it (arms straight out along x).
    for shoulder, wrist, side in ((16, 20, 1.0), (17, 21, -1.0)):
        d = posed.rest_joints[wrist] - posed.rest_joints[shoulder]
        assert d[0] * side > 0 and np.degrees(np.arccos(abs(d[0]) / np.linalg.norm(d))) < 3
    # Y up, facing +z as SMPL-X: head above feet, the face in front of the head joint.
    assert posed.rest_joints[15, 1] - posed.rest_joints[7, 1] > 1.0
    face = posed.rest_vertices[posed.head & ~posed.scalp]
    assert face[:, 2].max() > posed.rest_joints[15, 2] + 0.05


@pytest.mark.parametrize("name", sorted(motions.PROCEDURAL))
def test_every_motion_poses_the_limbs_as_smplx_does(anny_model, standin_model, name):
    table = load("motion/procedural")["ranges"]
    spec = {"kind": "procedural", "name": name, "params": motions.sample_params(name, 3, table)}
    frames = motions.motion_frames(spec, 12, 8.0)
    a = body.pose_body(anny_model, [], frames, _body(1))
    s = body.pose_body(standin_model, [0.0] * 10, frames)
    moved = 0.0
    for limb, (i, j) in LIMBS.items():
        da, ds = a.joints[:, j] - a.joints[:, i], s.joints[:, j] - s.joints[:, i]
        cos = (da * ds).sum(-1) / np.linalg.norm(da, axis=-1) / np.linalg.norm(ds, axis=-1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 20, f"{name}: {limb} points elsewhere"
        moved = max(moved, float(np.ptp(da, axis=0).max()))
    assert moved > 0.01, f"{name} does not move anny's limbs"
    # The head rides on its joint: head_transform carries rest head vertices to the posed ones.
    rest = np.c_[a.rest_vertices[a.scalp], np.ones(int(a.scalp.sum()))]
    carried = np.einsum("tij,vj->tvi", a.head_transform, rest)[..., :3]
    assert np.abs(carried - a.vertices[:, a.scalp]).max() < 0.002


def test_scalp_is_the_top_and_back_of_the_head(anny_model):
    posed = body.pose_body(anny_model, [], {k: np.zeros((1, w), np.float32) for k, w in body.MOTION_WIDTHS.items()},
                           _body(2))
    scalp, head = posed.rest_vertices[posed.scalp], posed.rest_vertices[posed.head]
    eyes = posed.rest_joints[[23, 24]].mean(axis=0)
    assert 200 < len(scalp) < 1000
    assert np.percentile(scalp[:, 1], 10) > eyes[1] - 0.06          # not on the cheeks or the neck
    forehead = scalp[(scalp[:, 2] > eyes[2] - 0.02) & (np.abs(scalp[:, 0]) < 0.03)]   # midline, near the face
    assert len(forehead) and (forehead[:, 1] > eyes[1] + 0.03).all(), "hair must not grow on the face"
    assert scalp[:, 1].max() >= head[:, 1].max() - 1e-6              # the crown is scalp


def test_brows_and_lashes_grow_at_the_eyes_and_ride_the_head(anny_model, standin_model):
    table = load("motion/procedural")["ranges"]
    frames = motions.motion_frames({"kind": "procedural", "name": "head_turn",
                                    "params": motions.sample_params("head_turn", 4, table)}, 12, 8.0)
    posed = body.pose_body(anny_model, [], frames, _body(3))
    p = hair.sample(load("hair/default"), 5)["face"]
    skin, rims = posed.face_sites
    fh = hair.face.grow(posed.rest_vertices, posed.faces, skin, rims, p, 11)
    again = hair.face.grow(posed.rest_vertices, posed.faces, skin, rims, p, 11)
    np.testing.assert_array_equal(fh.points, again.points)
    brows, lashes = fh.points[fh.kind == hair.face.BROW], fh.points[fh.kind == hair.face.LASH]
    assert len(brows) == 2 * p["brows"]["count"]
    assert len(lashes) == 2 * (p["lashes"]["count_upper"] + p["lashes"]["count_lower"])
    r = posed.rest_vertices
    eyes = posed.rest_joints[[23, 24]]
    skin_v = np.unique(skin)
    normals = hair.vertex_normals(r.astype(np.float64), posed.faces)
    for side, (eye, rim) in enumerate(zip(eyes, rims)):
        mine = (brows[:, 0, 0] > 0) == (eye[0] > 0)
        b = brows[mine]
        assert len(b) == p["brows"]["count"], "each brow sits over its own eye"
        # Above the lid's top and within a few centimetres of the eye, on the skin, lying outside it.
        assert (b[:, 0, 1] > r[rim, 1].max()).all() and (np.abs(b[:, 0, 1] - eye[1]) < 0.04).all()
        nearest = skin_v[np.argmin(np.linalg.norm(r[skin_v][None] - b[:, 0][:, None], axis=2), axis=1)]
        assert np.linalg.norm(b[:, 0] - r[nearest], axis=1).max() < 0.008
        for k in range(1, b.shape[1]):
            near = skin_v[np.argmin(np.linalg.norm(r[skin_v][None] - b[:, k][:, None], axis=2), axis=1)]
            assert (((b[:, k] - r[near]) * normals[near]).sum(axis=1) > -0.001).all(), "a brow hair enters the skin"
        # Lashes root on this eye's lid margin; the upper ones turn up and forward, the lower ones down.
        lm = lashes[(lashes[:, 0, 0] > 0) == (eye[0] > 0)]
        gap = np.linalg.norm(lm[:, 0][:, None] - r[rim][None], axis=2).min(axis=1)
        assert gap.max() < 0.004
        centre = r[rim].mean(axis=0)
        upper, lower = lm[lm[:, 0, 1] >= centre[1]], lm[lm[:, 0, 1] < centre[1]]
        assert len(upper) >= p["lashes"]["count_upper"] * 0.8 and len(lower) >= p["lashes"]["count_lower"] * 0.8
        assert (upper[:, -1, 1] > upper[:, 0, 1]).all() and (lower[:, -1, 1] < lower[:, 0, 1]).all()
        assert (lm[:, -1, 2] > lm[:, 0, 2]).all()
        # The head's transform carries the rim with the posed skin: what the strands ride on.
        carried = np.einsum("tij,vj->tvi", posed.head_transform, np.c_[r[rim], np.ones(len(rim))])[..., :3]
        assert np.abs(carried - posed.vertices[:, rim]).max() < 0.002
    assert np.abs(posed.head_transform[:, :3, :3] - posed.head_transform[:1, :3, :3]).max() > 0.05, "the head turns"
    assert body.pose_body(standin_model, [0.0] * 10, frames).face_sites is None   # no eyes to place them by


def test_phenotypes_cover_teens_to_elders_and_stay_in_range():
    cfg = load("body/default")
    draws = [body.sample(cfg, s, "anny") for s in range(200)]
    years = [d["age_years"] for d in draws]
    lo, hi = cfg["anny"]["age_years"]
    assert lo <= min(years) < lo + 5 and hi - 5 < max(years) <= hi
    assert anny_body.years_to_age(13) < anny_body.years_to_age(30) < anny_body.years_to_age(80)
    for d in draws:
        assert d["betas"] == [] and all(0 <= v <= 1 for v in d["phenotype"].values())


@pytest.mark.blender
@pytest.mark.ray
def test_a_rendered_anny_store_says_which_body_and_is_publishable(tmp_path, cache_dir):
    import clipstore
    from core.cli import compose, to_container
    from pipelines.render import main as render_main
    from tests.conftest import SMALL
    cfg = to_container(compose("render", [*SMALL, "body.model=anny", f"body.cache_dir={cache_dir}", "n_clips=1",
                                          f"store.path={tmp_path / 's.zarr'}"]))
    assert render_main.task(cfg) == 0
    root = clipstore.open_store(tmp_path / "s.zarr")
    assert root.attrs["licence"]["publishable"] is True and "CC0" in root.attrs["licence"]["body_model"]
    clip = clipstore.read_clip(root, "clip000000")
    spec_body = clip.attrs["spec"]["body"]
    assert spec_body["model"]["kind"] == "anny" and set(spec_body["phenotype"]) == set(anny_body.PHENOTYPES)
    assert 13 <= spec_body["age_years"] <= 85
    assert clip.attrs["render"]["body_vertices"] == 13718 and (clip["alpha_hair"][:] > 0).any()
    stats = clip.attrs["render"]["hair"]
    assert stats["brows"] == 2 * clip.attrs["spec"]["hair"]["face"]["brows"]["count"] and stats["lashes"] > 0


@pytest.mark.blender
def test_the_same_anny_spec_renders_the_same_pixels(cache_dir):
    from core.cli import compose, to_container
    from pipelines import plan
    from render.clip import render_clip
    from tests.conftest import SMALL
    cfg = to_container(compose("render", [*SMALL, "body.model=anny", f"body.cache_dir={cache_dir}", "n_clips=1",
                                          "cycles.width=48", "cycles.height=48"]))
    spec = plan.plan(cfg, body.resolve_model(None, cache_dir=cache_dir, kind="anny"))[0]
    assert spec.clothing["top"] or spec.clothing["bottom"]          # a dressed body, garments included
    a, b = render_clip(spec, threads=2), render_clip(spec, threads=2)
    for name in a.arrays:
        np.testing.assert_array_equal(a.arrays[name], b.arrays[name], err_msg=name)
