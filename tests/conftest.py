import os

import numpy as np
import pytest

import clipstore

from core.cli import compose, to_container

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
# The fast SMPL-X-format stand-in body unless a test asks for another (body.model=anny); subprocesses inherit it.
os.environ.setdefault("GVM_BODY_MODEL", "standin")

# The smallest settings that still exercise every part: 64 px, 4 frames, few samples and strands.
SMALL = ["cycles.width=64", "cycles.height=64", "cycles.samples=8", "cycles.alpha_samples=16", "clip.fps=8", "clip.seconds=0.5",
         "hair.strand_scale=0.05", "worn.glasses.share=0", "worn.hat.share=0", "worn.headphones.share=0",
         "worn.earrings.share=0", "worn.scarf.share=0", "held.share=0", "effects.share=0", "cast.share=0"]   # tests/test_worn.py and
# tests/test_held.py wear and hold them


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """One stand-in model build for the whole session (it is cached on disk)."""
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def small_cfg(tmp_path, cache_dir):
    def make(*overrides: str) -> dict:
        return to_container(compose("render", [*SMALL, f"store.path={tmp_path / 'store.zarr'}",
                                               f"body.cache_dir={cache_dir}", *overrides]))
    return make


def write_store(path, n_clips, source="synthetic", t=12, h=40, w=48, bgr=False, value=200):
    """A store of moving discs written through the store API: real zarr, no render needed."""
    root = clipstore.create(path, {})
    yy, xx = np.mgrid[:h, :w]
    for c in range(n_clips):
        alpha = np.zeros((t, h, w), np.uint16)
        for f in range(t):  # a disc that moves one pixel a frame
            alpha[f][(yy - h // 2) ** 2 + (xx - 10 - f) ** 2 < 64] = 65535
        arrays = {"fgr": np.full((t, h, w, 3), value, np.uint8), "alpha": alpha}
        if bgr:
            arrays["bgr"] = np.full((t, h, w, 3), 17, np.uint8)
        clipstore.write_clip(root, f"clip{c:06d}", arrays, {"source": source, "fps": 24.0})
    return str(path)
