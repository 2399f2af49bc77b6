"""The background plate (outputs.bgr): the same camera and light with the person removed, stored as
`bgr` and checked by validate."""
import numpy as np
import pytest
import zarr

import clipstore
from assets import lighting
from core.cli import compose, to_container
from pipelines import plan
from pipelines.plan import resolve_model

pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def plated(cache_dir):
    from render.clip import render_clip
    weights = [f"lighting.weights.{k}={1.0 if k == 'studio' else 0.0}" for k in lighting.KINDS]
    cfg = to_container(compose("render", ["cycles.width=64", "cycles.height=64", "cycles.samples=16",
                                          "cycles.alpha_samples=16", "outputs.bgr=true", "clip.fps=8", "clip.seconds=0.25",
                                          "hair.strand_scale=0.02", "n_clips=1", f"body.cache_dir={cache_dir}", *weights]))
    spec = plan.plan(cfg, resolve_model(cfg))[0]
    return spec, render_clip(spec, threads=2)


def test_plate_shows_the_set_without_the_person(plated):
    spec, out = plated
    bgr, fgr = out.arrays["bgr"], out.arrays["fgr"]
    alpha = out.arrays["alpha"] / 65535.0
    assert bgr.shape == fgr.shape and bgr.dtype == np.uint8 and "plate" in out.info["pass_seconds"]
    assert spec.lighting["set"]["backdrop"] and bgr.mean() > 5        # the lit backdrop fills the frame
    person, empty = alpha > 0.99, alpha == 0
    # No silhouette in the plate: inside the person's outline it looks like the backdrop around it.
    assert abs(bgr[person].mean() - bgr[empty].mean()) < 0.25 * bgr[empty].mean() + 8
    assert np.abs(fgr[person].astype(int) - bgr[person]).mean() > 10   # and the person is not in it


def test_validate_checks_the_plate(plated, tmp_path):
    spec, out = plated
    root = clipstore.create(tmp_path / "s.zarr", {})
    clipstore.write_clip(root, spec.clip_id, out.arrays, {"source": "synthetic", "fps": spec.fps})
    assert not clipstore.validate(str(tmp_path / "s.zarr")).invalid
    with pytest.raises(clipstore.StoreError, match="bgr must be uint8"):
        clipstore.write_clip(root, "clip999999", {**out.arrays, "bgr": out.arrays["bgr"].astype(np.uint16)},
                             {"source": "synthetic", "fps": spec.fps})
    g = zarr.open_group(tmp_path / "s.zarr", mode="r+")[f"clips/{spec.clip_id}"]   # damaged after writing
    g.create_array("bgr", data=out.arrays["bgr"][..., :2].copy(), overwrite=True)
    report = clipstore.validate(str(tmp_path / "s.zarr"))
    assert report.invalid and any("bgr" in p for c in report.clips for p in c.problems)
