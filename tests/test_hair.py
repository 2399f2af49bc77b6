import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from assets import hair
from core.conf import load as load_conf

AXES = np.array([0.075, 0.11, 0.095])    # head ellipsoid semi-axes (x, y, z), metres
CENTER = np.array([0.0, 1.6, 0.0])


@pytest.fixture(scope="module")
def head():
    """An ellipsoid head; the scalp is its top cap plus the back of the head (not the face)."""
    sphere = trimesh.creation.icosphere(subdivisions=4)
    unit = sphere.vertices
    verts = unit * AXES + CENTER
    keep = (unit[:, 1] > 0.2) | ((unit[:, 1] > -0.3) & (unit[:, 2] < -0.2))
    keep &= ~((unit[:, 2] > 0.6) & (unit[:, 1] < 0.5))
    faces = sphere.faces[keep[sphere.faces].all(axis=1)]
    used = np.unique(faces)
    remap = np.full(len(verts), -1)
    remap[used] = np.arange(len(used))
    return verts[used], remap[faces], verts


def params(**over):
    """Every grow param; the scalp maps flat, no flyaways, fringe, cut or tie unless asked."""
    p = {
        "n_strands": 3000, "points_per_strand": 16, "length": 0.25, "length_jitter": 0.1,
        "gravity": 40.0, "curl_radius": 0.0, "curl_frequency": 0.0, "curl_jitter": 0.1,
        "curl_start": 0.15, "frizz": 0.001, "clump": 0.3, "clump_shape": 1.5, "n_clumps": 200,
        "root_lift": 0.5, "comb_back": 0.8, "part_strength": 0.3, "part_x": 0.0,
        "comb_follow": 25.0, "root_tilt": 10.0,
        "root_diameter_um": 70.0, "diameter_sigma": 0.2, "diameter_min_um": 30.0, "diameter_max_um": 150.0,
        "tip_ratio": 0.3, "taper_start": 0.8,
        "hairline_width": 0.012, "hairline_density": 1.0, "hairline_length": 1.0, "crown_density": 1.0,
        "crown_radius": 0.03, "nape_length": 1.0, "nape_height": 0.05,
        "flyaway_share": 0.0, "flyaway_reach": 0.03, "flyaway_length": 1.15,
        "fringe": 0, "fringe_depth": 0.045, "fringe_length": 0.09, "cut_below": 0.0, "cut_jitter": 0.004,
        "tie": "none", "tie_elevation": 0.0, "tie_offset": 0.008, "tail_spread": 0.08, "tail_gravity": 12.0,
        "bun_radius": 0.03,
        "collision_margin": 0.003, "collision_bins": 40, "body_margin": 0.004, "body_reach": 0.05,
    }
    p.update(over)
    return p


def grow(*args, **kw):
    g = hair.grow(*args, **kw)
    return g.points, g.radius


def arc_lengths(pts):
    return np.linalg.norm(np.diff(pts, axis=1), axis=-1).sum(axis=1)


def ellipsoid_radius(pts):
    return np.linalg.norm((pts - CENTER) / AXES, axis=-1)


def test_shapes_and_dtypes(head):
    pts, rad = grow(*head, params(n_strands=1234, points_per_strand=9), seed=0)
    assert pts.shape == (1234, 9, 3) and pts.dtype == np.float32
    assert rad.shape == (1234, 9) and rad.dtype == np.float32
    assert np.isfinite(pts).all()


def test_deterministic_for_seed_and_seeds_differ(head):
    a, ra = grow(*head, params(), seed=0)
    b, rb = grow(*head, params(), seed=0)
    c, _ = grow(*head, params(), seed=1)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ra, rb)
    assert np.abs(a - c).mean() > 1e-3


def test_roots_on_scalp(head):
    sv, sf, hv = head
    pts, _ = grow(sv, sf, hv, params(n_strands=6000), seed=2)
    roots = pts[:, 0]
    # On the scalp mesh (flat triangles lie a hair inside the curved ellipsoid).
    assert np.abs(ellipsoid_radius(roots) - 1).max() < 0.02
    assert (roots[:, 1] > CENTER[1] - 0.3 * AXES[1] - 1e-3).all()
    # Area weighting: the share of roots on each half of the scalp follows the area.
    tri = sv[sf]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    front_area = area[tri.mean(axis=1)[:, 2] > 0].sum() / area.sum()
    front_roots = (roots[:, 2] > 0).mean()
    assert abs(front_roots - front_area) < 0.03


def test_roots_are_area_weighted(head):
    # Two triangles over the crown, one four times the area of the other.
    top = CENTER + [0, AXES[1] + 0.001, 0]
    sv = top + np.array([[0, 0, 0], [0.02, 0, 0], [0, 0, 0.02], [-0.04, 0, 0], [0, 0, -0.04]])
    sf = np.array([[0, 1, 2], [0, 3, 4]])
    pts, _ = grow(sv, sf, head[2], params(n_strands=5000, length=0.05), seed=9)
    big = (pts[:, 0, 0] < 0) & (pts[:, 0, 2] < 0)
    assert abs(big.mean() - 0.8) < 0.03


@pytest.mark.parametrize("length", [0.05, 0.2, 0.45])
def test_lengths_follow_params(head, length):
    pts, _ = grow(*head, params(length=length, length_jitter=0.15), seed=3)
    arc = arc_lengths(pts)
    assert abs(arc.mean() / length - 1) < 0.05
    assert arc.std() / arc.mean() > 0.08          # jitter shows
    exact, _ = grow(*head, params(length=length, length_jitter=0.0, clump=0.0,
                                       frizz=0.0), seed=3)
    arc0 = arc_lengths(exact)
    # Without jitter every strand keeps its length; only collision pushes may stretch a little.
    assert np.median(np.abs(arc0 / length - 1)) < 1e-3
    assert np.abs(arc0 / length - 1).max() < 0.1


def test_hair_falls_under_gravity(head):
    pts, _ = grow(*head, params(length=0.4), seed=4)
    assert (pts[:, -1, 1] < pts[:, 0, 1]).mean() > 0.95
    stiff, _ = grow(*head, params(length=0.4, gravity=0.0, comb_follow=0.0), seed=4)
    assert pts[:, -1, 1].mean() < stiff[:, -1, 1].mean() - 0.1


def test_curly_strands_are_more_tortuous(head):
    def tortuosity(p):
        pts, _ = grow(*head, p, seed=5)
        return np.median(arc_lengths(pts) / np.linalg.norm(pts[:, -1] - pts[:, 0], axis=1))
    straight = tortuosity(params(frizz=0.0, clump=0.0, points_per_strand=24))
    curly = tortuosity(params(frizz=0.0, clump=0.0, points_per_strand=24,
                              curl_radius=0.01, curl_frequency=10.0))
    assert curly > straight + 0.15


def test_no_point_inside_the_head(head):
    for p in (params(), params(length=0.5, gravity=70.0, comb_back=-0.5),
              params(curl_radius=0.012, curl_frequency=12.0, points_per_strand=28, frizz=0.004),
              params(length=0.06, points_per_strand=10, gravity=10.0)):
        pts, _ = grow(*head, p, seed=6)
        assert ellipsoid_radius(pts[:, 1:]).min() > 1.0


def test_clumping_draws_tips_together(head):
    def tip_spacing(clump):
        # Equal lengths: clumped strands of one length end at the same place on their guide.
        pts, _ = grow(*head, params(clump=clump, n_clumps=100, frizz=0.0,
                                         length_jitter=0.0), seed=7)
        return np.median(cKDTree(pts[:, -1]).query(pts[:, -1], k=6)[0][:, 5])
    assert tip_spacing(0.9) < 0.6 * tip_spacing(0.0)


def test_strand_diameters_are_human_and_taper(head):
    _, rad = grow(*head, params(root_diameter_um=70.0, diameter_sigma=0.2, tip_ratio=0.3,
                                taper_start=0.8), seed=8)
    dia = 2e6 * rad[:, 0]
    assert 30.0 <= dia.min() and dia.max() <= 150.0
    assert abs(np.mean(dia) / 70.0 - 1) < 0.03 and 0.15 < np.std(np.log(dia)) < 0.25
    np.testing.assert_allclose(rad[:, -1] / rad[:, 0], 0.3, rtol=1e-5)
    assert (np.diff(rad, axis=1) <= 0).all()
    np.testing.assert_array_equal(rad[:, 0], rad[:, rad.shape[1] // 2])   # the shaft is even


def test_bad_input_is_named(head):
    sv, sf, hv = head
    bad = params()
    del bad["gravity"]
    with pytest.raises(ValueError, match="gravity"):
        grow(sv, sf, hv, bad, seed=0)
    with pytest.raises(ValueError, match="tie must be one of"):
        grow(sv, sf, hv, params(tie="braid"), seed=0)
    with pytest.raises(ValueError, match="scalp_faces"):
        grow(sv, sf + len(sv), hv, params(), seed=0)
    with pytest.raises(ValueError, match="length"):
        grow(sv, sf, hv, params(length=-0.1), seed=0)


def test_sample_params_resolves_every_style(head):
    cfg = load_conf("hair/default")
    seen = set()
    for seed in range(60):
        p = hair.sample_params(seed, cfg)
        seen.add(p["style"])
        assert set(hair.GROW_KEYS) <= set(p)
        assert all(isinstance(v, (int, float)) for k, v in p.items() if k not in ("style", "tie"))
        assert all(isinstance(p[k], int) for k in ("n_strands", "points_per_strand", "n_clumps", "fringe"))
        assert p["tie"] in hair.TIES and (p["tie"] != "none") == (p["style"] == "tied")
    assert seen == set(cfg["styles"])
    assert hair.sample_params(3, cfg) == hair.sample_params(3, cfg)
    # A resolved style grows; strand_scale thins every style alike.
    cfg["style_weights"] = {"curly": 1.0}
    p = hair.sample_params(0, cfg)
    assert p["style"] == "curly" and p["curl_radius"] > 0
    full = p["n_strands"]
    cfg["strand_scale"] = 0.01
    p = hair.sample_params(0, cfg)
    assert p["n_strands"] == round(full * 0.01)
    pts, _ = grow(*head, p, seed=0)
    assert pts.shape == (p["n_strands"], p["points_per_strand"], 3)


def test_colour_shares_resemble_people():
    cfg = load_conf("hair/default")
    draws = [hair.sample(cfg, s)["colour"] for s in range(600)]
    names = [d["name"] for d in draws]
    natural = cfg["colour"]["natural"]
    total = sum(v["share"] for v in natural.values())
    dyed = np.mean([d["kind"] == "dyed" for d in draws])
    assert abs(dyed - cfg["colour"]["dyed_share"]) < 0.03
    for name in ("black", "brown", "blond"):
        want = (1 - cfg["colour"]["dyed_share"]) * natural[name]["share"] / total
        assert abs(names.count(name) / len(names) - want) < 0.05
    grey = next(d for d in draws if d["name"] == "grey")
    m = hair.strand_melanin(grey, 20000, seed=1)
    assert abs((m == 0).mean() - grey["unpigmented_share"]) < 0.02     # salt and pepper, not flat grey
    black = next(d for d in draws if d["name"] == "black")
    mb = hair.strand_melanin(black, 20000, seed=1)
    assert (mb > 0).all() and 0.02 < np.std(mb) / np.mean(mb) < 0.2


def test_sample_params_rejects_bad_config():
    cfg = load_conf("hair/default")
    cfg["style_weights"] = {"mohawk": 1.0}
    with pytest.raises(ValueError, match="mohawk"):
        hair.sample_params(0, cfg)
    cfg = load_conf("hair/default")
    cfg["styles"]["bob"]["length"] = [0.3, 0.1]
    cfg["style_weights"] = {"bob": 1.0}
    with pytest.raises(ValueError, match="bob.length"):
        hair.sample_params(0, cfg)


def _near_rim(sv, sf, roots, within):
    from assets.hair.scalp import boundary_vertices
    rim = sv[boundary_vertices(sf)]
    return cKDTree(rim).query(roots)[0] < within


def test_scalp_maps_thin_and_shorten_the_hairline(head):
    sv, sf, hv = head
    flat = hair.grow(sv, sf, hv, params(n_strands=8000), seed=11)
    mapped = hair.grow(sv, sf, hv, params(n_strands=8000, hairline_density=0.2, hairline_length=0.5,
                                          length_jitter=0.0), seed=11)
    rim_flat = _near_rim(sv, sf, flat.points[:, 0], 0.006).mean()
    rim_mapped = _near_rim(sv, sf, mapped.points[:, 0], 0.006).mean()
    assert rim_mapped < 0.6 * rim_flat, (rim_mapped, rim_flat)
    at_rim = _near_rim(sv, sf, mapped.points[:, 0], 0.003)
    arc = arc_lengths(mapped.points)
    assert np.median(arc[at_rim]) < 0.8 * np.median(arc[~_near_rim(sv, sf, mapped.points[:, 0], 0.02)])


def test_flyaways_leave_the_mass(head):
    g = hair.grow(*head, params(n_strands=6000, flyaway_share=0.05, flyaway_reach=0.03), seed=12)
    assert abs(g.flyaway.mean() - 0.05) < 0.015
    r = ellipsoid_radius(g.points[:, -1])
    assert np.median(r[g.flyaway]) > np.median(r[~g.flyaway]) + 0.1


def test_fringe_falls_over_the_forehead(head):
    with_fringe = hair.grow(*head, params(n_strands=6000, fringe=1, fringe_length=0.08), seed=13)
    without = hair.grow(*head, params(n_strands=6000, fringe=0), seed=13)
    front = (with_fringe.points[:, 0, 2] > CENTER[2] + 0.4 * AXES[2]) & (with_fringe.points[:, 0, 1] > CENTER[1])
    assert front.sum() > 50
    tips, tips0 = with_fringe.points[front, -1], without.points[front, -1]
    assert np.median(tips[:, 2]) > CENTER[2] + 0.6 * AXES[2] > np.median(tips0[:, 2])
    assert np.median(tips[:, 1] - with_fringe.points[front, 0, 1]) < -0.02   # it falls


@pytest.mark.parametrize("tie", ["ponytail", "bun"])
def test_tied_hair_gathers_at_the_tie(head, tie):
    loose = hair.grow(*head, params(n_strands=4000, length=0.35, points_per_strand=28), seed=14)
    tied = hair.grow(*head, params(n_strands=4000, length=0.35, points_per_strand=28, tie=tie,
                                   tie_elevation=0.3), seed=14)
    spread = lambda p: np.linalg.norm(p - np.median(p, axis=0), axis=1).mean()  # noqa: E731
    assert spread(tied.points[:, -1]) < 0.6 * spread(loose.points[:, -1])
    assert np.median(tied.points[:, -1, 2]) < CENTER[2] - 0.8 * AXES[2]        # behind the head
    assert ellipsoid_radius(tied.points[:, 1:]).min() > 1.0


def test_blunt_cut_ends_strands_at_the_line(head):
    g = hair.grow(*head, params(n_strands=4000, length=0.4, cut_below=0.06, cut_jitter=0.002,
                                length_jitter=0.0), seed=15)
    line = CENTER[1] - 0.06
    assert np.percentile(g.points[:, -1, 1], 1) > line - 0.01
    assert np.median(arc_lengths(g.points)) < 0.3
