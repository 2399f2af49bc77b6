"""Several people in one clip: drawn by their shares, placed by their layout, never inside each
other, each with their own coverage (the `instances` output) that adds up to alpha."""
from __future__ import annotations

import numpy as np
import pytest

from assets import camera, clothing, people, stage
from assets import scene as scenes
from core.cli import compose, to_container
from core.colour import ALPHA_MAX
from core.conf import load
from pipelines import plan
from render import layers
from tests.conftest import SMALL

ONLY = {name: "{" + ", ".join(f"{k}: {float(k == name)}" for k in people.LAYOUTS) + "}" for name in people.LAYOUTS}
COUNT = {n: "{" + ", ".join(f"{k}: {float(v == n)}" for k, v in people.COUNTS.items()) + "}" for n in (2, 3, 4)}


def crowd_cfg(cache_dir, n: int, layout: str, *overrides: str) -> dict:
    return to_container(compose("render", [*SMALL, f"body.cache_dir={cache_dir}", "cast.share=1",
                                           f"cast.counts={COUNT[n]}", f"cast.layouts={ONLY[layout]}", *overrides]))


def test_counts_and_layouts_are_drawn_by_their_weights():
    cfg = load("cast/default")
    draws = [people.sample(cfg, s) for s in range(400)]
    several = [d for d in draws if d["count"] > 1]
    assert abs(len(several) / len(draws) - cfg["share"]) < 0.06
    assert {d["count"] for d in several} == {2, 3, 4} and {d["layout"] for d in several} == set(people.LAYOUTS)
    for d in draws:
        assert len(d["places"]) == d["count"] - 1
        if d["layout"] == "group":
            assert d["count"] >= 3
        if d["layout"] == "walk_past":   # one walker, the rest in a row
            assert [p["role"] for p in d["places"]].count("walker") == 1
        if d["layout"] == "side_by_side":   # alternating sides, never two in one spot
            sides = [p["side"] for p in d["places"]]
            assert len(set(np.sign(sides))) == min(2, len(sides)) and len(set(np.round(sides, 6))) == len(sides)


def test_each_person_is_drawn_from_their_own_seed(cache_dir):
    cfg = crowd_cfg(cache_dir, 4, "walk_past", "held.share=0.5", "held.steam.share=1", "held.kinds={phone: 0, cup: 1, "
                    "mug: 1, book: 0, tablet: 0}")
    model = plan.resolve_model(cfg)
    specs = [plan.clip_spec(cfg, i, model) for i in range(6)]
    for s in specs:
        everyone = [{k: getattr(s, k) for k in scenes.PERSON_FIELDS}, *s.people["others"]]
        assert s.people["count"] == len(everyone) == 4
        assert len({p["hair"]["seed"] for p in everyone}) == 4   # their own strands
        assert len({p["hair"]["dynamics"]["wind"]["speed"] for p in everyone}) == 1   # one air for all
        walking = [p for p in s.people["others"] if p["motion"].get("name") == people.WALKER]
        assert len(walking) == 1 and walking[0]["place"]["role"] == "walker" and walking[0]["held"] is None
        assert s.motion.get("name") != people.WALKER
        assert sum(bool(p["held"] and p["held"]["steam"]) for p in everyone) <= 1   # one owner of a volume
        assert s.outputs["instances"]["channels"] == ["person0", "person1", "person2", "person3"]
    assert any(p["held"] for s in specs for p in s.people["others"])
    lone = plan.clip_spec({**cfg, "cast": {**cfg["cast"], "share": 0.0}}, 0, model)
    assert lone.people["others"] == [] and "instances" not in lone.outputs   # written only where there are several


@pytest.mark.slow
@pytest.mark.parametrize("n, layout", [(2, "walk_past"), (3, "side_by_side"), (3, "behind"), (4, "group")])
def test_nobody_stands_inside_anybody_in_any_frame(cache_dir, n, layout):
    cfg = crowd_cfg(cache_dir, n, layout, "clip.seconds=1.5", "cast.spacing=0.3", "cast.group.radius=0.5")
    spec = plan.clip_spec(cfg, 3, plan.resolve_model(cfg))   # drawn too close: pushed apart
    target = scenes.pose(spec)
    cam = camera.place(stage.to_world(target.vertices), stage.to_world(target.joints), 0.0, spec.camera,
                       spec.cycles["width"], spec.cycles["height"], spec.fps)
    crowd = scenes.others(spec, target, cam)
    assert len(crowd) == n - 1
    solid = [np.concatenate([stage.to_world(b.vertices)] + [o.shape.vertices for o in clothing.objects(v, b)], axis=1)
             for v, b in [(spec, target), *crowd]]
    for i in range(n):
        for j in range(i):
            assert people.gaps(solid[i], solid[j]).min() >= 0.9 * spec.people["clearance"], (i, j)
    # The same spec places everyone in the same spots.
    again = scenes.others(spec, target, cam)
    for (_, a), (_, b) in zip(crowd, again):
        assert np.array_equal(a.vertices, b.vertices)
    if layout == "walk_past":   # the walker crosses the frame in front of the target
        walker = crowd[0][1]
        x = [cam.project(stage.to_world(walker.joints[t, :1]), t)[0, 0] for t in (0, spec.n_frames - 1)]
        speed = spec.people["others"][0]["motion"]["params"]["speed"]
        assert abs(x[1] - x[0]) > 0.2 * spec.cycles["width"] * speed
        at = np.asarray(cam.record["position"])
        front = at - stage.to_world(target.joints)[:, 0].mean(0)
        depth = float(np.dot(stage.to_world(walker.joints)[:, 0].mean(0) - at, -front / np.linalg.norm(front)))
        assert 0.3 < depth < np.linalg.norm(front) - 0.3   # between the camera and the target, clear of both
        assert spec.camera["framing"] != "close_up"


def test_instances_round_to_alpha():
    """Four people's coverage in (0, 1) that adds up to alpha: the channels are each within one
    step of their own value and add up to the rounded alpha exactly."""
    rng = np.random.default_rng(0)
    own = rng.dirichlet(np.ones(5), size=(32, 32)).astype(np.float32)[..., :4] * rng.uniform(0, 1, (32, 32, 1))
    alpha = own.sum(-1)
    frame = {"Combined": np.concatenate([np.zeros((32, 32, 3), np.float32), alpha[..., None]], -1),
             **{f"person{k}": own[..., k] for k in range(4)}}
    o = {"channels": ["person0", "person1", "person2", "person3"], "dtype": "uint16"}
    spec = type("Spec", (), {"outputs": {}})()
    out = layers.instances(frame, o, layers.Clip(spec, {}))
    assert np.abs(out.astype(np.int64).sum(-1) - np.round(alpha * ALPHA_MAX)).max() <= 1
    assert np.abs(out / ALPHA_MAX - own).max() <= 1.0 / ALPHA_MAX


@pytest.mark.blender
@pytest.mark.slow
def test_instances_add_up_to_alpha_and_a_hidden_person_covers_nothing(cache_dir):
    from render.scene import build_and_render
    cfg = crowd_cfg(cache_dir, 2, "behind", "cast.behind.side=0.0", "cast.behind.depth=1.0", "cycles.width=96",
                    "cycles.height=64", "camera.framing.weights={close_up: 0, upper_body: 1, full_body: 0}")
    spec = plan.clip_spec(cfg, 1, plan.resolve_model(cfg))
    built = scenes.build(spec)
    # Each person's objects write their own group; the set and the air write none.
    groups = [{m.get("instance") for m in o.materials} for o in built.objects if not o.plate and o.role != "effect"]
    assert built.instances() == ("person0", "person1") and all(len(g) == 1 and None not in g for g in groups)
    assert {g for gs in groups for g in gs} == {"person0", "person1"}
    out = build_and_render(spec, built, threads=2)
    inst, alpha = out.arrays["instances"].astype(np.int64), out.arrays["alpha"].astype(np.int64)
    assert inst.shape == alpha.shape + (2,)
    assert np.abs(inst.sum(-1) - alpha).max() <= 2
    front, back = inst[..., 0], inst[..., 1]
    assert (back > 0).any()                        # the one behind shows somewhere (beside or above the target)
    hidden = front == ALPHA_MAX
    assert hidden.sum() > 0.1 * hidden.size and (back[hidden] == 0).all()
    again = build_and_render(spec, scenes.build(spec), threads=2)   # the same spec, from scratch
    assert np.array_equal(again.arrays["instances"], out.arrays["instances"])
