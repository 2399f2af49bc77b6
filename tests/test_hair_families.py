"""The style families of a 24-clip plan differ in measured geometry (length, curvature, volume)."""
import itertools

import numpy as np
import pytest

from assets import body, motions
from core.cli import compose, to_container
from pipelines import plan
from render.clip import hair_motion

pytestmark = [pytest.mark.slow]


def stats(points: np.ndarray, center: np.ndarray) -> dict:
    seg = np.linalg.norm(np.diff(points, axis=1), axis=-1)
    arc = seg.sum(axis=1)
    chord = np.linalg.norm(points[:, -1] - points[:, 0], axis=1)
    t = np.diff(points, axis=1) / np.maximum(seg, 1e-9)[..., None]
    turn = np.arccos(np.clip((t[:, 1:] * t[:, :-1]).sum(-1), -1, 1)).sum(axis=1)   # radians per strand
    return {"length": float(np.median(arc)), "tortuosity": float(np.median(arc / np.maximum(chord, 1e-9))),
            "curvature": float(np.median(turn / arc)),                                # rad / m
            "volume": float(np.percentile(np.linalg.norm(points[:, -1] - center, axis=1), 90))}


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("cache"))
    cfg = to_container(compose("render", [f"body.cache_dir={cache}", "n_clips=24", "hair.style_order=cycle",
                                          "hair.strand_scale=0.02", "clip.fps=8", "clip.seconds=0.25"]))
    model = body.resolve_model(None, cache_dir=cache)
    out: dict[str, list[dict]] = {}
    for spec in plan.plan(cfg, model):
        frames = motions.motion_frames(spec.motion, spec.n_frames, spec.fps)
        posed = body.pose_body(model, spec.body["betas"], frames)
        _, groom = hair_motion(spec, posed)
        center = posed.rest_vertices[posed.head].mean(axis=0)
        out.setdefault(spec.hair["geometry"]["style"], []).append(stats(groom.points.astype(np.float64), center))
    return out, cfg


def test_every_family_in_24_clips_and_each_distinct(families):
    out, cfg = families
    assert set(out) == set(cfg["hair"]["styles"])
    mean = {f: {k: np.mean([s[k] for s in v]) for k in v[0]} for f, v in out.items()}
    for a, b in itertools.combinations(sorted(mean), 2):
        rel = {k: abs(mean[a][k] - mean[b][k]) / max(mean[a][k], mean[b][k]) for k in mean[a]}
        assert max(rel.values()) > 0.15, f"{a} and {b} measure alike: {mean[a]} vs {mean[b]}"
    # The expected order of the families' defining measures.
    assert mean["long_straight"]["length"] > mean["bob"]["length"] > mean["short_crop"]["length"]
    assert mean["coily"]["curvature"] > mean["curly"]["curvature"] > mean["wavy"]["curvature"] \
        > mean["long_straight"]["curvature"]
    print({f: {k: round(v, 3) for k, v in m.items()} for f, m in sorted(mean.items())})
