"""The metric conventions pinned with values known by construction (tiny frames, a few frames each)."""
import math

import cv2
import numpy as np
import pytest

from matting import metrics as M

H, W = 32, 48
YY, XX = np.mgrid[:H, :W].astype(np.float32)


def disc(cx: float, cy: float = 16, r: float = 9, soft: float = 3) -> np.ndarray:
    """A disc with a soft (linear ramp) edge: fractional alpha on its rim."""
    return np.clip((r - np.hypot(XX - cx, YY - cy)) / soft + 0.5, 0, 1).astype(np.float32)


def moving(t: int, step: float = 2, start: float = 16, scale: float = 1.0) -> np.ndarray:
    return np.stack([disc(start + step * i) * scale for i in range(t)])


def cfg(**messddt) -> dict:
    c = M.default_config()
    c["messddt"].update(messddt)
    return c


def test_kernel_is_the_9x9_unit_norm_gaussian_derivative():
    kx, ky = M.gauss_kernels(1.4, 0.01)
    assert kx.shape == (9, 9) and np.allclose(ky, kx.T)
    assert np.isclose((kx ** 2).sum(), 1.0)
    # Odd along x (a derivative), even along y (a smoothing); negative on the right as -x*gauss(x).
    assert np.allclose(kx, -kx[:, ::-1]) and np.allclose(kx, kx[::-1, :]) and kx[4, 5] < 0
    # Down a column the profile is the Gaussian: centre row over its neighbour is exp(1 / (2 sigma^2)).
    assert np.isclose(kx[4, 5] / kx[3, 5], math.exp(1 / (2 * 1.4 ** 2)))


def test_identical_inputs_score_zero_everywhere():
    g = moving(3)
    fgr = np.random.default_rng(0).random((3, H, W, 3), dtype=np.float32)
    hair = (g > 0.5).astype(np.float32)
    for protocol in ("lr", "hr"):
        out = M.clip_metrics(g, g.copy(), fgr, fgr.copy(), hair, protocol=protocol)
        assert set(out) == set(M.metric_names(protocol, M.check_config(None), fgr=True, hair=True))
        assert all(np.all(v == 0) for v in out.values()), out


def test_constant_offset_gives_mad_c_mse_c2_and_no_temporal_error():
    c = 0.125
    g = moving(4, scale=0.8)
    out = M.clip_metrics(g + c, g)
    assert out["pha_mad"] == pytest.approx(1e3 * c, rel=1e-5)
    assert out["pha_mse"] == pytest.approx(1e3 * c * c, rel=1e-5)
    # The offset does not change over time, and the squared error is the same everywhere it moves to.
    assert out["pha_dtssd"] == pytest.approx(0, abs=1e-4)
    assert out["pha_messddt"] == pytest.approx(0, abs=1e-4)


def test_flicker_gives_dtssd_c_per_frame_and_a_known_clip_mean():
    c, t = 0.1, 5
    g = moving(t, scale=0.9)
    p = g + c * (np.arange(t) % 2)[:, None, None].astype(np.float32)
    out = M.clip_metrics(p, g)
    assert out["pha_dtssd"][0] == 0
    assert out["pha_dtssd"][1:] == pytest.approx(1e2 * c, rel=1e-4)
    assert M.clip_means(out)["pha_dtssd"] == pytest.approx(1e2 * c * (t - 1) / t, rel=1e-4)
    # The squared error jumps between 0 and c^2 at every pixel, wherever the flow points.
    assert out["pha_messddt"][1:] == pytest.approx(1e3 * c * c, rel=1e-4)


def test_messddt_forgives_an_error_that_travels_with_the_subject():
    g = moving(4)
    p = np.stack([disc(19 + 2 * i) for i in range(4)])  # always 3 px ahead: a halo that moves with the disc
    out = M.clip_metrics(p, g)
    assert out["pha_dtssd"][1:].min() > 1  # the frame difference alone calls it temporal error
    still = [M.messddt(p[i - 1], p[i], g[i - 1], g[i], np.zeros((H, W, 2), np.float32)) for i in range(1, 4)]
    assert min(still) > 10 and out["pha_messddt"][1:].max() < 0.05 * min(still)


def test_messddt_unknown_region_ignores_flicker_inside_the_solid_subject():
    g = np.stack([disc(24, r=12)] * 3)
    p = g.copy()
    p[1, 14:18, 22:26] -= 0.5  # a blink deep inside the alpha=1 core
    all_ = M.clip_metrics(p, g, cfg=cfg(region="all"))["pha_messddt"]
    band = M.clip_metrics(p, g, cfg=cfg(region="unknown", unknown_dilation=1))["pha_messddt"]
    assert all_[1:] == pytest.approx(1e3 * 16 * 0.25 / (H * W), rel=1e-3) and np.all(band == 0)


def test_grad_of_a_one_pixel_shift_is_the_same_left_or_right():
    step = np.zeros((H, W), np.float32)
    step[:, W // 2:] = 1
    left, right = np.roll(step, -1, axis=1), np.roll(step, 1, axis=1)
    left[:, -1] = right[:, -1] = 1  # keep the replicated borders as in the original
    left[:, 0] = right[:, 0] = 0
    for protocol in ("lr", "hr"):
        a = M.clip_metrics(left[None], step[None], protocol=protocol)["pha_grad"][0]
        b = M.clip_metrics(right[None], step[None], protocol=protocol)["pha_grad"][0]
        assert a > 0 and a == pytest.approx(b, rel=1e-5)


def test_lr_grad_normalises_the_alpha_maps_as_rvm_does():
    """RVM's evaluate_lr.py min-max normalises the two ALPHA maps, then takes their gradients; the
    values below hold by construction under that convention and not under normalising the
    gradient-magnitude maps instead."""
    step = np.zeros((H, W), np.float32)
    step[:, W // 2:] = 1
    shifted = np.roll(step, 2, axis=1)
    shifted[:, :2] = 0

    def grad(p, g, protocol):
        return M.clip_metrics(p[None], g[None], protocol=protocol)["pha_grad"][0]

    # Both maps already span [0, 1]: normalising the alphas changes nothing, so lr equals hr.
    # (Normalising the gradient maps would divide each by its peak, about 0.2 here, and differ.)
    assert grad(shifted, step, "lr") > 0
    assert grad(shifted, step, "lr") == pytest.approx(grad(shifted, step, "hr"), rel=1e-6)
    # A prediction that is an affine copy of the truth normalises to the truth: lr Grad is 0.
    assert grad(0.25 + 0.5 * step, step, "lr") == pytest.approx(0.0, abs=1e-9)
    assert grad(0.25 + 0.5 * step, step, "hr") > 0.01
    # Low contrast or an offset leaves lr unchanged; hr sees errors 0.3x as large.
    low = 0.3
    assert grad(low * shifted + 0.5, low * step, "lr") == pytest.approx(grad(shifted, step, "lr"), rel=1e-5)
    assert grad(low * shifted, low * step, "hr") == pytest.approx(low ** 2 * grad(shifted, step, "hr"), rel=1e-4)
    # The same number as RVM's recipe written out: normalise, Gaussian-derivative filter, squared sum / 1000.
    kx, ky = M.gauss_kernels(1.4, 0.01)
    pred = 0.1 + 0.7 * shifted + 0.05 * np.sin(np.arange(W, dtype=np.float32))[None, :]

    def mag(a):
        n = cv2.normalize(a, None, 1.0, 0.0, cv2.NORM_MINMAX)
        return np.sqrt(cv2.filter2D(n, -1, kx, borderType=cv2.BORDER_REPLICATE) ** 2
                       + cv2.filter2D(n, -1, ky, borderType=cv2.BORDER_REPLICATE) ** 2).astype(np.float32)
    assert grad(pred, step, "lr") == pytest.approx(((mag(step) - mag(pred)) ** 2).sum() / 1000, rel=1e-6)


def test_conn_uses_float32_thresholds_like_the_reference():
    g = np.zeros((H, W), np.float32)
    p = g.copy()
    g[8:24, 8:40] = np.float32(153) / 255  # alpha 153/255: exactly at the 0.6 threshold
    p[8:24, 8:40] = np.float32(204) / 255
    steps = np.arange(0, 1.1, 0.1)
    assert not np.float64(153) / 255 >= steps[6]  # float64 would put the pixel below 0.6 ...
    assert np.float32(153) / np.float32(255) >= np.float32(steps[6])  # ... float32 puts it at 0.6
    # At 0.6 both are in the one component, so the round-down level is 0.6: phi(g) = 1, phi(p) = 1 - 0.2.
    # (With float64 thresholds it would be 0.5 and phi(p) = 1 - 0.3.)
    expected = 1e-3 * 16 * 32 * (204 - 153) / 255
    assert M.connectivity(p, g, 0.1, 0.15) == pytest.approx(expected, rel=1e-4)


def test_conn_counts_what_is_cut_off_from_the_largest_component():
    g = np.zeros((H, W), np.float32)
    g[4:20, 4:20] = 1
    p = g.copy()
    p[4:20, 11] = 0  # the prediction splits the square: the smaller half falls out of the largest component
    # The right part (8 columns) is the largest component at every threshold: level 1, phi 1 on both sides.
    # The left part (7 columns) drops out at the first threshold: level 0, g = p = 1, phi 0 on both sides.
    # The cut column: level 0, g = 1 gives phi 0 but p = 0 gives phi 1: 16 pixels of error 1.
    assert M.connectivity(p, g, 0.1, 0.15) == pytest.approx(1e-3 * 16, rel=1e-5)
    assert M.connectivity(g, g, 0.1, 0.15) == 0


def test_conn_of_a_figure_does_not_depend_on_where_it_stands_or_on_empty_margins():
    """Conn labels only the box the last threshold's pixels span: the same figure shifted, or padded
    with empty pixels, or with a lone far pixel widening that box, scores the same."""
    rng = np.random.default_rng(0)
    g = np.clip(rng.normal(0.5, 0.4, (12, 14)), 0, 1).astype(np.float32)
    g[4:8, 3:11] = 1   # a largest component on the top levels, with ties and islands below
    p = np.clip(g + rng.normal(0, 0.2, g.shape), 0, 1).astype(np.float32)
    base = M.connectivity(p, g, 0.1, 0.15)
    for top, left in ((0, 0), (5, 0), (0, 9), (7, 3)):
        pad = lambda a: np.pad(a, ((top, 3), (left, 2)))  # noqa: E731
        assert M.connectivity(pad(p), pad(g), 0.1, 0.15) == pytest.approx(base, abs=1e-7)
    far_g, far_p = np.pad(g, ((0, 9), (0, 9))), np.pad(p, ((0, 9), (0, 9)))
    far_g[-1, -1] = far_p[-1, -1] = 0.55   # a one-pixel island: drops out of the largest at 0.1
    one = M.connectivity(far_p, far_g, 0.1, 0.15)
    assert one == pytest.approx(base, abs=1e-6)   # its phi is 1 - 0.55 on both sides: no error


def test_spreadsheet_averaging_weighs_every_clip_the_same():
    short = M.clip_means(M.clip_metrics(moving(2, scale=0.5) + 0.1, moving(2, scale=0.5)))
    long = M.clip_means(M.clip_metrics(moving(6, scale=0.5) + 0.3, moving(6, scale=0.5)))
    mean = M.dataset_means({"short": short, "long": long})
    assert mean["pha_mad"] == pytest.approx((100 + 300) / 2, rel=1e-4)  # not (2*100 + 6*300) / 8


def test_fgr_metrics_ignore_pixels_where_true_alpha_is_zero():
    g = disc(24)[None]
    true_fgr = np.full((1, H, W, 3), 0.5, np.float32)
    pred_fgr = np.where((g > 0)[..., None], 0.5 + 0.25, 0.0).astype(np.float32)  # wrong by 0.5 outside anyway
    out = M.clip_metrics(g, g, pred_fgr, true_fgr)
    assert out["fgr_mad"][0] == pytest.approx(250, rel=1e-5)
    assert out["fgr_mse"][0] == pytest.approx(1e3 * 0.0625, rel=1e-5)


def test_hair_metrics_cover_the_dilated_hair_only():
    g = np.zeros((2, H, W), np.float32)
    hair = np.zeros_like(g)
    hair[0, 16, 20] = 0.3  # frame 1 has no hair at all
    p = g.copy()
    p[:, 16, 24] = 0.5  # 4 px from the hair pixel
    wide = M.clip_metrics(p, g, true_hair=hair, cfg={**cfg(), "hair": {"dilation": 5}})
    narrow = M.clip_metrics(p, g, true_hair=hair, cfg={**cfg(), "hair": {"dilation": 2}})
    area = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11)).sum()  # pixels within radius 5 of the hair
    assert wide["hair_mad"][0] == pytest.approx(1e3 * 0.5 / area, rel=1e-5)
    assert wide["hair_grad"][0] > 0 and narrow["hair_mad"][0] == 0
    assert math.isnan(wide["hair_mad"][1]) and M.clip_means(wide)["hair_mad"] == wide["hair_mad"][0]


def test_hr_protocol_has_no_conn_and_bad_config_is_named():
    assert "pha_conn" not in M.clip_metrics(moving(2), moving(2), protocol="hr")
    with pytest.raises(ValueError, match="unknown key"):
        M.check_config({**cfg(), "grad": {"sigma": 1.4, "eps": 0.01, "size": 9}})
    with pytest.raises(ValueError, match="metrics.hair.dilation must be a non-negative integer"):
        M.check_config({**cfg(), "hair": {"dilation": -1}})
    with pytest.raises(ValueError, match="protocol"):
        M.ClipScorer("4k")


def test_a_matte_for_one_of_several_people_splits_its_error_between_the_others_and_the_rest():
    """MaGGIe's split: a matte that also takes in the other person errs on their pixels only."""
    target, other = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    target[:, :10], other[:, -10:] = 1.0, 1.0
    leaky = np.maximum(target, other)            # everyone's alpha, where the target's was asked for
    out = M.ClipScorer().add(leaky, target, true_others=other)
    assert out["others_mad"] == pytest.approx(1e3) and out["target_mad"] == 0 and out["pha_mad"] > 0
    clean = M.ClipScorer().add(target, target, true_others=other)
    assert clean["others_mad"] == 0 and clean["target_mad"] == 0
    assert "others_mad" not in M.ClipScorer().add(target, target)   # a clip of one person has no split
