"""A rendered 24-clip store holds every hair family, and the families differ in measured geometry
(length, curvature, volume) as the store's own per-clip hair measures report them."""
import itertools

import numpy as np
import pytest

import clipstore
from core.cli import compose, to_container
from pipelines.render import main as render_main

pytestmark = [pytest.mark.blender, pytest.mark.ray, pytest.mark.slow]

MEASURES = ("length_m", "tortuosity", "curvature_rad_m", "volume_m")


@pytest.fixture(scope="module")
def store(tmp_path_factory, cache_dir):
    path = tmp_path_factory.mktemp("families") / "store.zarr"
    cfg = to_container(compose("render", [
        "n_clips=24", "body.model=anny", "cast.share=0", "hair.style_order=cycle", "hair.strand_scale=0.02", f"store.path={path}",
        f"body.cache_dir={cache_dir}", "cycles.width=96", "cycles.height=96", "cycles.samples=2", "worn.hat.share=0",
        "cycles.alpha_samples=8", "cycles.denoise=false", "clip.fps=8", "clip.seconds=0.125"]))
    assert render_main.task(cfg) == 0
    return clipstore.open_store(path), cfg


def test_every_family_in_24_rendered_clips_and_each_distinct(store):
    root, cfg = store
    ids = clipstore.complete_ids(root)
    assert len(ids) == 24
    by_family: dict[str, list[dict]] = {}
    for cid in ids:
        clip = clipstore.read_clip(root, cid)
        measured = clip.attrs["render"]["hair"]
        assert measured["style"] == clip.attrs["spec"]["hair"]["geometry"]["style"]
        assert measured["strands"] > 0 and 30 <= measured["root_diameter_um"] <= 150
        assert (clip["alpha_hair"][:] > 0).any(), f"{cid} ({measured['style']}): no hair in the alpha_hair pass"
        by_family.setdefault(measured["style"], []).append(measured)
    assert set(by_family) == set(cfg["hair"]["styles"])
    mean = {f: {k: float(np.mean([s[k] for s in v])) for k in MEASURES} for f, v in by_family.items()}
    for a, b in itertools.combinations(sorted(mean), 2):
        rel = {k: abs(mean[a][k] - mean[b][k]) / max(mean[a][k], mean[b][k]) for k in MEASURES}
        assert max(rel.values()) > 0.15, f"{a} and {b} measure alike: {mean[a]} vs {mean[b]}"
    # The families' defining measures in their expected order.
    assert mean["long_straight"]["length_m"] > mean["bob"]["length_m"] > mean["short_crop"]["length_m"]
    assert mean["coily"]["curvature_rad_m"] > mean["curly"]["curvature_rad_m"] > mean["wavy"]["curvature_rad_m"] \
        > mean["long_straight"]["curvature_rad_m"]
    assert mean["coily"]["tortuosity"] > mean["long_straight"]["tortuosity"]
    print({f: {k: round(v, 3) for k, v in m.items()} for f, m in sorted(mean.items())})


def test_the_report_covers_kinds_and_configured_ranges(store, tmp_path):
    from pipelines import report
    root, cfg = store
    folder, text = report.write(root, tmp_path / "report", cfg)
    assert (folder / "parameters.png").stat().st_size > 10_000 and (folder / "contact_sheet.png").is_file()
    assert (folder / "parameters.md").read_text().strip() == text
    params = {p.name: p for p in report.collect(root)[0]}
    for name, kinds in (("camera.move.kind", {"static", "handheld", "dolly", "orbit", "zoom"}),
                        ("lighting.kind", {"studio", "sky", "environment"}),
                        ("camera.framing", {"close_up", "upper_body", "full_body"}),
                        ("clothing.top.kind", {k for k, w in cfg["clothing"]["tops"]["weights"].items() if w > 0}),
                        ("clothing.bottom.kind", set(cfg["clothing"]["bottoms"]["weights"])),
                        ("clothing.top.fabric.pattern", {"solid", "stripes", "checks", "print", "knit"}),
                        ("hair.geometry.style", set(cfg["hair"]["styles"]))):
        assert set(params[name].values) == kinds, name
    assert any(params["lighting.backlit"].values) and any(params["camera.dof"].values)
    # Values drawn straight from a configured range lie in it and span most of it (24 uniform draws
    # span 92% on average).
    for name in ("camera.focal_mm", "camera.shutter", "camera.f_stop", "camera.exposure_target",
                 "body.skin.roughness", "hair.dynamics.drag"):
        p = params[name]
        assert p.outside == 0 and p.coverage > 0.6, (name, p.span, min(p.values), max(p.values))
    ages = params["body.age_years"].values
    assert min(ages) < 30 and max(ages) > 60, ages        # young and old people
    ita = params["body.skin.ita_deg"].values
    assert min(ita) < 10 and max(ita) > 41, ita          # brown to light skin in 24 clips
    assert "| camera.focal_mm | 24 |" in text
