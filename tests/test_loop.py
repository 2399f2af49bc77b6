import pytest
"""make loop's module at toy sizes: every stage for real (Cycles, Ray, training, inference, mediapipe,
pymatting, metrics), then a rerun that finds everything done."""
import json

from pipelines import loop
from core.cli import compose, to_container
from tests.conftest import SMALL

pytestmark = [pytest.mark.blender, pytest.mark.ray, pytest.mark.slow]


def test_loop_writes_the_report_and_resumes(tmp_path, cache_dir):
    c = to_container(compose("loop", [f"output_dir={tmp_path / 'loop'}"]))
    c["render"] = ["n_clips=3", *SMALL, f"body.cache_dir={cache_dir}"]
    c["finetune"] = ["train.steps=3", "train.val_every=0", "train.threads=1", "train.checkpoint_every=3",
                     "data.size=32", "data.frames=4", "data.stride=1", "model.unet.num_frames=4",
                     "data.val_min_clips=1"]
    c["mask_free"] = []
    c["benchmark"] = ["resolutions=[64x36]", "backgrounds.kinds=[still]"]
    c["guided_train"] = ["name=train", "resolutions=[64x36]", "backgrounds.kinds=[still]", "seed=1"]
    c["infer"] = ["short_side=32", "threads=1", "writer.alpha_video=none", "writer.preview.enabled=false"]
    c["classical"] = ["writer.alpha_video=none", "writer.preview.enabled=false"]
    c["real"] = {**c["real"], "frames": 3, "sheet_frames": 2, "cell": 48}
    report = loop.run(c)
    text = report.read_text()
    for method in loop.METHODS:
        assert f"| {method} |" in text
    data = json.loads((tmp_path / "loop" / "report.json").read_text())
    scores = data["dataset"]["heldout_64x36"]
    assert set(scores) == set(loop.METHODS) and all("pha_mad" in s and "pha_conn" in s for s in scores.values())
    assert (tmp_path / "loop" / "predictions_heldout_64x36.png").stat().st_size > 500
    assert set(data["seconds"]) == {"render", "guides", "finetune", "benchmark", "predict", "evaluate", "real video"}
    assert (tmp_path / "loop" / "real_sample.png").stat().st_size > 500
    trained_on = sorted(p.name for p in (tmp_path / "loop" / "guided_train_classical" / "train_64x36").iterdir())
    assert trained_on and not set(trained_on) & {p.name for p in (tmp_path / "loop" / "benchmark" / "heldout_64x36").iterdir()}
    # A rerun renders, trains and mattes nothing again and gives the same numbers.
    clip = next((tmp_path / "loop" / "synth.zarr" / "clips").iterdir())
    stamp = (clip / "zarr.json").stat().st_mtime_ns
    loop.run(c)
    assert (clip / "zarr.json").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "loop" / "report.json").read_text())["dataset"] == data["dataset"]


def test_a_loop_of_several_people_guides_by_the_instance_mask_and_splits_the_error(tmp_path, cache_dir):
    """guide=instance on clips of several people: the held-out set is matted for the person framed,
    the classical baseline and the mask-guided model both guided by that person's instance mask, and
    the report splits every method's error between the other people and the rest."""
    c = to_container(compose("loop", [f"output_dir={tmp_path / 'loop'}", "guide=instance"]))
    c["render"] = ["n_clips=3", *SMALL, "cast.share=1", "cast.counts={two: 1, three: 0, four: 0}",
                   "cast.layouts={side_by_side: 1, behind: 0, walk_past: 0, group: 0}", f"body.cache_dir={cache_dir}"]
    c["finetune"] = ["train.steps=2", "train.val_every=0", "train.threads=1", "train.checkpoint_every=2",
                     "data.size=32", "data.frames=4", "data.stride=1", "model.unet.num_frames=4", "data.val_min_clips=1"]
    c["mask_free"] = []
    c["benchmark"] = ["resolutions=[64x36]", "backgrounds.kinds=[still]"]
    c["infer"] = ["short_side=32", "threads=1", "writer.alpha_video=none", "writer.preview.enabled=false"]
    c["classical"] = ["writer.alpha_video=none", "writer.preview.enabled=false"]
    c["real"] = {**c["real"], "frames": 3, "sheet_frames": 2, "cell": 48}
    loop.run(c)
    bench = tmp_path / "loop" / "benchmark" / "heldout_64x36"
    clips = [p for p in bench.iterdir() if p.is_dir()]
    assert clips and all((p / "guide").is_dir() and (p / "others").is_dir() for p in clips)
    scores = json.loads((tmp_path / "loop" / "report.json").read_text())["dataset"]["heldout_64x36"]
    assert set(scores) == set(loop.METHODS) and all("others_mad" in s and "target_mad" in s for s in scores.values())
    assert "others MAD" in (tmp_path / "loop" / "report.md").read_text()   # the split in the report's table
    record = json.loads((tmp_path / "loop" / "pred" / "heldout_64x36" / "classical" / clips[0].name / "run.json").read_text())
    assert record["mask"] == str(clips[0] / "guide")
