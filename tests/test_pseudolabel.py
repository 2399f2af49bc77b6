"""Pseudo-labelling real video, for real: mediapipe, pymatting, DIS flow, PyAV and a zarr store."""
import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image

import clipstore
from core.cli import UserError, compose, to_container
from matting import person, stabilise
from matting.metrics import dtssd
from matting.trimap import band_kernel, person_trimap
from matting.video import sample_video
from pipelines import pseudolabel
from pipelines import validate

CARPHONE = sample_video("carphone_pristine.mp4")


def cfg(tmp_path, *overrides):
    return to_container(compose("pseudolabel", [f"store.path={tmp_path / 'store.zarr'}", "progress=false", *overrides]))


def test_windows_cut_long_videos_into_clips():
    clip = {"seconds": 3.0, "overlap": 0.0, "min_seconds": 1.0}
    assert pseudolabel.windows(120, 30.0, clip) == [(0, 90), (90, 120)]
    assert pseudolabel.windows(100, 30.0, clip) == [(0, 90)]                     # a 10-frame tail is dropped
    assert pseudolabel.windows(200, 30.0, {**clip, "overlap": 1.0}) == [(0, 90), (60, 150), (120, 200)]
    assert pseudolabel.windows(20, 30.0, clip) == []


def test_subject_rule_largest_or_tracked():
    m = np.zeros((40, 80), bool)
    m[5:35, 5:30] = True          # the larger region, left
    m[10:30, 50:70] = True        # a smaller one, right
    assert person.subject(m, "largest")[20, 10] and not person.subject(m, "largest")[20, 60]
    right = np.zeros_like(m)
    right[12:28, 52:68] = True
    tracked = person.subject(m, "track", previous=right)
    assert tracked[20, 60] and not tracked[20, 10]
    assert not person.subject(np.zeros_like(m), "largest").any()


def test_band_scales_with_the_person():
    c = {"band": 0.1, "min_px": 5, "max_px": 41}
    assert band_kernel(100 * 100, c) == 11 and band_kernel(10, c) == 5 and band_kernel(1e6, c) == 41
    small, big = np.zeros((200, 200), bool), np.zeros((200, 200), bool)
    small[90:110, 90:110] = True
    big[20:180, 20:180] = True
    (ts, ks), (tb, kb) = person_trimap(small, c), person_trimap(big, c)
    assert ks < kb and (tb == 0.5).sum() > (ts == 0.5).sum()
    for k in (ks, kb):
        assert k % 2 == 1


def test_indexed_and_binary_masks(tmp_path):
    ids = np.zeros((20, 30), np.uint8)
    ids[2:8, 2:8], ids[10:18, 10:28] = 1, 2
    im = Image.fromarray(ids, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    im.save(tmp_path / "p.png")
    Image.fromarray(np.where(ids > 0, 255, 0).astype(np.uint8)).save(tmp_path / "b.png")
    assert person.read_mask(tmp_path / "p.png", 2).sum() == 8 * 18
    assert person.read_mask(tmp_path / "p.png", None).sum() == 36 + 8 * 18
    assert person.read_mask(tmp_path / "b.png", None).sum() == 36 + 8 * 18


def test_stabilisation_lowers_jitter_along_the_flow():
    """A textured square moving right, its alpha edge jittered frame to frame in the band: the
    flow-guided blend follows the motion and lowers dtSSD against the truth without raising MAD."""
    rng = np.random.default_rng(0)
    T, H, W = 12, 64, 96
    texture = (rng.uniform(0, 255, (H, W + 2 * T, 3))).astype(np.uint8)
    texture = cv2.GaussianBlur(texture, (5, 5), 1.5)
    frames, true = [], []
    for t in range(T):
        a = np.zeros((H, W), np.float32)
        a[16:48, 20 + t:52 + t] = 1.0
        a = cv2.GaussianBlur(a, (7, 7), 2.0)
        bg = np.full((H, W, 3), 40.0)
        fg = texture[:, t:t + W].astype(np.float64)
        frames.append((a[..., None] * fg + (1 - a[..., None]) * bg).astype(np.uint8))
        true.append(a)
    frames, true = np.stack(frames), np.stack(true)
    band = (true > 0.01) & (true < 0.99)
    band = np.stack([cv2.dilate(b.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for b in band])
    noisy = np.clip(true + np.where(band, rng.normal(0, 0.15, true.shape), 0), 0, 1).astype(np.float32)
    c = to_container(compose("pseudolabel", []))["temporal"]
    out, carried = stabilise.stabilise(frames, noisy, band, c)
    jitter = lambda a: np.mean([dtssd(a[t - 1], a[t], true[t - 1], true[t]) for t in range(1, T)])  # noqa: E731
    assert jitter(out) < 0.8 * jitter(noisy)
    assert np.abs(out - true).mean() <= np.abs(noisy - true).mean() * 1.05
    assert carried[0] is None and carried[5].confidence.mean() > 0.5
    off, _ = stabilise.stabilise(frames, noisy, band, {**c, "enabled": False})
    assert np.array_equal(off, noisy)


@pytest.mark.slow
def test_carphone_becomes_valid_pseudo_clips_and_a_rerun_changes_nothing(tmp_path, capsys):
    c = cfg(tmp_path, f"input={CARPHONE}")          # the defaults: its clips score above quality.min_score
    assert pseudolabel.main.task(c) == 0
    root = clipstore.open_store(c["store"]["path"])
    ids = clipstore.complete_ids(root)
    assert len(ids) == 2                                     # 120 frames at 30 fps: 3 s + a 1 s tail
    clip = clipstore.read_clip(root, ids[0])
    spec = clip.attrs["spec"]
    assert clip.attrs["source"] == "pseudo" and clip.n_frames == 90
    assert spec["input"]["frames"] == [0, 90] and spec["input"]["sha256"] == pseudolabel.content_sha256(CARPHONE)
    assert spec["mask_source"] == "selfie" and spec["settings"]["method"] == "cf"
    assert len(spec["scores"]["frames"]) == 90 and 0 < spec["scores"]["clip"] <= 1
    alpha = clip["alpha"][:]
    # A person in the frame: a solid core, a soft edge, background at 0.
    assert (alpha == 65535).mean() > 0.2 and (alpha == 0).mean() > 0.1 and ((alpha > 0) & (alpha < 65535)).mean() > 0.005
    report = clipstore.validate(c["store"]["path"], 1)
    assert not report.invalid
    assert validate.main([c["store"]["path"]]) == 0
    out = capsys.readouterr().out
    assert "carphone_pristine.mp4  2" in out and (tmp_path / "store.pseudolabel" / "contact_sheet.png").is_file()
    before = {cid: clipstore.read_clip(root, cid).attrs["checksums"] for cid in ids}
    assert pseudolabel.main.task(c) == 0
    assert "already labelled with these settings" in capsys.readouterr().out
    root = clipstore.open_store(c["store"]["path"])
    assert {cid: clipstore.read_clip(root, cid).attrs["checksums"] for cid in clipstore.complete_ids(root)} == before
    # A threshold no clip reaches: nothing written, the clips listed with their scores.
    c2 = cfg(tmp_path, f"input={CARPHONE}", "quality.min_score=1.0", f"store.path={tmp_path / 'strict.zarr'}")
    assert pseudolabel.main.task(c2) == 0
    out = capsys.readouterr().out
    assert "0 clips written, 2 rejected" in out and "score below quality.min_score" in out
    assert not (tmp_path / "strict.zarr").exists()           # no clip, no store (the rejections are recorded beside it)
    assert len(list((tmp_path / "strict.pseudolabel").rglob("*.rejected.json"))) == 2


def _disc_frames(folder, n=8, h=72, w=96):
    """A textured disc moving over a flat background, written as PNG frames, and its true alpha;
    a second, smaller disc as instance 2 of indexed masks."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:h, :w]
    true = []
    for t in range(n):
        d = np.sqrt((yy - 36) ** 2 + (xx - 30 - 2 * t) ** 2)
        a = np.clip(20.5 - d, 0, 1)
        fg = np.stack([200 + 30 * np.sin(xx / 3.0), 80 + 40 * np.cos(yy / 4.0), np.full((h, w), 60.0)], -1)
        img = a[..., None] * fg + (1 - a[..., None]) * np.array([30.0, 120.0, 200.0]) + rng.normal(0, 1, (h, w, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"{t:05d}.png")
        true.append(a)
    return np.stack(true)


@pytest.mark.slow
@pytest.mark.ray
def test_user_masks_in_the_davis_layout_and_bad_videos_named(tmp_path, capsys):
    videos = tmp_path / "videos"
    true = _disc_frames(tmp_path / "frames" / "walk")
    masks = tmp_path / "masks" / "walk"
    masks.mkdir(parents=True)
    yy, xx = np.mgrid[:72, :96]
    for t in range(len(true)):
        ids = np.where(true[t] > 0.5, 2, 0).astype(np.uint8)
        ids[(yy - 10) ** 2 + (xx - 85) ** 2 < 16] = 1        # another object, not the person
        im = Image.fromarray(ids, mode="P")
        im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        im.save(masks / f"{t:05d}.png")
    c = cfg(tmp_path, f"input={tmp_path / 'frames' / 'walk'}", f"masks={tmp_path / 'masks'}", "instance=2",
            "quality.min_score=0", "clip.seconds=0.25", "clip.min_seconds=0.25", "writer.folder_fps=24")
    assert pseudolabel.main.task(c) == 0
    root = clipstore.open_store(c["store"]["path"])
    ids = clipstore.complete_ids(root)
    assert len(ids) == 1
    clip = clipstore.read_clip(root, ids[0])
    assert clip.attrs["spec"]["mask_source"].startswith("masks:")
    alpha = clip["alpha"][:].astype(np.float64) / 65535
    assert np.abs(alpha - true[:6]).mean() < 0.01                       # the disc, not the other object
    assert alpha[:, 10, 85].max() < 0.05
    # instance=each: one clip per object id, each matted alone.
    each = {**c, "instance": "each", "store": {**c["store"], "path": str(tmp_path / "each.zarr")}}
    assert pseudolabel.main.task(each) == 0
    root = clipstore.open_store(each["store"]["path"])
    ids = clipstore.complete_ids(root)
    assert [i.split("-")[-2] for i in ids] == ["i1", "i2"]
    one, two = (clipstore.read_clip(root, i) for i in ids)
    assert one.attrs["spec"]["instance"] == 1 and two.attrs["spec"]["instance"] == 2
    assert np.array_equal(two["alpha"][:], clip["alpha"][:])             # the same labels as instance=2 alone
    a1 = one["alpha"][:].astype(np.float64) / 65535
    assert a1[:, 10, 85].min() > 0.5 and a1[true[:6] > 0.5].max() < 0.05   # the other object, not the disc
    # Masks that do not match the video: one fewer, or of another size: named, nothing written.
    capsys.readouterr()
    for broken in ("count", "size"):
        bad = tmp_path / f"masks_{broken}" / "walk"
        shutil.copytree(masks, bad)
        if broken == "count":
            sorted(bad.glob("*.png"))[-1].unlink()
        else:
            Image.open(bad / "00000.png").resize((48, 36)).save(bad / "00000.png")
        cb = {**c, "masks": str(bad.parent), "store": {**c["store"], "path": str(tmp_path / f"{broken}.zarr")}}
        with pytest.raises(UserError) as e:                   # the only video: refused before any work
            pseudolabel.main.task(cb)
        line = str(e.value)
        assert ("7 masks" in line and "for 8 frames" in line) if broken == "count" else "48x36" in line, line
        assert not (tmp_path / f"{broken}.zarr").exists()     # nothing written, not even an empty store

    # A folder of videos: one good, one empty file, one of random bytes, one without a person.
    videos.mkdir()
    shutil.copy(CARPHONE, videos / "good.mp4")
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    import av
    with av.open(str(videos / "nobody.mp4"), "w") as out:
        s = out.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for _ in range(30):
            out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")))
        out.mux(s.encode())
    store = tmp_path / "many.zarr"
    # Several videos at once: one Ray task per video on a local cluster of two workers.
    c = cfg(tmp_path, f"input={videos}", f"store.path={store}", "quality.min_score=0", "clip.min_seconds=1.0",
            "cluster.workers=2", "cluster.cpus_per_worker=1")
    assert pseudolabel.main.task(c) == pseudolabel.EXIT_VIDEOS_FAILED
    out = capsys.readouterr().out
    for name in ("empty.mp4", "noise.mp4", "nobody.mp4"):
        line = next(x for x in out.splitlines() if x.startswith(name))
        assert name in line.split("  ", 1)[1] or "no person" in line, line
    assert "no person found" in next(x for x in out.splitlines() if x.startswith("nobody.mp4"))
    assert "3 failed" in out
    good = [cid for cid in clipstore.complete_ids(clipstore.open_store(store)) if "good" in cid]
    assert len(good) == 2


def test_bad_config_one_line_each(tmp_path):
    base = [f"input={CARPHONE}"]
    for over, match in ((["labeler=magic"], "labeler"), (["labeler=gvm"], "checkpoint"),
                        (["segmenter=eyes"], "segmenter"), (["method=guess"], "method"),
                        (["masks=/nowhere"], "masks"), (["people=all"], "people"),
                        (["clip.seconds=-1"], "clip"), (["temporal.flow_preset=slow"], "flow_preset")):
        with pytest.raises(UserError, match=match):
            pseudolabel.check(cfg(tmp_path, *base, *over))
    with pytest.raises(UserError, match="does not exist"):
        pseudolabel.main.task(cfg(tmp_path, "input=/no/such/video.mp4"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="holds no videos"):
        pseudolabel.main.task(cfg(tmp_path, f"input={tmp_path}"))
    # A store path that is not a store: refused before any work.
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("x")
    with pytest.raises(UserError, match="not a zarr store"):
        pseudolabel.main.task(cfg(tmp_path, f"input={CARPHONE}", f"store.path={tmp_path / 'junk'}"))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="store.path .*cannot be written|is a file"):
        pseudolabel.main.task(cfg(tmp_path, f"input={CARPHONE}", f"store.path={tmp_path / 'afile' / 's.zarr'}"))
    assert json.dumps(cfg(tmp_path))   # the config is plain data


@pytest.mark.slow
def test_self_training_at_toy_size(tmp_path, capsys):
    """Fine-tune on rendered-format clips, label real video with that model (labeler=gvm, refined
    by the classical chain), fine-tune again on both stores: the second run trains on pseudo clips."""
    from gvm_train.data.windows import index_stores
    from gvm_train.finetune import train
    from tests.conftest import write_store
    synth = write_store(tmp_path / "synth.zarr", 4, t=10)
    small = ["data.size=32", "data.frames=4", "model.unet.num_frames=4",
             "train.val_windows=2", "train.threads=1", "train.steps=3"]
    first = train(to_container(compose("finetune", [*small, f"data.stores=[{synth}]", f"output_dir={tmp_path / 'ft1'}"])))
    pseudo_store = tmp_path / "pseudo.zarr"
    c = cfg(tmp_path, f"input={CARPHONE}", f"store.path={pseudo_store}", "labeler=gvm", f"checkpoint={first['final']}",
            "gvm.short_side=32", "person_threshold=0.0", "quality.min_score=0", "clip.seconds=1", "clip.min_seconds=1")
    assert pseudolabel.main.task(c) == 0
    refs = index_stores([str(pseudo_store)])
    assert len(refs) == 4 and {r.source for r in refs} == {"pseudo"}
    root = clipstore.open_store(pseudo_store)
    spec = clipstore.read_clip(root, refs[0].clip_id).attrs["spec"]
    assert spec["mask_source"] == f"gvm:{first['final']}" and spec["settings"]["labeler"] == "gvm"
    second = train(to_container(compose("finetune", [*small, f"data.stores=[{synth},{pseudo_store}]",
                                                     f"output_dir={tmp_path / 'ft2'}"])))
    assert (tmp_path / "ft2" / "log.csv").is_file() and second["steps"] == 3
    assert {r.source for r in index_stores([synth, str(pseudo_store)])} == {"synthetic", "pseudo"}


@pytest.mark.blender
@pytest.mark.ray
def test_pseudo_labels_of_rendered_composites_against_their_true_alpha(tmp_path, cache_dir, capsys):
    """Rendered anny clips composited over the moving sample backgrounds (pipelines.benchmark_set),
    labelled from the composite alone: the labels' MAD against the rendered alpha, and the
    stabilisation's effect on jitter and on MAD (make bench-pseudolabel runs the same on more clips)."""
    from pipelines import bench_pseudolabel
    from pipelines.render import main as render_main
    store = tmp_path / "rendered.zarr"
    assert render_main.task(to_container(compose("render", [
        "n_clips=3", "seed=7", "body.model=anny", f"body.cache_dir={cache_dir}", f"store.path={store}", "cycles.width=128",
        "cycles.height=128", "cycles.samples=4", "cycles.alpha_samples=16", "cycles.denoise=false", "clip.fps=8",
        "clip.seconds=0.5", "hair.strand_scale=0.05", "camera.framing.weights={close_up: 0, upper_body: 1, full_body: 0}"]))) == 0
    c = to_container(compose("bench_pseudolabel", [f"bench.store={store}", f"bench.output_dir={tmp_path / 'bench'}",
                                                   "bench.resolution=256x144"]))
    c = pseudolabel.check({**c, "input": "-", "store": {"path": str(tmp_path / "unused.zarr")}})
    r = bench_pseudolabel.accuracy(c)
    print(r)
    assert r["clips"] == 3
    # An empty matte scores the person's whole area; the labels follow the person on most clips
    # (the segmenters can take a busy background for the person: make bench-pseudolabel counts how often).
    assert np.median(r["per_clip_mad"]) < 40 and r["pseudo_mad"] < 0.5 * r["empty_mad"], r
    assert r["dtssd_stabilised"] < r["dtssd_per_frame"]
    assert r["pseudo_mad"] < 1.05 * r["pseudo_mad_per_frame"]


@pytest.mark.slow
def test_a_mask_guided_labeler_is_guided_by_the_given_masks(tmp_path):
    """labeler=gvm with a mask-guided model: the user's masks (DAVIS layout) are its condition,
    and the clip's record says so."""
    import cv2
    from gvm_train.model import build_model
    from gvm_train.pipeline import GVMPipeline
    model = tmp_path / "guided"
    GVMPipeline.from_model(build_model(to_container(compose("finetune", ["model.gvm.mask_guided=true"]))["model"])
                           ).save_pretrained(model)
    masks = tmp_path / "masks" / "carphone_pristine"
    masks.mkdir(parents=True)
    for i in range(120):   # an ellipse where the man sits
        m = np.zeros((144, 176), np.uint8)
        cv2.ellipse(m, (100, 90), (45, 60), 0, 0, 360, 255, -1)
        cv2.imwrite(str(masks / f"{i:05d}.png"), m)
    store = tmp_path / "pseudo.zarr"
    c = cfg(tmp_path, f"input={CARPHONE}", f"store.path={store}", "labeler=gvm", f"checkpoint={model}",
            f"masks={tmp_path / 'masks'}", "gvm.short_side=32", "person_threshold=0.0", "quality.min_score=0",
            "clip.seconds=2", "clip.min_seconds=2")
    assert pseudolabel.main.task(c) == 0
    root = clipstore.open_store(store)
    ids = clipstore.complete_ids(root)
    assert ids
    spec = clipstore.read_clip(root, ids[0]).attrs["spec"]
    assert spec["mask_source"] == f"gvm:{model} guided by masks:{tmp_path / 'masks'}"
