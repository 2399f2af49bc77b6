"""The report's command line: a store given as the first argument, one clear line for a bad one."""
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_store

ROOT = Path(__file__).resolve().parent.parent


def run(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.report", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_missing_and_empty_stores_fail_in_one_line(tmp_path):
    r = run(str(tmp_path / "nothing.zarr"))
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "does not exist" in r.stderr
    empty = tmp_path / "empty.zarr"
    write_store(empty, 0)
    r = run(f"store.path={empty}")
    assert r.returncode != 0 and "holds no complete clips" in r.stderr


def test_a_store_as_first_argument(tmp_path):
    store = write_store(tmp_path / "discs.zarr", 2)
    r = run(store, f"report.path={tmp_path / 'out'}")
    assert r.returncode == 0, r.stderr
    assert "2 clips" in r.stdout and (tmp_path / "out" / "parameters.png").is_file()


def test_outputs_beside_a_store_on_this_disk_and_under_local_dir_for_a_url():
    from clipstore.location import beside
    assert beside("/data/synth.zarr", ".report") == Path("/data/synth.report")
    assert beside("file:///data/synth.zarr", ".contact_sheet.png") == Path("/data/synth.contact_sheet.png")
    # a store behind a URL: under store.local_dir, by protocol, bucket and path (two buckets' stores apart)
    assert beside("s3://bucket/runs/synth.zarr", ".report", "/tmp/x") == Path("/tmp/x/s3/bucket/runs/synth.report")
    assert beside("s3://other/runs/synth.zarr/", ".report", "/tmp/x") == Path("/tmp/x/s3/other/runs/synth.report")
    assert beside("memory://bucket/synth.zarr", ".report") == Path("outputs/memory/bucket/synth.report")  # conf's


def test_a_parameter_at_its_config_path_takes_that_range_only():
    from pipelines.report import configured
    definition = {"hair": {"styles": {"bob": {"length": [0.16, 0.24]}, "long": {"length": [0.32, 0.5]}},
                           "face": {"brows": {"length": [0.007, 0.011], "count": {"int": [250, 550]}}}}}
    assert configured(definition, "hair.face.brows.length") == (0.007, 0.011)
    assert configured(definition, "hair.face.brows.count") == (250.0, 550.0)
    # A spec key elsewhere than its config key: every range of that name in the group.
    assert configured(definition, "hair.geometry.length") == (0.007, 0.5)


@pytest.mark.slow   # plans 24 anny clips
def test_the_hard_case_mix_holds_every_kind_and_the_report_counts_them(tmp_path, cache_dir):
    """`make hard-cases`'s 24 planned clips (the mix's shares and seed) hold every kind worn, held
    and in the air, both glasses frames, every lens and a sheer scarf, two, three and four people in
    every layout; the report's table gives
    each kind's clips and share from the specs the store keeps."""
    import numpy as np

    import clipstore
    from assets import effects, held, people
    from core.cli import compose, to_container
    from core.conf import load
    from pipelines import plan, report
    from tests.conftest import SMALL
    base = [o for o in SMALL if not o.startswith(("worn.", "held.", "effects.", "cast."))]
    cfg = to_container(compose("render", [*base, "+mix=hard_cases", "n_clips=24", "body.model=anny",
                                          f"body.cache_dir={cache_dir}"]))
    specs = plan.plan(cfg, plan.resolve_model(cfg))
    worn = load("worn/default")
    want = {*(f"held: {k}" for k in held.KINDS), "held: steam", *(f"effects: {k}" for k in effects.KINDS),
            *(f"worn: hat ({k})" for k in worn["hat"]["kinds"]), *(f"worn: earrings ({k})" for k in worn["earrings"]["kinds"]),
            *(f"worn: {k} lenses" for k in worn["glasses"]["lenses"]), "worn: glasses (metal)", "worn: glasses (acetate)",
            "worn: headphones", "worn: sheer scarf", *(f"people: {n}" for n in (2, 3, 4)),
            *(f"people: {k}" for k in people.LAYOUTS)}
    root = clipstore.create(str(tmp_path / "s.zarr"), {})
    for s in specs:   # a one-frame clip carrying each planned spec, as the renderer would write it
        clipstore.write_clip(root, s.clip_id, {"fgr": np.zeros((1, 8, 8, 3), np.uint8), "alpha": np.zeros((1, 8, 8), np.uint16)},
                             {"source": "synthetic", "fps": s.fps, "spec": s.to_dict()})
    counted = report.shares(root)
    assert want <= set(counted), sorted(want - set(counted))
    text = report.table(*report.collect(root), counted=counted)
    for kind in want:
        assert f"| {kind} | {counted[kind]} | {counted[kind] / 24:.0%} |" in text
