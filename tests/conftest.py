import os

import pytest

from pipelines.cli import compose, to_container

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

# The smallest settings that still exercise every part: 64 px, 4 frames, few samples and strands.
SMALL = ["cycles.width=64", "cycles.height=64", "cycles.samples=8", "cycles.alpha_samples=16", "clip.fps=8", "clip.seconds=0.5",
         "hair.common.n_strands=3000"]


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
