"""Training windows from real zarr stores (written through the store API, no render needed)."""
import cv2
import numpy as np
import pytest
import torch

from gvm_train import data
from gvm_train.data.backgrounds import Backgrounds
import clipstore
from core.cli import compose, to_container
from tests.conftest import write_store as _write


def _cfg(*overrides):
    return to_container(compose("finetune", ["data.size=32", "data.frames=4", *overrides]))["data"]


def test_window_shapes_ranges_and_determinism(tmp_path):
    refs = data.index_stores([_write(tmp_path / "a.zarr", 3)])
    ds = data.WindowDataset(refs, _cfg(), seed=5, length=10)
    s = ds[3]
    assert s["rgb"].shape == (4, 3, 32, 32) and s["alpha"].shape == (4, 1, 32, 32)
    assert 0 <= float(s["alpha"].min()) and float(s["alpha"].max()) <= 1 and float(s["alpha"].max()) > 0.99
    again = data.WindowDataset(refs, _cfg(), seed=5, length=10)[3]
    assert torch.equal(s["rgb"], again["rgb"]) and s["clip"] == again["clip"] and s["start"] == again["start"]
    assert not torch.equal(s["rgb"], ds[4]["rgb"])
    # The composite is fgr over the background by alpha, exactly.
    expect = s["fgr"] * s["alpha"] + s["bg"] * (1 - s["alpha"])
    torch.testing.assert_close(s["rgb"], expect, rtol=0, atol=1e-6)
    # The disc moves right over the window unless the window was flipped: frames differ.
    assert not torch.equal(s["alpha"][0], s["alpha"][-1])


@pytest.mark.slow
def test_split_is_by_clip_and_stable(tmp_path):
    refs = data.index_stores([_write(tmp_path / "a.zarr", 10)])
    train, val = data.split(refs, 0.2, 1)
    assert val and train and not {r.clip_id for r in train} & {r.clip_id for r in val}
    # Adding clips to the store leaves every earlier clip on its side of the split.
    root = clipstore.open_store(tmp_path / "a.zarr", mode="r+")
    for c in range(10, 20):
        clipstore.write_clip(root, f"clip{c:06d}", {"fgr": np.zeros((12, 40, 48, 3), np.uint8),
                                                "alpha": np.zeros((12, 40, 48), np.uint16)}, {"source": "synthetic", "fps": 24.0})
    train2, val2 = data.split(data.index_stores([str(tmp_path / "a.zarr")]), 0.2, 1)
    assert {r.clip_id for r in val} <= {r.clip_id for r in val2}
    assert {r.clip_id for r in train} <= {r.clip_id for r in train2}


@pytest.mark.slow
def test_mixture_weights(tmp_path):
    a = _write(tmp_path / "a.zarr", 2, value=10)
    b = _write(tmp_path / "b.zarr", 6, source="pseudo", value=250)
    refs = data.index_stores([a, b])
    ds = data.WindowDataset(refs, _cfg("data.store_weights=[3,1]"), seed=0, length=400)
    picks = [ds[i]["clip"].startswith("a.zarr") for i in range(400)]
    assert 0.67 < np.mean(picks) < 0.83          # 3:1 by store, whatever the clip counts
    only_synth = data.WindowDataset(refs, _cfg("data.source_weights.pseudo=0"), seed=0, length=50)
    assert all(only_synth[i]["clip"].startswith("a.zarr") for i in range(50))


def test_bgr_plate_used_when_present(tmp_path):
    refs = data.index_stores([_write(tmp_path / "p.zarr", 1, bgr=True)])
    ds = data.WindowDataset(refs, _cfg("data.backgrounds.plate_probability=1.0", "data.augment.bg.brightness=1.0",
                                       "data.augment.bg.contrast=1.0", "data.augment.bg.saturation=1.0"), 0, 4)
    bg = ds[0]["bg"]
    assert torch.allclose(bg, torch.full_like(bg, 17 / 255), atol=1e-6)
    # With the person's shadow layer the plate is darkened where it falls, in linear light.
    path = tmp_path / "s.zarr"
    root = clipstore.create(path, {})
    t, h, w = 12, 40, 48
    shadow = np.full((t, h, w, 3), 255, np.uint8)
    shadow[:, :, : w // 2] = 64                                     # a shadow over the left half
    clipstore.write_clip(root, "clip000000", {"fgr": np.full((t, h, w, 3), 200, np.uint8),
                                             "alpha": np.zeros((t, h, w), np.uint16),
                                             "bgr": np.full((t, h, w, 3), 180, np.uint8), "shadow": shadow},
                         {"source": "synthetic", "fps": 24.0})
    ds = data.WindowDataset(data.index_stores([str(path)]), _cfg(
        "data.backgrounds.plate_probability=1.0", "data.augment.bg.brightness=1.0", "data.augment.bg.contrast=1.0",
        "data.augment.bg.saturation=1.0", "data.crop_scale=1.0", "data.augment.hflip=0"), 0, 2)
    bg = ds[0]["bg"][0, 0].numpy()                                   # frame 0, red
    from core.colour import linear_to_srgb, srgb_to_linear
    lit, dark = 180 / 255, float(linear_to_srgb(srgb_to_linear(np.float64(180 / 255)) * 64 / 255))
    assert np.allclose(bg[:, -8:], lit, atol=2e-3) and np.allclose(bg[:, :8], dark, atol=2e-3)


def test_bad_inputs_name_the_problem(tmp_path):
    clipstore.create(tmp_path / "e.zarr", {})
    with pytest.raises(ValueError, match="has no complete clips"):
        data.index_stores([str(tmp_path / "e.zarr")])
    refs = data.index_stores([_write(tmp_path / "a.zarr", 1, t=5)])
    with pytest.raises(ValueError, match="longer than the longest clip"):
        data.WindowDataset(refs, _cfg("data.frames=8"), seed=0, length=1)
    with pytest.raises(ValueError, match="not a folder"):
        Backgrounds({**_cfg()["backgrounds"], "kind": "folder", "folder": str(tmp_path / "nope")})


def test_procedural_backgrounds_vary_and_move():
    bgs = Backgrounds(_cfg("data.backgrounds.pan_px=[1.0,1.0]")["backgrounds"])
    a = bgs(6, 32, np.random.default_rng(1))
    b = bgs(6, 32, np.random.default_rng(2))
    assert a.shape == (6, 32, 32, 3) and a.dtype == np.float32 and 0 <= a.min() and a.max() <= 1
    assert np.abs(a - b).mean() > 0.02                  # different scenes
    assert np.abs(a[0] - a[-1]).mean() > 1e-3           # the camera drifts
    np.testing.assert_array_equal(a, bgs(6, 32, np.random.default_rng(1)))


def test_segmentation_sources_mask_the_edge_band_and_keep_their_frames(tmp_path):
    seg = _write(tmp_path / "seg.zarr", 2, source="segmentation", value=90)
    ds = data.WindowDataset(data.index_stores([seg]), _cfg("data.crop_scale=[1.0,1.0]", "data.augment.hflip=0",
                                                           "data.masks.band_px=2"), seed=1, length=4)
    s = ds[0]
    a, w = s["alpha"], s["weight"]
    edge = (a > 0.02) & (a < 0.98)                  # the resized mask's soft edge
    assert edge.any() and (w[edge] == 0).all()      # never trusted
    assert (w[a == 0].mean() > 0.5) and (w[a == 1].mean() > 0.3) and set(w.unique().tolist()) == {0.0, 1.0}
    torch.testing.assert_close(s["rgb"], s["fgr"], rtol=0, atol=0)   # the frame itself, not a composite
    synth = data.WindowDataset(data.index_stores([_write(tmp_path / "s.zarr", 2)]), _cfg(), seed=1, length=2)[0]
    assert (synth["weight"] == 1).all()


def test_weighted_losses_ignore_untrusted_pixels():
    from gvm_train.model.objectives import pixel_losses
    cfg = {"l1": 1, "laplacian": 1, "laplacian_levels": 3, "gradient": 1}
    g = torch.zeros(1, 2, 1, 32, 32)
    g[..., 10:22, 10:22] = 1
    w = torch.ones_like(g)
    w[..., 8:24, 8:24] = 0                          # only the border region is trusted
    p = g.clone()
    p[..., 14:18, 14:18] = 0.3                      # errors inside the untrusted region only
    weighted = pixel_losses(p, g, cfg, w)
    assert all(float(v) < 1e-6 for v in weighted.values()), weighted
    plain = pixel_losses(p, g, cfg)
    assert all(float(v) > 1e-3 for v in plain.values())
    p2 = p.clone()
    p2[..., 0, 0] = 1.0                             # an error where the weight is 1 counts
    assert float(pixel_losses(p2, g, cfg, w)["l1"]) > 1e-3


def test_video_folder_backgrounds_move(tmp_path):
    import shutil

    from matting.video import sample_video
    shutil.copy(sample_video("bikes.mp4"), tmp_path / "bikes.mp4")
    bg = Backgrounds({**_cfg()["backgrounds"], "kind": "folder", "folder": str(tmp_path)})
    clip = bg(6, 32, np.random.default_rng(0))
    assert clip.shape == (6, 32, 32, 3) and clip.dtype == np.float32 and 0 <= clip.min() and clip.max() <= 1
    assert np.abs(clip[0] - clip[-1]).mean() > 0.01            # a real video: the background moves


# -- a mask-guided model's coarse masks --------------------------------------------------------------
def _disc_alpha(t=4, size=64):
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    return np.stack([np.clip(18 - np.hypot(yy - 32, xx - 28 - 2 * i), 0, 1) for i in range(t)])


NONE = {"light": 0.0, "threshold": 0.5, "threshold_jitter": 0.0, "morph_px": 0, "jitter_px": 0.0, "polygon": 0.0, "polygon_px": 1.0, "holes": 0.0, "hole_count": 1,
        "hole_size": 0.1, "down": 1, "blur_sigma": 0.0, "stale": 0.0, "empty": 0.0}


@pytest.mark.parametrize("change, check", [
    ({}, lambda a, m: np.array_equal(m, (a > 0.5).astype(np.float32))),                  # threshold only
    ({"morph_px": 3}, lambda a, m: m.sum() > (a > 0.5).sum() * 1.2 and (m >= (a > 0.5)).all()),   # dilated
    ({"morph_px": -3}, lambda a, m: m.sum() < (a > 0.5).sum() * 0.8 and (m <= (a > 0.5)).all()),  # eroded
    ({"polygon": 1.0, "polygon_px": 4.0}, lambda a, m: 0 < np.abs(m - (a > 0.5)).sum() < 0.1 * (a > 0.5).sum()),
    ({"holes": 1.0, "hole_count": 3, "hole_size": 0.3}, lambda a, m: not np.array_equal(m, (a > 0.5).astype(np.float32))),
    ({"down": 8}, lambda a, m: ((m > 0) & (m < 1)).sum() > 2 * ((a > 0) & (a < 1)).sum()),      # blocky, soft
    ({"blur_sigma": 2.0}, lambda a, m: ((m > 0.01) & (m < 0.99)).sum() > ((a > 0) & (a < 1)).sum()),
    ({"stale": 1.0}, lambda a, m: all(np.array_equal(m[0], f) for f in m)),                # every frame late
    ({"empty": 1.0}, lambda a, m: m.max() == 0),                                           # every frame missed
    ({"jitter_px": 2.0}, lambda a, m: len({int(f.sum() - (g > 0.5).sum()) for f, g in zip(m, a)}) > 1),   # flicker
    ({"light": 1.0, "morph_px": 3, "down": 8, "holes": 1.0}, lambda a, m: np.array_equal(m, (a > 0.5).astype(np.float32))),
])
def test_each_mask_damage_does_what_it_says(change, check):
    from gvm_train.data import guide
    a = _disc_alpha()
    m = guide.degrade(a, {**NONE, **change}, np.random.default_rng(0))
    assert m.shape == a.shape and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    assert check(a, m)


def test_guide_masks_are_deterministic_per_seed_and_index(tmp_path):
    refs = data.index_stores([_write(tmp_path / "a.zarr", 3)])
    ds = data.WindowDataset(refs, _cfg(), seed=5, length=10, guide=True)
    s, again = ds[3], data.WindowDataset(refs, _cfg(), seed=5, length=10, guide=True)[3]
    assert s["mask"].shape == s["alpha"].shape and torch.equal(s["mask"], again["mask"])
    masks = [ds[i]["mask"] for i in range(10)]
    assert len({m.numpy().tobytes() for m in masks}) == 10                      # each window its own damage
    assert not torch.equal(data.WindowDataset(refs, _cfg(), seed=6, length=10, guide=True)[3]["mask"], s["mask"])
    # The mask-free dataset draws the same windows: the damage has its own random stream.
    plain = data.WindowDataset(refs, _cfg(), seed=5, length=10)[3]
    assert "mask" not in plain and torch.equal(plain["rgb"], s["rgb"])
    # Coarse, yet about the person: most of it overlaps the true alpha.
    m, a = torch.stack(masks), torch.stack([ds[i]["alpha"] for i in range(10)])
    assert (m * a).sum() > 0.5 * m.sum()


def test_a_bad_guide_mask_value_is_named(tmp_path):
    from core.errors import UserError
    with pytest.raises(UserError, match="data.guide_mask.blur_sigma"):
        data.check(_cfg("data.guide_mask.blur_sigma=[2,1]"))
    with pytest.raises(UserError, match="data.guide_mask"):
        data.check(_cfg("~data.guide_mask.stale"))


def _guided_set(root, n_clips=2, t=6, h=36, w=64, offset=0.0):
    """A benchmark-layout set of moving discs and a 'guide' that mattes them a little too wide."""
    yy, xx = np.mgrid[:h, :w]
    for c in range(n_clips):
        for f in range(t):
            d = np.sqrt((yy - h / 2) ** 2 + (xx - 20 - 2 * f - 5 * c) ** 2)
            alpha = np.clip(9 - d, 0, 1)
            rgb = np.zeros((h, w, 3), np.uint8)
            rgb[..., 0] = 40 + 200 * alpha
            for layer, img in (("com", rgb), ("pha", alpha * 255), ("guide", np.clip(11 + offset - d, 0, 1) * 255)):
                folder = root / ("frames" if layer != "guide" else "guide") / f"clip{c}" / ("pha" if layer == "guide" else layer)
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{f:04d}.png"), np.rint(img).astype(np.uint8))
    return [{"frames": str(root / "frames"), "guide": str(root / "guide")}]


def test_guided_set_windows_pair_truth_with_the_guides_mattes(tmp_path):
    from gvm_train.data import guided_sets
    sets = _guided_set(tmp_path)
    cfg = _cfg("data.size=16", "data.frames=4", "data.crop_scale=[0.5,0.9]")
    ds = guided_sets.GuidedSetWindows(guided_sets.index(sets), cfg, seed=3, length=20)
    s = ds[7]
    assert s["rgb"].shape == (4, 3, 16, 16) and s["alpha"].shape == s["mask"].shape == (4, 1, 16, 16)
    assert torch.equal(s["mask"], guided_sets.GuidedSetWindows(guided_sets.index(sets), cfg, seed=3, length=20)[7]["mask"])
    items = [ds[i] for i in range(20)]
    assert all(it["alpha"].max() > 0.5 for it in items)                        # crops land on the person
    for it in items:   # the guide's own matte, cropped alike: wider than the truth, covering it
        assert it["mask"].sum() > it["alpha"].sum() and (it["mask"] >= it["alpha"] - 0.02).all()
    # Mixed: about `share` of the windows from the guided set, each as its source gives it.
    plain = data.WindowDataset(data.index_stores([_write(tmp_path / "a.zarr", 3)]), cfg, seed=3, length=200, guide=True)
    mixed = guided_sets.Mixed(plain, guided_sets.GuidedSetWindows(guided_sets.index(sets), cfg, 3, 200), 0.3, seed=3)
    picked = [mixed[i]["clip"].startswith("clip") for i in range(200)]
    assert 0.2 < np.mean(picked) < 0.4
    i = picked.index(True)
    assert torch.equal(mixed[i]["mask"], mixed.guided[i]["mask"]) and set(mixed[i]) == set(guided_sets.Mixed.KEYS)


def test_a_guided_set_with_missing_guide_frames_is_named(tmp_path):
    from core.errors import UserError
    from gvm_train.data import guided_sets
    sets = _guided_set(tmp_path)
    (tmp_path / "guide" / "clip1" / "pha" / "0005.png").unlink()
    with pytest.raises(ValueError, match="clip1 needs as many com/, pha/ and guide"):
        guided_sets.index(sets)
    with pytest.raises(UserError, match="data.guided_sets.share"):
        data.check(_cfg("data.guided_sets.share=2"))
    with pytest.raises(UserError, match="data.guided_sets.sets"):
        data.check(_cfg("data.guided_sets.sets=[{frames:a}]"))


def test_a_window_of_several_people_teaches_one_of_them_or_everyone(tmp_path):
    """In a clip of two people a window's alpha is either everyone's or one person's own channel of
    `instances`, the other then part of the background; its guide is made from what it teaches."""
    t, h, w = 8, 32, 32
    yy, xx = np.mgrid[:h, :w]
    left, right = ((xx - 9) ** 2 + (yy - 16) ** 2 < 36), ((xx - 23) ** 2 + (yy - 16) ** 2 < 36)
    inst = np.zeros((t, h, w, 2), np.uint16)
    inst[:, left, 0], inst[:, right, 1] = 65535, 65535
    root = clipstore.create(tmp_path / "two.zarr", {})
    clipstore.write_clip(root, "clip000000", {"fgr": np.full((t, h, w, 3), 200, np.uint8), "alpha": inst.sum(-1).astype(np.uint16),
                                             "instances": inst}, {"source": "synthetic", "fps": 24.0},
                         outputs={"instances": clipstore.Output.from_attrs({**clipstore.OUTPUTS["instances"].attrs,
                                                                            "channels": ["person0", "person1"]})})
    refs = data.index_stores([str(tmp_path / "two.zarr")])
    keep = ["data.crop_scale=1.0", "data.augment.hflip=0", "data.size=32"]
    ds = data.WindowDataset(refs, _cfg("data.instances.others_background=1.0", *keep), 0, 12, guide=True)
    seen, guided = set(), []
    for i in range(12):
        s = ds[i]
        a, k = s["alpha"][0, 0].numpy(), s["target"]
        seen.add(k)
        mine, theirs = (left, right) if k == 0 else (right, left)
        assert a[mine].min() > 0.99 and a[theirs].max() < 0.01       # one person's alpha, the other is background
        assert np.allclose(s["rgb"].numpy()[..., theirs], s["fgr"].numpy()[..., theirs], atol=1e-6)   # still in the frame
        m = s["mask"][:, 0].numpy()
        guided.append((m[:, mine].mean(), m[:, theirs].mean()))   # the guide is of the one it teaches
    assert seen == {0, 1}
    mine, theirs = np.mean(guided, axis=0)   # a damaged guide may drop a frame or add a stray blob, not swap people
    assert mine > 0.5 and theirs < 0.1 and np.median([g[1] for g in guided]) < 0.01
    everyone = data.WindowDataset(refs, _cfg("data.instances.others_background=0.0", *keep), 0, 3)[0]
    assert everyone["target"] == -1 and everyone["alpha"][0, 0].numpy()[left | right].min() > 0.99
