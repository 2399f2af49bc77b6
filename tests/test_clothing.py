"""Garments: every kind drawn, dressed only on bodies whose regions are known, and the cloth stays
outside the body in every frame of every motion (but where the skinned skin folds into itself)."""
import numpy as np
import pytest

from assets import body, clothing, motions
from core.conf import load

CFG = load("clothing/default")


def test_every_kind_and_pattern_is_drawn_and_stand_in_stays_bare():
    draws = [clothing.sample(CFG, s, "anny") for s in range(300)]
    tops = {d["top"]["kind"] for d in draws if d["top"]}
    assert tops == {k for k, w in CFG["tops"]["weights"].items() if w > 0}
    assert {d["bottom"]["kind"] for d in draws} == set(CFG["bottoms"]["weights"])
    assert {d["top"]["fabric"]["pattern"] for d in draws} == set(clothing.PATTERNS)
    bare = clothing.sample(CFG, 0, "standin")
    assert bare["top"] is None and bare["bottom"] is None and "bare" in bare["note"]
    with pytest.raises(ValueError, match="unknown regions"):
        clothing.sample({**CFG, "tops": {**CFG["tops"], "weights": {"t_shirt": 1.0},
                                          "regions": {**CFG["tops"]["regions"], "t_shirt": ["tail"]}}}, 0, "anny")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(motions.PROCEDURAL))
def test_cloth_stays_outside_the_body(cache_dir, name):
    import trimesh
    rec = body.resolve_model(None, cache_dir=cache_dir, kind="anny")
    spec = {"kind": "procedural", "name": name, "params": motions.sample_params(name, 5, load("motion/procedural")["ranges"])}
    posed = body.pose_body(rec, [], motions.motion_frames(spec, 12, 6.0), body.sample(load("body/default"), 1, "anny"))
    for kind in ("hoodie", "trousers"):
        part = "tops" if kind == "hoodie" else "bottoms"
        thickness = 0.006
        covered = np.logical_or.reduce([posed.regions[r] for r in CFG[part]["regions"][kind]])
        verts, faces = clothing.dress(posed.vertices, posed.faces, covered, thickness)
        assert len(faces) > 1000
        for t in range(0, 12, 4):
            skin = trimesh.Trimesh(posed.vertices[t], posed.faces, process=False)
            closest, dist, tri = trimesh.proximity.closest_point(skin, verts[t])
            depth = dist * np.sign(((verts[t] - closest) * skin.face_normals[tri]).sum(-1))
            # Only where the skinned skin folds into itself (armpits, inner elbows) is cloth inside it,
            # never deeper than the fold can hide.
            assert (depth < -0.001).mean() < 0.02, f"{name} {kind} frame {t}: {(depth < -0.001).mean():.2%} inside"
            assert depth.min() > -(thickness + 0.002)
            # Elsewhere it sits at about its thickness above the skin.
            assert np.median(depth) == pytest.approx(thickness, abs=0.002)
