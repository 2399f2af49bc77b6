"""The generative matting model, its objectives and training regimes, on real tiny models (CPU)."""
import copy
import json
import shutil

import pytest
import torch
from diffusers import EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler
from diffusers.models.resnet import SpatioTemporalResBlock
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel

from gvm_train.pipeline import GVMPipeline
from gvm_train.model import objectives as obj
from gvm_train.model import build_model
from gvm_train.model.regimes import (apply_regime, classify_parameters, has_lora, load_lora, merge_lora,
                               save_lora, temporal_modules)
from core.cli import compose, to_container

H = 64  # pixels; 8x8 latents


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # With another process busy on both cores, torch's two OpenMP threads wait on each other:
    # a tiny UNet step measured 2.5-9 s with two threads and 0.07 s with one.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def conf():
    """The `finetune` config's model section for a list of overrides, as a plain dict."""
    cache = {}

    def make(*overrides: str) -> dict:
        if overrides not in cache:
            cache[overrides] = to_container(compose("finetune", list(overrides)))["model"]
        return copy.deepcopy(cache[overrides])
    return make


def clip(frames=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(1, frames, 3, H, H, generator=g)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, H), torch.linspace(-1, 1, H), indexing="ij")
    alpha = torch.stack([torch.sigmoid((0.5 - ((xx - 0.1 * i) ** 2 + yy ** 2).sqrt()) * 20) for i in range(frames)])
    return rgb, alpha[None, :, None]


def unet_out(model, rgb, t=500.0):
    with torch.no_grad():
        z = model.encode(rgb)
        return model(torch.ones_like(z) * 0.3, z, t)


# -- model --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_tiny_forward_shapes_and_gvm_conditioning(conf):
    m = build_model(conf())
    rgb, alpha = clip(frames=4)
    z = m.encode(rgb)
    assert z.shape == (1, 4, 4, H // 8, H // 8)
    assert m.unet.config.in_channels == 8 and m.scaling_factor == 0.18215
    assert m.encode_alpha(alpha).shape == z.shape
    with torch.no_grad():
        out = m(torch.randn_like(z), z, 999)
        assert out.shape == z.shape and torch.isfinite(out).all()
        a = m.decode_alpha(z)
    assert a.shape == (1, 4, 1, H, H) and 0 <= a.min() and a.max() <= 1
    with torch.no_grad():  # chunked decoding: 3 + 1 frames
        assert build_model(conf("model.gvm.decode_chunk_size=3")).decode_alpha(z).shape == a.shape
    assert not any(p.requires_grad for p in m.vae.parameters())
    m.train()
    assert m.unet.training and not m.vae.training
    # Seeded: the same config builds the same weights.
    torch.testing.assert_close(unet_out(build_model(conf()), rgb), unet_out(m, rgb), rtol=0, atol=0)
    with pytest.raises(ValueError, match="video"):
        m.encode(torch.rand(1, 4, 3, 60, 60))


def test_bad_settings_name_the_key(conf):
    with pytest.raises(ValueError, match="model.preset"):
        build_model({**conf(), "preset": "huge"})
    with pytest.raises(ValueError, match="model.gvm.added_time_ids"):
        build_model(conf("model.gvm.added_time_ids=[1,2]"))
    with pytest.raises(ValueError, match="model.gvm.sigmas"):
        build_model(conf("model.gvm.sigmas=[0.5,1.0]"))
    with pytest.raises(ValueError, match="model.gvm.objective"):
        build_model(conf("model.gvm.objective=ddpm"))
    with pytest.raises(ValueError, match="loss: unknown"):
        obj.loss_settings({"l2": 1.0})


@pytest.mark.slow
def test_save_load_round_trip_identical(conf, tmp_path):
    m = build_model(conf("model.seed=3", "model.gvm.objective=one_step"))
    rgb, _ = clip(frames=4)
    GVMPipeline.from_model(m).save_pretrained(tmp_path / "m")
    for sub in ("unet/config.json", "vae/config.json", "scheduler/scheduler_config.json", "model_index.json"):
        assert (tmp_path / "m" / sub).is_file()
    index = json.loads((tmp_path / "m/model_index.json").read_text())
    assert index["_class_name"] == "GVMPipeline" and index["gvm"]["objective"] == "one_step"
    assert index["unet"] == ["diffusers", "UNetSpatioTemporalConditionModel"]
    back = GVMPipeline.from_pretrained(tmp_path / "m").model
    assert back.config.objective == "one_step" and back.config.added_time_ids == m.config.added_time_ids
    torch.testing.assert_close(unet_out(back, rgb), unet_out(m, rgb), rtol=0, atol=0)
    torch.testing.assert_close(obj.predict_alpha(back, rgb), obj.predict_alpha(m, rgb), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        GVMPipeline.from_pretrained(tmp_path / "m" / "unet").model
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GVMPipeline.from_pretrained(tmp_path / "nowhere").model


def _svd_folder(conf, root):
    """A folder in the layout of a Stable Video Diffusion snapshot, from tiny components: stock
    SVD's EDM scheduler, and the VAE only as an fp16-variant file as some snapshots ship it."""
    m = build_model(conf("model.seed=5"))
    m.unet.save_pretrained(root / "unet")
    m.vae.save_pretrained(root / "vae", variant="fp16")
    EulerDiscreteScheduler(prediction_type="v_prediction").save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableVideoDiffusionPipeline"}))
    return m


@pytest.mark.slow
def test_svd_layout_folder_loads_through_preset_and_trains_a_step(conf, tmp_path):
    root = tmp_path / "svd"
    src = _svd_folder(conf, root)
    m = build_model(conf("model=svd", f"model.path={root}"))
    assert m.config.preset == "svd"
    assert isinstance(m.scheduler, FlowMatchEulerDiscreteScheduler)  # EDM scheduler replaced
    rgb, alpha = clip(frames=4)
    torch.testing.assert_close(unet_out(m, rgb), unet_out(src, rgb), rtol=0, atol=0)
    params = apply_regime(m, "full")
    before = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=1e-3)
    out = obj.training_loss(m, {"rgb": rgb, "alpha": alpha}, conf("model=svd")["loss"],
                            generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    opt.step()
    assert torch.isfinite(out["loss"]) and {"latent", "l1", "laplacian"} <= set(out)
    assert any(not torch.equal(a, p) for a, p in zip(before, params))


def test_svd_missing_or_incomplete_folder_names_it(conf, tmp_path):
    with pytest.raises(ValueError, match="model.path is not set"):
        build_model(conf("model=svd"))
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_model(conf("model=svd", f"model.path={tmp_path / 'nowhere'}"))
    root = tmp_path / "svd"
    _svd_folder(conf, root)
    (root / "vae" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"vae/config.json is missing"):
        build_model(conf("model=svd", f"model.path={root}"))
    for f in (root / "unet").glob("diffusion_pytorch_model*"):
        f.unlink()
    with pytest.raises(FileNotFoundError, match=r"unet has no weights"):
        build_model(conf("model=svd", f"model.path={root}"))
    shutil.rmtree(root / "unet")
    with pytest.raises(FileNotFoundError, match=r"has no unet/ subfolder"):
        build_model(conf("model=svd", f"model.path={root}"))


# -- objectives -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_flow_matching_sampler_steps_and_scheduler_agreement(conf):
    m = build_model(conf())
    rgb, _ = clip(frames=4)
    for n in (1, 2, 3):
        a = obj.predict_alpha(m, rgb, num_steps=n, generator=torch.Generator().manual_seed(0))
        assert a.shape == (1, 4, 1, H, H) and a.min() >= 0 and a.max() <= 1
    assert obj.flow_sigmas(3) == [1.0, 1 - 1 / 3, 1 - 2 / 3]
    # The plain-torch Euler loop is the diffusers flow-matching scheduler's, timesteps included.
    z = m.encode(rgb)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = obj.sample_flow_matching(m, z, [1.0, 0.4], noise=noise)
        sched = FlowMatchEulerDiscreteScheduler(**conf()["scheduler"])
        sched.set_timesteps(sigmas=[1.0, 0.4])
        x = noise.clone()
        for t in sched.timesteps:
            x = sched.step(m(x, z, t.expand(1)), t, x).prev_sample
    torch.testing.assert_close(ours, x, rtol=1e-5, atol=1e-5)


def test_one_step_mode(conf):
    m = build_model(conf("model.gvm.objective=one_step"))
    rgb, alpha = clip(frames=4)
    z = m.encode(rgb)
    with torch.no_grad():
        clean = m(torch.zeros_like(z), z, 999)  # the released checkpoint's call
        a = obj.predict_alpha(m, rgb)
    torch.testing.assert_close(a, m.decode_alpha(clean), rtol=0, atol=0)
    assert a.shape == (1, 4, 1, H, H) and 0 <= a.min() and a.max() <= 1
    # The latent loss compares that output with the clean alpha latents directly.
    out = obj.training_loss(m, {"rgb": rgb, "alpha": alpha}, {**conf()["loss"], "l1": 0, "laplacian": 0, "gradient": 0})
    torch.testing.assert_close(out["latent"], torch.mean((clean - m.encode_alpha(alpha)) ** 2))


def test_pixel_losses_zero_equal_positive_else():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 1, 32, 32, generator=g)
    cfg = {"l1": 1.0, "laplacian": 1.0, "laplacian_levels": 4, "gradient": 1.0}
    for v in obj.pixel_losses(a, a.clone(), cfg).values():
        assert v.item() == 0
    for v in obj.pixel_losses(a, (a + 0.1 * torch.rand(a.shape, generator=g)).clamp(0, 1), cfg).values():
        assert v.item() > 1e-3
    # A gradient loss ignores a constant offset that L1 sees.
    assert obj.sobel_gradient_loss(a[0], a[0] + 0.3).item() < 1e-6 < obj.pixel_losses(a, a + 0.3, cfg)["l1"].item()


def test_laplacian_catches_high_frequency_a_blur_misses():
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    smooth = torch.linspace(0.2, 0.8, 32).expand(32, 32)[None, None].clone()
    checker = ((xx + yy) % 2).float()[None, None] * 2 - 1  # one-pixel detail, like hair strands
    noisy = smooth + 0.1 * checker
    blurred = torch.nn.functional.avg_pool2d
    assert torch.nn.functional.l1_loss(blurred(noisy, 2), blurred(smooth, 2)).item() < 1e-6
    assert obj.laplacian_pyramid_loss(noisy, smooth, levels=3).item() > 0.05
    bands = obj.laplacian_pyramid(smooth, levels=3)
    assert [b.shape[-1] for b in bands] == [32, 16, 8]


def test_pixel_losses_reach_the_unet_through_the_frozen_vae(conf):
    m = build_model(conf())
    apply_regime(m, "full")
    rgb, alpha = clip(frames=4)
    out = obj.training_loss(m, {"rgb": rgb, "alpha": alpha},
                            {**conf()["loss"], "latent": 0.0, "l1": 1.0, "laplacian": 0.0, "gradient": 0.0},
                            generator=torch.Generator().manual_seed(0))
    out["loss"].backward()
    assert set(out) == {"loss", "latent", "l1"}
    assert m.unet.conv_in.weight.grad is not None and m.unet.conv_in.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.vae.parameters())


# -- regimes ------------------------------------------------------------------------------------------
def test_spatial_regime_freezes_exactly_the_temporal_parameters(conf):
    m = build_model(conf())
    kinds = classify_parameters(m.unet)
    names = dict(m.unet.named_parameters())
    assert set(kinds) == set(names)  # every parameter classified
    temporal = {n for n, k in kinds.items() if k == "temporal"}
    # What a name filter on "temporal" alone would miss, and the type-based selection catches:
    missed = sorted(n for n in temporal if "temporal" not in n)
    assert any("time_mixer.mix_factor" in n for n in missed) and any("time_pos_embed" in n for n in missed)
    # Cross-check: on the stock UNet, temporal parts are exactly those with these names.
    markers = ("temporal_res_block.", "temporal_transformer_blocks.", "time_mixer.", "time_pos_embed.")
    assert temporal == {n for n in names if any(k in n for k in markers)}
    # And by structure: every spatio-temporal block's time-only parts are selected.
    found = {id(mod) for mod in temporal_modules(m.unet).values()}
    blocks = [mod for mod in m.unet.modules() if isinstance(mod, (SpatioTemporalResBlock, TransformerSpatioTemporalModel))]
    for mod in blocks:
        parts = ([mod.temporal_res_block, mod.time_mixer] if isinstance(mod, SpatioTemporalResBlock)
                 else [*mod.temporal_transformer_blocks, mod.time_mixer, mod.time_pos_embed])
        assert all(id(part) in found for part in parts)
    assert len(blocks) > 0 and len(found) == sum(2 if isinstance(b, SpatioTemporalResBlock)
                                                 else len(b.temporal_transformer_blocks) + 2 for b in blocks)
    trainable = apply_regime(m, {"name": "spatial"})
    assert {n for n, p in m.unet.named_parameters() if not p.requires_grad} == temporal
    assert len(trainable) == len(names) - len(temporal) > 0
    assert len(apply_regime(m, "full")) == len(names)
    with pytest.raises(ValueError, match="regime.name"):
        apply_regime(m, "temporal")


@pytest.mark.slow
def test_lora_save_load_merge_identical(conf, tmp_path):
    cfg = conf()
    rgb, _ = clip(frames=4)
    m = build_model(cfg)
    trainable = apply_regime(m, {"name": "lora", "lora": cfg["regime"]["lora"]})
    assert has_lora(m.unet) and trainable and all("lora_" in n for n, p in m.unet.named_parameters() if p.requires_grad)
    with torch.no_grad():  # as if trained: LoRA's B starts at zero, which would make this trivial
        for p in trainable:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.05)
    adapted = unet_out(m, rgb)
    assert not torch.allclose(adapted, unet_out(build_model(cfg), rgb))
    save_lora(m.unet, tmp_path / "lora")
    assert sorted(p.name for p in (tmp_path / "lora").iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]
    with pytest.raises(ValueError, match="LoRA"):
        GVMPipeline.from_model(m).save_pretrained(tmp_path / "refused")

    fresh = build_model(cfg)
    load_lora(fresh.unet, tmp_path / "lora")
    torch.testing.assert_close(unet_out(fresh, rgb), adapted, rtol=0, atol=0)

    merge_lora(fresh.unet)
    assert not has_lora(fresh.unet)
    assert set(dict(fresh.unet.named_parameters())) == set(dict(build_model(cfg).unet.named_parameters()))
    torch.testing.assert_close(unet_out(fresh, rgb), adapted, rtol=1e-5, atol=1e-5)
    GVMPipeline.from_model(fresh).save_pretrained(tmp_path / "merged")
    exported = GVMPipeline.from_pretrained(tmp_path / "merged").model
    torch.testing.assert_close(unet_out(exported, rgb), unet_out(fresh, rgb), rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="has no adapter_config.json"):
        load_lora(build_model(cfg).unet, tmp_path / "merged")


@pytest.mark.slow
def test_overfits_a_fixed_batch(conf):
    """30 steps on one batch, fixed flow time and noise, reduce the loss clearly and every term."""
    cfg = conf()
    m = build_model(cfg)
    rgb, alpha = clip(frames=4)
    with torch.no_grad():
        lat = m.encode_alpha(alpha)
        # The target is what the frozen VAE can reproduce: a random tiny VAE cannot decode a
        # matte faithfully, so raw alpha would leave a floor in the pixel terms.
        batch = {"rgb_latents": m.encode(rgb), "alpha_latents": lat, "alpha": m.decode_alpha(lat)}
    opt = torch.optim.AdamW(apply_regime(m, "full"), lr=1e-3)
    t, noise = torch.full((1,), 0.5), torch.randn(lat.shape, generator=torch.Generator().manual_seed(0))
    history = []
    for _ in range(30):
        out = obj.training_loss(m, batch, cfg["loss"], t=t, noise=noise)
        out["loss"].backward()
        opt.step()
        opt.zero_grad()
        history.append({k: v.detach().item() for k, v in out.items()})
    first, last = history[0], history[-1]
    assert all(torch.isfinite(torch.tensor(list(h.values()))).all() for h in history)
    # Measured: total 1.39 -> 0.17, latent 1.19 -> 0.05, l1 0.046 -> 0.031, laplacian 0.157 -> 0.089.
    assert last["loss"] < 0.25 * first["loss"] and last["latent"] < 0.1 * first["latent"], (first, last)
    for k in ("l1", "laplacian"):
        assert last[k] < 0.8 * first[k], (k, first, last)
