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
