"""GVMPipeline: windows of any video length, latent cross-fade, resize/pad and back, diffusers folders."""
import json

import numpy as np
import pytest
import torch

from gvm_train.model import build_model
from gvm_train.model.objectives import sample_clean_latents
from gvm_train.pipeline import Geometry, GVMPipeline, crossfade_weights, window_starts
from core.cli import compose, to_container


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two busy cores wait on each other (see test_gvm_model)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "m"
    GVMPipeline.from_model(build_model(to_container(compose("finetune", ["model.seed=4"]))["model"])).save_pretrained(folder)
    return folder


def video(n, h=20, w=28, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("n,window,overlap", [(1, 8, 2), (8, 8, 2), (19, 8, 2), (30, 8, 0), (9, 4, 3)])
def test_window_starts_cover_every_frame_once_in_order(n, window, overlap):
    starts = window_starts(n, window, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert min(n, window) + starts[-1] == n                      # ends on the last frame, never past it
    covered = set().union(*(range(s, min(s + window, n)) for s in starts))
    assert covered == set(range(n))
    assert all(b - a <= window - overlap for a, b in zip(starts, starts[1:]))  # neighbours share >= overlap


def test_window_arguments_are_checked():
    for bad in ((10, 4, 4), (10, 0, 0), (10, 4, -1), (0, 4, 1)):
        with pytest.raises(ValueError):
            window_starts(*bad)


def test_crossfade_weights_ramp_across_the_overlap():
    w = crossfade_weights(8, 3)
    np.testing.assert_allclose(w, w[::-1])
    np.testing.assert_allclose(w[:4], [0.25, 0.5, 0.75, 1.0])
    # In a 3-frame overlap the outgoing and incoming weights always sum to 1.
    np.testing.assert_allclose(w[-3:] + w[:3], 1.0)
    np.testing.assert_array_equal(crossfade_weights(5, 0), np.ones(5))


def test_geometry_resizes_pads_and_restores():
    g = Geometry.plan(50, 70, 16, short_side=32, max_long_side=40)
    assert g.scaled == (29, 40) and g.padded == (32, 48)        # the long side cap wins over the short side
    x = g.to_model(np.zeros((50, 70, 3), np.uint8))
    assert tuple(x.shape) == (3, 32, 48)
    ramp = np.tile(np.linspace(0, 1, 48, dtype=np.float32), (32, 1))
    back = g.from_model(ramp)
    assert back.shape == (50, 70) and back[:, 0].max() < 0.05 and back[:, -1].min() > 0.75
    with pytest.raises(ValueError, match="frame of size"):
        g.to_model(np.zeros((40, 70, 3), np.uint8))


@pytest.mark.slow
@pytest.mark.parametrize("n", [3, 8, 19])
def test_any_length_gives_one_alpha_per_frame_at_input_size(saved, n):
    pipe = quiet(GVMPipeline.from_pretrained(saved))
    v = video(n, 22, 30)
    a = pipe(v, window=8, overlap=2).alphas
    assert a.shape == (n, 22, 30) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    np.testing.assert_array_equal(a, pipe(v, window=8, overlap=2).alphas)           # same seed, same alpha
    streamed = np.stack(list(pipe.stream(iter(v), n, window=8, overlap=2)))           # frames from an iterator
    np.testing.assert_array_equal(a, streamed)
    assert not np.array_equal(a, pipe(v, window=8, overlap=2, seed=1).alphas)       # noise does matter


def test_a_video_shorter_than_said_is_an_error(saved):
    pipe = quiet(GVMPipeline.from_pretrained(saved))
    with pytest.raises(ValueError, match="ended after 5 of 9 frames"):
        list(pipe.stream(iter(video(5)), 9, window=4, overlap=1))


def test_noise_depends_on_the_absolute_frame_only():
    a = GVMPipeline._noise([3, 4], (4, 2, 2), seed=7)
    b = GVMPipeline._noise([1, 2, 3], (4, 2, 2), seed=7)
    torch.testing.assert_close(a[0, 0], b[0, 2], rtol=0, atol=0)
    assert not torch.equal(a[0, 0], a[0, 1])


def test_overlap_frames_are_latent_crossfades(saved):
    """Recompute two overlapping windows by hand: each output frame is the decode of the
    weighted mean of the clean latents of the windows that cover it."""
    pipe = quiet(GVMPipeline.from_pretrained(saved, decode_chunk_size=1))  # one frame per decode: exact per frame
    m, n, window, overlap = pipe.model, 10, 6, 2
    v = video(n, 16, 16)
    got = pipe(v, window=window, overlap=overlap, decode_context=0, seed=3).alphas
    rgb = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in v])[None]
    starts = window_starts(n, window, overlap)
    assert starts == [0, 4]
    w = torch.from_numpy(crossfade_weights(window, overlap))
    shape = m.alpha_shape(m.encode(rgb[:, :1]))[2:]   # 16x16 frames: (16, 4, 4) latents per frame
    acc, tot, first = torch.zeros(n, *shape), torch.zeros(n), None
    with torch.no_grad():
        for s in starts:
            idx = list(range(s, s + window))
            clean = sample_clean_latents(m, m.encode(rgb[:, idx]), noise=GVMPipeline._noise(idx, shape, 3))[0]
            first = clean if first is None else first
            acc[idx] += w[:, None, None, None] * clean
            tot[idx] += w
        want = m.decode_alpha((acc / tot[:, None, None, None])[None])[0, :, 0].numpy()
        first_only = m.decode_alpha(first[None])[0, :, 0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    # Frames 4 and 5 are blends (the first window alone gives another alpha there); frames 0-3
    # belong to the first window only.
    np.testing.assert_allclose(got[:4], first_only[:4], atol=1e-5)
    assert np.abs(got[4:6] - first_only[4:6]).max() > 1e-4


@pytest.mark.slow
def test_pipeline_folder_round_trip(saved, tmp_path):
    pipe = quiet(GVMPipeline.from_pretrained(saved))
    pipe.save_pretrained(tmp_path / "again")
    index = json.loads((tmp_path / "again" / "model_index.json").read_text())
    assert index["_class_name"] == "GVMPipeline" and index["gvm"]["preset"] == "tiny"
    back = quiet(GVMPipeline.from_pretrained(tmp_path / "again"))
    v = video(9)
    np.testing.assert_array_equal(back(v, window=4).alphas, pipe(v, window=4).alphas)
    one = quiet(GVMPipeline.from_pretrained(saved, num_steps=1))                    # saved settings overridable
    assert one.model.config.num_steps == 1 and not np.array_equal(one(v, window=4).alphas, pipe(v, window=4).alphas)


def test_a_residual_model_corrects_its_guide_at_the_inputs_own_size():
    """The correction is made at the model's working size and added to the guide at full size: a
    fresh residual model gives back a fine guide exactly (no detail lost to the resize), and a
    correction shows up smooth over it, the same on every frame's guide detail."""
    model = build_model(to_container(compose("finetune", ["model.gvm.mask_guided=true", "model.gvm.mask_residual=true",
                                                          "model.gvm.objective=one_step"]))["model"])
    pipe = quiet(GVMPipeline.from_model(model))
    n, h, w = 5, 40, 56
    rng = np.random.default_rng(1)
    guide = (rng.random((n, h, w)) < 0.5).astype(np.float32) * rng.random((n, h, w)).astype(np.float32)
    out = np.stack(list(pipe.stream(iter(video(n, h, w)), n, masks=iter(guide), window=4, overlap=1, short_side=16)))
    np.testing.assert_allclose(out, guide, atol=1e-5)   # pixel noise a 16 px model could never hold
    with torch.no_grad():   # a UNet that now corrects: output = guide + a smooth correction
        model.unet.conv_out.bias.fill_(0.05)
    out = np.stack(list(pipe.stream(iter(video(n, h, w)), n, masks=iter(guide), window=4, overlap=1, short_side=16)))
    delta = out - guide
    inside = (guide > 0.1) & (guide < 0.9)                            # not clipped
    assert np.abs(delta[inside]).mean() > 1e-3                        # it did change ...
    pairs = inside[:, :, 1:] & inside[:, :, :-1]
    smooth = lambda a: np.abs(np.diff(a, axis=2))[pairs].mean()  # noqa: E731
    assert smooth(delta) < 0.1 * smooth(guide)                        # ... by a correction made at 16 px
