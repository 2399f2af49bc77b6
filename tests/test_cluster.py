"""Clusters: a store behind an fsspec URL, and a real two-node Ray cluster joined by address.

The cluster is two `ray start --block` processes on this machine (a head and a second node, one
CPU each), each in a session of its own; teardown kills exactly those processes and their
descendants (never `ray stop`, which would stop every Ray cluster on the machine).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import zarr

import clipstore
from tests.conftest import SMALL
from tests.test_faults import assert_valid, driver, finish, ray_tmp  # noqa: F401 - ray_tmp is a fixture

RAY = str(Path(sys.executable).parent / "ray")


def _arrays(t: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"fgr": rng.integers(0, 256, (t, 8, 6, 3), dtype=np.uint8),
            "alpha": rng.integers(0, 65536, (t, 8, 6), dtype=np.uint16)}


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_store_behind_a_url(tmp_path, scheme):
    url = f"memory://{tmp_path.name}/s.zarr" if scheme == "memory" else f"file://{tmp_path}/s.zarr"
    root = clipstore.create(url, {"note": "url"})
    a, b = _arrays(3, 0), _arrays(2, 1)
    clipstore.write_clip(root, "a", a, {"source": "synthetic", "fps": 24.0})
    clipstore.write_clip(root, "b", b, {"source": "synthetic", "fps": 24.0})
    root["clips/b"].attrs["complete"] = False  # as a writer killed before its last step leaves it
    again = clipstore.open_store(url)
    assert again.attrs["note"] == "url" and clipstore.complete_ids(again) == ["a"]
    np.testing.assert_array_equal(clipstore.read_clip(again, "a")["alpha"][:], a["alpha"])
    assert clipstore.check_clip(again, "a").ok
    with pytest.raises(clipstore.StoreError, match="already complete"):
        clipstore.write_clip(clipstore.create(url, {}), "a", b, {"source": "synthetic", "fps": 24.0})
    if scheme == "file":  # the same bytes a plain local reader sees
        g = zarr.open_group(tmp_path / "s.zarr", mode="r", use_consolidated=False)
        np.testing.assert_array_equal(g["clips/a/fgr"][:], a["fgr"])
    with pytest.raises(clipstore.StoreError, match="does not exist"):
        clipstore.open_store(url.replace("s.zarr", "missing.zarr"))


@pytest.mark.slow
def test_unknown_url_scheme_is_one_line(tmp_path, cache_dir):
    r = subprocess.run([sys.executable, "-m", "pipelines.render", *SMALL, f"body.cache_dir={cache_dir}",
                        "store.path=nosuch://bucket/s.zarr"], cwd=Path(__file__).parent.parent, capture_output=True,
                       text=True, timeout=120, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ") and "nosuch://bucket/s.zarr" in lines[0] and "Protocol not known" in lines[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray_start(tmp: str, *args: str) -> subprocess.Popen:
    log = open(Path(tmp) / f"ray-start-{time.monotonic_ns()}.log", "w")
    return subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--disable-usage-stats",
                             f"--dashboard-agent-listen-port={_free_port()}", *args],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})


def _alive_nodes(address: str) -> list[str]:
    """Node ids of the cluster, asked from a short-lived process (this one stays out of Ray)."""
    code = ("import ray; ray.init(address=%r, logging_level='ERROR', log_to_driver=False); "
            "print(' '.join(n['NodeID'] for n in ray.nodes() if n['Alive']))" % address)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    return r.stdout.split() if r.returncode == 0 else []


@pytest.fixture
def two_nodes(ray_tmp):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    started = [_ray_start(ray_tmp, "--head", f"--port={port}", f"--temp-dir={ray_tmp}",
                          "--include-dashboard=false", f"--ray-client-server-port={_free_port()}")]
    try:
        deadline = time.monotonic() + 90
        while not (nodes := _alive_nodes(address)) and time.monotonic() < deadline:
            time.sleep(1)
        assert len(nodes) == 1, "the head did not come up"
        started.append(_ray_start(ray_tmp, f"--address={address}"))
        while len(nodes := _alive_nodes(address)) < 2 and time.monotonic() < deadline:
            time.sleep(1)
        assert len(nodes) == 2, "the second node did not join"
        yield address, sorted(nodes), [p.pid for p in started]   # what a test may signal: these and their descendants
    finally:
        procs = []
        for p in started:
            try:
                procs += [psutil.Process(p.pid), *psutil.Process(p.pid).children(recursive=True)]
            except psutil.NoSuchProcess:
                pass
        for p in procs:  # only what this fixture started: the two `ray start` and their descendants
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=30)


@pytest.mark.blender
@pytest.mark.ray
@pytest.mark.slow
def test_render_on_a_two_node_cluster(two_nodes, tmp_path, ray_tmp, cache_dir):
    address, nodes, _ = two_nodes
    path = tmp_path / "store.zarr"
    # Joined by address, with the store given as a URL; one CPU per task, so the two clips can
    # only run at the same time on different nodes.
    proc, log = driver(path, ray_tmp, cache_dir, "n_clips=2", f"cluster.address={address}",
                       "cluster.cpus_per_worker=1", url=f"file://{path}")
    out = finish(proc, log)
    assert proc.returncode == 0, out
    assert "2 rendered, 0 failed" in out
    assert_valid(path, ["clip000000", "clip000001"])
    g = zarr.open_group(path, mode="r", use_consolidated=False)
    used = sorted(g[f"clips/{cid}"].attrs["render"]["node"] for cid in ("clip000000", "clip000001"))
    assert used == nodes and "rendered on 2 nodes" in out
    # The workers ran the checkout the driver shipped (runtime_env working_dir), not the files here.
    shipped = list(Path(ray_tmp).glob("session_*/runtime_resources/working_dir_files/_ray_pkg_*/pipelines/render.py"))
    assert shipped and shipped[0].read_text() == (Path(__file__).parent.parent / "pipelines/render.py").read_text()
