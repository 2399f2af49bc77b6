"""Things worn on the head: glasses fitted to each face and riding on the head through a head turn,
and the alpha rule for see-through matter (1 - the mean straight-through transmittance at the angle
seen) measured on a flat patch of known transmission and through real fitted lenses."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from scipy.spatial import cKDTree

from assets import body, hair, motions, worn
from assets.hair.field import vertex_normals
from assets.worn import glasses
from core.conf import load
from tests.test_outputs import _plane_scene, spec_of

pytestmark = [pytest.mark.slow]


def _record(seed: int, frame: str) -> dict:
    cfg = load("worn/default")
    cfg["glasses"]["share"] = 1.0
    cfg["glasses"]["frames"] = {frame: 1.0}
    return worn.sample(cfg, seed, "anny")["glasses"]


@pytest.fixture(scope="module")
def turning_heads(cache_dir):
    model = body.resolve_model(None, cache_dir=cache_dir, kind="anny")
    table = load("motion/procedural")["ranges"]
    frames = motions.motion_frames({"kind": "procedural", "name": "head_turn",
                                    "params": motions.sample_params("head_turn", 4, table)}, 12, 8.0)
    return [body.pose_body(model, [], frames, body.sample(load("body/default"), s, "anny")) for s in (3,)]


def _lashes(posed) -> np.ndarray:
    skin, rims = posed.face_sites
    fh = hair.face.grow(posed.rest_vertices, posed.faces, skin, rims, hair.sample(load("hair/default"), 5)["face"], 11)
    return fh.points.reshape(-1, 3)


def test_glasses_sit_on_the_nose_over_both_eyes_and_clear_the_face_through_a_head_turn(turning_heads):
    for k, posed in enumerate(turning_heads):
        for frame in ("metal", "acetate"):
            p = _record(10 * k + len(frame), frame)
            skin, rims = posed.face_sites
            lashes = _lashes(posed)
            g = glasses.fit(posed.rest_vertices, posed.head, rims, p, lashes)
            again = glasses.fit(posed.rest_vertices, posed.head, rims, p, lashes)
            np.testing.assert_array_equal(g.frame_vertices, again.frame_vertices)
            r = posed.rest_vertices.astype(np.float64)
            eyes = sorted((r[rim].mean(axis=0) for rim in rims), key=lambda e: -e[0])
            for centre, eye in zip(g.lens_centres, eyes):   # each lens in front of its own eye
                assert np.abs(centre[:2] - eye[:2]).max() < 0.01 and centre[2] > eye[2] + 0.008
            # The bridge's middle rests on the nose: within 1.5 mm of the skin below it.
            head = np.flatnonzero(posed.head)
            mid = g.frame_vertices[np.abs(g.frame_vertices[:, 0]) < 0.002]
            assert len(mid)
            gap = cKDTree(r[head]).query(mid)[0].min()
            assert gap < 0.0015, f"the bridge floats {gap * 1000:.1f} mm off the nose"
            # Nothing of the glasses inside the head, in any frame: outside by the nearest vertex's
            # normal, on the posed skin the head's transform carries them with.
            normals = vertex_normals(r, posed.faces)
            pts = np.concatenate([g.frame_vertices, g.lens_vertices]).astype(np.float64)
            for t in range(len(posed.vertices)):
                m = posed.head_transform[t].astype(np.float64)
                moved = pts @ m[:3, :3].T + m[:3, 3]
                skin_t = posed.vertices[t, head].astype(np.float64)
                d, i = cKDTree(skin_t).query(moved)
                n_t = normals[head][i] @ m[:3, :3].T
                side = ((moved - skin_t[i]) * n_t).sum(axis=1)
                assert (side[d < 0.01] > -0.0005).all(), f"frame {t}: glasses inside the head"
            # The lenses keep their clearance from the face and from the lashes behind them.
            assert cKDTree(r[head]).query(g.lens_vertices)[0].min() > 0.001
            assert cKDTree(lashes).query(g.lens_vertices)[0].min() > 0.001
            # Sized to the face: lens centres at least the pupils' distance apart, a lens as wide as
            # the record says, temples reaching back past the ears' front.
            rec = g.record
            assert g.lens_centres[0, 0] - g.lens_centres[1, 0] >= rec["pupil_distance"] - 1e-6
            widths = [np.ptp(g.lens_vertices[g.lens_vertices[:, 0] * s > 0][:, 0]) for s in (1, -1)]
            np.testing.assert_allclose(widths, rec["lens_width"] * np.cos(np.radians(p["wrap_deg"])), rtol=0.02)
            assert g.frame_vertices[:, 2].min() < r[head][:, 2].mean()
    assert np.abs(turning_heads[0].head_transform[:, :3, :3] - turning_heads[0].head_transform[:1, :3, :3]).max() > 0.05
    # Many more fits, at rest: nothing of any of them inside the head.
    for k, posed in enumerate(turning_heads):
        r = posed.rest_vertices.astype(np.float64)
        head = np.flatnonzero(posed.head)
        normals = vertex_normals(r, posed.faces)[head]
        tree = cKDTree(r[head])
        for seed in range(12):
            p = _record(100 + 20 * k + seed, worn.FRAMES[seed % 2])
            g = glasses.fit(posed.rest_vertices, posed.head, posed.face_sites[1], p)
            pts = np.concatenate([g.frame_vertices, g.lens_vertices]).astype(np.float64)
            d, i = tree.query(pts)
            side = ((pts - r[head][i]) * normals[i]).sum(axis=1)
            assert (side[d < 0.01] > -0.0005).all(), f"body {k}, glasses {seed}: inside the head"


def test_worn_things_are_drawn_by_their_shares_and_only_on_bodies_that_know_their_eyes():
    cfg = load("worn/default")
    draws = [worn.sample(cfg, s, "anny")["glasses"] for s in range(400)]
    share = np.mean([d is not None for d in draws])
    assert abs(share - cfg["glasses"]["share"]) < 0.07
    lenses = {d["lens_material"]["lens"] for d in draws if d}
    assert lenses == set(worn.LENSES) and {d["frame"] for d in draws if d} == set(worn.FRAMES)
    for d in draws:
        if d:   # the rule's number is recorded with the lens, and no lens passes more than its surfaces leave
            lens = d["lens_material"]
            assert lens["opacity"] == pytest.approx(1 - np.mean(lens["transmittance"]))
            assert max(lens["transmittance"]) + max(lens["mirror_rgb"]) <= 1 - worn.slab_reflectance(lens["ior"]) + 1e-9
    every = [worn.sample(cfg, s, "anny") for s in range(400)]
    for kind in ("earrings", "hat"):
        assert abs(np.mean([w[kind] is not None for w in every]) - cfg[kind]["share"]) < 0.07
    phones = np.mean([w["headphones"] is not None for w in every])   # never over a hat
    assert abs(phones - cfg["headphones"]["share"] * (1 - cfg["hat"]["share"])) < 0.06
    assert not any(w["headphones"] and w["hat"] for w in every)
    assert {w["earrings"]["kind"] for w in every if w["earrings"]} == set(worn.earrings.KINDS)
    for s in range(20):
        w = worn.sample(cfg, s, "standin")
        assert w["glasses"] is None and w["headphones"] is None and w["earrings"] is None
    bad = load("worn/default")
    bad["glasses"]["lens"]["clear"]["transmittance"] = [0.9, 0.97]
    with pytest.raises(ValueError, match="worn.glasses.lens.clear: transmittance up to 0.97"):
        worn.check(bad)


def _fresnel(cos_i: np.ndarray, n: float) -> np.ndarray:
    """Unpolarised dielectric reflectance of one surface."""
    sin_t = np.sqrt(1 - cos_i ** 2) / n
    cos_t = np.sqrt(1 - sin_t ** 2)
    rs = ((cos_i - n * cos_t) / (cos_i + n * cos_t)) ** 2
    rp = ((n * cos_i - cos_t) / (n * cos_i + cos_t)) ** 2
    return 0.5 * (rs + rp)


def _patch(cache_dir, tilt_deg: float, material: dict):
    """A flat patch of `material` over the background, one frame: its alpha, the pixels well inside
    it, the cosine each pixel's ray meets it at, and its parts label."""
    from render.scene import build_and_render
    spec = spec_of(cache_dir, "clip.seconds=0.125", "camera.shutter=0", "camera.dof_share=0", "outputs.parts=true")
    scene, placed = _plane_scene(spec, 3.0, tilt_deg)
    scene = dataclasses.replace(scene, objects=(dataclasses.replace(scene.objects[0], materials=(material,)),))
    out = build_and_render(spec, scene, threads=2)
    alpha = out.arrays["alpha"][0] / 65535
    inner = cv2.erode((alpha > 0.05).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)   # off its edges
    assert inner.mean() > 0.3
    h, w = alpha.shape
    f = 35.0 / 24.0 * h
    ys, xs = np.mgrid[:h, :w] + 0.5
    rays = np.stack([(xs - w / 2) / f, np.ones_like(xs), -(ys - h / 2) / f], -1)
    cos_i = np.abs(rays @ placed[:3, 1]) / np.linalg.norm(rays, axis=-1)
    label = out.arrays["parts"][0] == 1 + spec.outputs["parts"]["parts"].index(material["part"])
    return alpha, inner, cos_i, label


@pytest.mark.blender
@pytest.mark.parametrize("tilt_deg", [0.0, 50.0])
def test_alpha_of_a_see_through_patch_is_one_minus_its_mean_transmittance(cache_dir, tilt_deg):
    tau, ior = np.array([0.85, 0.5, 0.2]), 1.6
    lens = {"kind": "see_through", "name": "patch", "transmittance": tau.tolist(), "ior": ior, "mirror_rgb": [0.0] * 3,
            "roughness": 0.0, "refracts": False, "part": "lens"}
    alpha, inner, cos_i, label = _patch(cache_dir, tilt_deg, lens)
    # The rule at each pixel's angle: mean transmittance scaled by what a thin slab's two faces
    # let through there over what they let through head on.
    slab = lambda F: 2 * F / (1 + F)   # noqa: E731
    want = 1 - tau.mean() * (1 - slab(_fresnel(cos_i, ior))) / (1 - slab(_fresnel(np.ones(1), ior)))
    assert np.abs(alpha[inner] - want[inner]).max() < 0.01
    if tilt_deg == 0:
        assert np.abs(alpha[inner] - (1 - tau.mean())).max() < 0.01
    assert label[inner].all()


@pytest.mark.blender
@pytest.mark.parametrize("tilt_deg", [0.0, 50.0])
def test_alpha_of_a_sheer_patch_is_one_minus_its_openness_where_seen(cache_dir, tilt_deg):
    """Chiffon of openness 0.45: alpha is 1 - 0.45 ** (1 / cos theta) at each pixel's angle, within
    0.01, strictly between 0.05 and 0.95, whatever light its yarns send (they are lit here)."""
    openness = 0.45
    chiffon = {"kind": "sheer", "name": "patch", "fabric": "chiffon", "pattern": "solid", "colour": [0.6, 0.2, 0.3],
               "colour_b": [0.6, 0.2, 0.3], "scale": 10.0, "roughness": 0.5, "sheen": 0.3, "openness": openness,
               "translucency": 0.2, "refracts": False, "part": "sheer"}
    alpha, inner, cos_i, label = _patch(cache_dir, tilt_deg, chiffon)
    want = 1 - openness ** (1 / cos_i)
    assert np.abs(alpha[inner] - want[inner]).max() < 0.01
    assert (alpha[inner] > 0.05).all() and (alpha[inner] < 0.95).all()
    assert label[inner].all()


@pytest.mark.blender
def test_alpha_through_fitted_clear_lenses_is_fractional(cache_dir):
    """The glasses of a real anny clip, alone in front of the camera: where a clear lens covers the
    pixel, alpha lies strictly between 0.05 and 0.95 and the label is the lens."""
    from assets import scene as scenes
    from render.scene import build_and_render
    spec = spec_of(cache_dir, "body.model=anny", "worn.glasses.share=1", "worn.glasses.lenses={clear: 1.0}",
                   "clip.seconds=0.125", "camera.shutter=0", "camera.dof_share=0", "outputs.parts=true",
                   "camera.framing.weights={close_up: 1.0, upper_body: 0.0, full_body: 0.0}", "cycles.width=96",
                   "cycles.height=96", "cycles.alpha_samples=64")
    scene = scenes.build(spec)
    scene = dataclasses.replace(scene, objects=tuple(o for o in scene.objects if o.role == "worn"))
    out = build_and_render(spec, scene, threads=2)
    alpha, parts = out.arrays["alpha"][0] / 65535, out.arrays["parts"][0]
    names = ("background", *spec.outputs["parts"]["parts"])
    lens = parts == names.index("lens")
    frame = cv2.dilate((parts == names.index("worn")).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    seen = lens & ~frame
    assert seen.sum() > 30, "the lenses fill part of a close-up"
    a = alpha[seen]
    opacity = spec.worn["glasses"]["lens_material"]["opacity"]
    assert 0.05 < a.min() and a.max() < 0.95
    assert abs(np.median(a) - opacity) < 0.03     # seen nearly head on, the recorded opacity


def _crossings(origin: np.ndarray, points: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """How many triangles (M,3,3) each segment origin -> point (N,3) passes through (Moller-Trumbore),
    the points taken in batches of similar direction against the triangles that lie that way."""
    out = np.zeros(len(points), int)
    tris, points, origin = tris.astype(np.float32), points.astype(np.float32), origin.astype(np.float32)
    unit = lambda v: v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)   # noqa: E731
    facing = unit(tris.mean(axis=1) - origin)
    reach = np.max(np.linalg.norm(tris - tris.mean(axis=1, keepdims=True), axis=-1), axis=1) / \
        np.linalg.norm(tris.mean(axis=1) - origin, axis=1)                 # a triangle's angular radius
    dirs = unit(points - origin)
    order = np.lexsort((np.round(dirs[:, 1], 1), np.arctan2(dirs[:, 0], dirs[:, 2]).round(1)))
    for lo in range(0, len(points), 256):
        idx = order[lo:lo + 256]
        mean = unit(dirs[idx].mean(axis=0))
        spread = np.arccos(np.clip(dirs[idx] @ mean, -1, 1)).max()
        cand = np.arccos(np.clip(facing @ mean, -1, 1)) < spread + np.arcsin(np.clip(reach, 0, 1)) + 0.02
        t = tris[cand]
        e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
        d = points[idx] - origin                                            # (n,3), the segment
        pv = np.cross(d[:, None], e2[None])                                 # (n,M,3)
        det = (pv * e1[None]).sum(-1)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        tv = origin - t[:, 0]
        u = (pv * tv[None]).sum(-1) * inv
        qv = np.cross(tv, e1)
        v = (d[:, None] * qv[None]).sum(-1) * inv
        s = (qv * e2).sum(-1)[None] * inv
        out[idx] = (ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (s > 0) & (s < 1)).sum(-1)
    return out


def test_no_strand_point_lies_inside_a_hat_through_the_clip(cache_dir):
    """The hat's crown is a closed shell: a point inside its fabric is crossed an odd number of
    times on its way out from the crown's centre. Before pressing, hair lies there; after, none does,
    at the clip's first and last frames, and nothing of the head pokes through. In the brim's sheet:
    nothing either. One simulated head of hair under each kind of hat."""
    from assets import stage
    from assets.hair import objects as hair_objects
    spec = spec_of(cache_dir, "body.model=standin", "worn.hat.share=1", "hair.strand_scale=0.05",
                   "hair.style_weights={short_crop: 0, bob: 0, long_straight: 1, wavy: 0, curly: 1, coily: 1, tied: 0}")
    motion = motions.motion_frames(spec.motion, spec.n_frames, spec.fps)
    posed = body.pose_body(spec.body["model"], spec.body["betas"], motion, spec.body)
    loose = hair_objects.scalp(spec, posed)
    ride = stage.rigid_to_world(posed.head_transform.astype(np.float64))
    cfg = load("worn/default")
    cfg["hat"]["share"] = 1.0
    head = posed.rest_vertices[posed.head].astype(np.float64)
    for kind in worn.HATS:
        cfg["hat"]["kinds"] = {k: float(k == kind) for k in worn.HATS}
        record = worn.sample(cfg, 1, "standin")["hat"]
        kept = dataclasses.replace(spec, worn={"glasses": None, "hat": record})
        hat = worn.hats.fit(posed.rest_vertices, posed.head, posed.rest_joints[worn.EYES], record)
        assert hat.record["kind"] == kind
        tris = hat.vertices[hat.faces[:hat.crown_faces]].astype(np.float64)
        held = worn.press(kept, posed, loose)
        inside_before = 0
        for t in (0, spec.n_frames - 1):   # the first frame and the last, when the hair has swung most
            for o, count in ((loose[0], False), (held[0], True)):
                world = o.points(t).astype(np.float64)
                local = stage.from_world((world - ride[t][:3, 3]) @ ride[t][:3, :3])
                near = local @ hat.normal > hat.offset - 0.03
                odd = _crossings(hat.centre, local[near][::3], tris) % 2 == 1
                if count:
                    assert not odd.any(), f"{kind}, frame {t}: {odd.sum()} strand points inside the hat's crown"
                else:
                    inside_before += int(odd.sum())
            if hat.brim is not None:
                r_in, r_out, thick, tan_droop = hat.brim
                rel = local - hat.centre
                planar = rel - (rel @ hat.normal)[:, None] * hat.normal
                ring = np.linalg.norm(planar, axis=1)
                az = np.arctan2(planar[:, 0], planar[:, 2]) % (2 * np.pi)
                k = np.round(az / (worn.hats.AZ[1] - worn.hats.AZ[0])).astype(int) % len(worn.hats.AZ)
                height = local @ hat.normal - (hat.offset - np.clip(ring - r_in[k], 0, None) * tan_droop)
                assert not ((ring > r_in[k]) & (ring < r_out[k]) & (np.abs(height) < 0.5 * thick)).any()
        assert inside_before > 0, f"{kind}: the loose hair went through the hat, so the test can tell"
        assert (_crossings(hat.centre, head[head @ hat.normal > hat.offset][::3], tris) == 0).all(), \
            f"{kind}: the head pokes through"


def test_fgr_over_a_clear_lens_is_its_own_light_not_its_neighbours():
    """A clear lens over the background has alpha under cycles.fgr_min_alpha in every sample, not
    by noise: its fgr is what it sends over its alpha; a thin edge of that alpha stays extended."""
    from render import frames
    rgba = np.zeros((8, 8, 4), np.float32)
    rgba[:, :4] = (0.5, 0.3, 0.2, 1.0)                          # skin on the left
    rgba[:, 4:] = (0.02, 0.02, 0.03, 0.08)                      # a clear lens reflecting the sky
    lens = np.zeros((8, 8), np.float32)
    lens[:, 4:] = 0.08                                           # its AOV: its opacity
    own = frames.foreground(rgba, 0.1, lens)
    plain = frames.foreground(rgba, 0.1)
    want = np.round(frames.linear_to_srgb(np.array([0.25, 0.25, 0.375])) * 255)
    np.testing.assert_allclose(own[:, 4:].reshape(-1, 3), np.broadcast_to(want, (32, 3)), atol=1)
    assert (plain[:, 6] == plain[:, 3]).all()                   # without it: the skin's colour spreads over


def test_headphones_cover_the_ears_and_no_strand_point_lies_inside_them(turning_heads, cache_dir):
    """Each cup and the band are closed shells: a point inside one is crossed an odd number of times
    on its way out from the head's middle. Loose hair lies in them before pressing, none after, at
    the first and last frames; the ears sit inside the cups, the band clears the crown."""
    from assets import stage
    from assets.hair import objects as hair_objects
    posed = turning_heads[0]
    spec = spec_of(cache_dir, "body.model=anny", "hair.strand_scale=0.05",
                   "hair.style_weights={short_crop: 0, bob: 0, long_straight: 1, wavy: 1, curly: 0, coily: 1, tied: 0}")
    spec = dataclasses.replace(spec, n_frames=len(posed.vertices))
    loose = hair_objects.scalp(spec, posed)
    ride = stage.rigid_to_world(posed.head_transform.astype(np.float64))
    cfg = load("worn/default")
    cfg["headphones"]["share"], cfg["hat"]["share"] = 1.0, 0.0
    inside_before = 0
    for seed in (1, 2):
        record = worn.sample(cfg, seed, "anny")["headphones"]
        h = worn.headphones.fit(posed.rest_vertices, posed.head, posed.ears, record)
        shells = np.split(h.vertices[h.faces].astype(np.float64), np.cumsum(h.part_faces)[:-1])
        held = worn.press(dataclasses.replace(spec, worn={"headphones": record}), posed, loose)
        for t in (0, len(posed.vertices) - 1):
            for o, pressed in ((loose[0], False), (held[0], True)):
                world = o.points(t).astype(np.float64)
                local = stage.from_world((world - ride[t][:3, 3]) @ ride[t][:3, :3])
                for name, tris in zip(("left cup", "right cup", "band"), shells):
                    lo, hi = tris.reshape(-1, 3).min(axis=0) - 0.01, tris.reshape(-1, 3).max(axis=0) + 0.01
                    near = local[((local > lo) & (local < hi)).all(axis=1)]
                    odd = _crossings(h.origin, near, tris) % 2 == 1
                    if pressed:
                        assert not odd.any(), f"seed {seed}, frame {t}: {odd.sum()} strand points inside the {name}"
                    else:
                        inside_before += int(odd.sum())
        r = posed.rest_vertices.astype(np.float64)
        for (side, centre, x_in, depth, hh, hw), ear in zip(h.cups, posed.ears):
            x = side * r[ear, 0]
            assert x.max() < x_in + depth - 0.5 * record["shell"], "an ear pokes out of its cup"
            inside = (((r[ear, 1] - centre[1]) / hh) ** 2 + ((r[ear, 2] - centre[2]) / hw) ** 2 < 1).mean()
            assert inside > 0.9, f"only {inside:.0%} of the ear under its cup"
        band = h.vertices[h.faces[sum(h.part_faces[:2]):].ravel()].astype(np.float64)
        crown = r[posed.head, 1].max()
        assert crown + 0.002 < band[:, 1].max() < crown + 0.05, "the band floats off or sinks into the crown"
        assert (_crossings(h.origin, r[posed.head][::2], shells[2]) == 0).all(), "the head pokes through the band"
    assert inside_before > 0, "the loose hair went through the headphones, so the test can tell"


def test_earrings_hang_from_each_lobe_clear_of_the_skin(turning_heads):
    from assets.worn import earrings
    posed = turning_heads[0]
    r = posed.rest_vertices.astype(np.float64)
    skin = cKDTree(r)
    cfg = load("worn/default")
    cfg["earrings"]["share"] = 1.0
    for kind in earrings.KINDS:
        cfg["earrings"]["kinds"] = {k: float(k == kind) for k in earrings.KINDS}
        for seed in (1, 2):
            e = worn.sample(cfg, seed, "anny")["earrings"]
            fit = earrings.fit(posed.rest_vertices, posed.ears, e)
            for hole, ear in zip(fit.piercings, posed.ears):
                lobe = r[ear][np.argmin(r[ear, 1])]
                assert np.sign(hole[0]) == np.sign(lobe[0]) and cKDTree(r[ear]).query(hole)[0] < 0.003
                assert 0.0 < hole[1] - lobe[1] < 0.008, "the piercing is not in the lobe"
            hanging = fit.vertices[fit.vertices[:, 1] < fit.piercings[:, 1].min() - 0.004].astype(np.float64)
            if kind != "stud":
                assert len(hanging), f"a {kind} hangs below the lobe"
                assert skin.query(hanging)[0].min() > e["clearance"] * 0.5, f"a {kind} cuts into the neck or jaw"


@pytest.mark.blender
def test_a_simulated_scarf_stays_outside_the_body_and_the_same_spec_drapes_the_same_cloth(cache_dir):
    """Blender's cloth solver drapes the scarf over the posed body and its garments: in every frame
    no cloth vertex lies more than 3 mm inside the skin, the ends hang well below the loop and
    swing, and the same spec gives the same cloth, bit for bit."""
    from assets import stage
    from assets.scene import PERSON
    spec = spec_of(cache_dir, "body.model=anny", "worn.scarf.share=1", "clip.seconds=1", "motion.weights={dance_sway: 1}",
                   "worn.scarf.fabrics={chiffon: 1, tulle: 0, lace: 0, silk: 0, knit: 0}")
    motion = motions.motion_frames(spec.motion, spec.n_frames, spec.fps)
    posed = body.pose_body(spec.body["model"], spec.body["betas"], motion, spec.body)
    person = [o for make in PERSON for o in make(spec, posed)]
    scarf = worn.drape(spec, posed, person)[0]
    again = worn.drape(spec, posed, person)[0]
    np.testing.assert_array_equal(scarf.shape.vertices, again.shape.vertices)
    assert scarf.materials[0]["part"] == "sheer" and scarf.rides_on == "simulated"
    import bpy  # noqa: F401  (brings mathutils)
    from mathutils.bvhtree import BVHTree
    skin = stage.to_world(posed.vertices.astype(np.float64))
    outer = posed.faces[posed.face_part == 0].tolist()     # the skin, not the mouth's inside behind it
    cloth = scarf.shape.vertices.astype(np.float64)
    for t in range(spec.n_frames):
        tree = BVHTree.FromPolygons(skin[t].tolist(), outer)
        # on which side of the nearest skin triangle each cloth vertex lies, and how far
        side = np.array([(np.subtract(q, at) @ np.asarray(n)) for q in cloth[t]
                         for at, n, _, _ in [tree.find_nearest(q.tolist())]])
        assert side.min() > -0.003, f"frame {t}: cloth {-side.min() * 1000:.1f} mm inside the body"
    neck = stage.to_world(posed.joints[:, 12].astype(np.float64))
    assert (neck[:, 2] - cloth[:, :, 2].min(axis=1) > 0.2).all(), "the ends hang down the front"
    assert np.abs(np.diff(cloth, axis=0)).max() > 0.005, "the cloth moves with the body"
