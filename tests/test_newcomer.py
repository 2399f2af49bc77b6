"""A newcomer's first hour: every bad input one `error:` line with exit status 2 and nothing
written, values that cannot be meant refused, quiet runs, real stop signals, `--help`, and the
README's model examples run as written (small sizes through overrides)."""
from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.cli import UserError, compose, help_text, to_container
from tests.conftest import SMALL, write_store

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def run(*args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([PY, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "RAY_AUTH_MODE": "disabled"}, **kw)


def one_error_line(p: subprocess.CompletedProcess, *words: str) -> str:
    """Exit status 2, no traceback, the last line `error: ...` naming `words`."""
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    last = [ln for ln in p.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("error: "), p.stderr[-2000:]
    for w in words:
        assert w in last, (w, last)
    return last


@pytest.fixture
def afile(tmp_path) -> Path:
    f = tmp_path / "afile"
    f.write_text("not a folder\n")
    return f


@pytest.mark.parametrize("args, key", [
    (["pipelines.render", "dry_run=plan", "store.path={f}/s.zarr"], "store.path"),
    (["pipelines.render", "dry_run=plan", "store.path={t}/s.zarr", "sheet.path={f}/sheet.png"], "sheet.path"),
    (["pipelines.render", "dry_run=plan", "store.path={t}/s.zarr", "report.path={f}/report"], "report.path"),
    (["matting.classical", "input=sample", "output_dir={f}/out"], "output_dir"),
    (["pipelines.benchmark_set", "stores=[{t}/none.zarr]", "output_dir={f}/b"], "output_dir"),
    (["pipelines.publish", "store={t}/none.zarr", "output_dir={f}/r"], "output_dir"),
    pytest.param(["pipelines.loop", "output_dir={f}/loop"], "output_dir", marks=pytest.mark.slow),   # 6 s
])
def test_output_under_a_file_is_one_line_and_writes_nothing(args, key, afile, tmp_path):
    before = sorted(p.name for p in tmp_path.iterdir())
    p = run(*[a.format(f=afile, t=tmp_path) for a in args], f"hydra.run.dir={tmp_path / 'hydra'}")
    one_error_line(p, key, "is a file")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hydra") == before
    assert afile.read_text() == "not a folder\n"


def test_validate_json_under_a_file_and_negative_workers(afile, tmp_path):
    store = write_store(tmp_path / "s.zarr", 1)
    one_error_line(run("pipelines.validate", store, "--json", str(afile / "r.json")), "--json", "is a file")
    one_error_line(run("pipelines.validate", store, "--workers", "-1"), "--workers")


def test_an_empty_folder_is_not_called_missing(tmp_path):
    (tmp_path / "empty").mkdir()
    last = one_error_line(run("pipelines.validate", str(tmp_path / "empty")))
    assert "empty folder" in last and "does not exist" not in last


def test_a_cluster_that_does_not_answer_fails_within_the_timeout(tmp_path, cache_dir):
    start = time.monotonic()
    p = run("pipelines.render", *SMALL, "n_clips=1", f"store.path={tmp_path / 's.zarr'}", f"body.cache_dir={cache_dir}",
            "cluster.address=127.0.0.1:1", "cluster.connect_timeout_s=2", f"hydra.run.dir={tmp_path / 'h'}", timeout=60)
    one_error_line(p, "cluster.address", "127.0.0.1:1")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("app, overrides, words", [
    ("render", ["hair.styles.bob.n_strands=0", "hair.style_order=cycle", "n_clips=7"], ["bob", "n_strands=0"]),
    ("render", ["+hair.common.n_strands=5000"], ["hair.common.n_strands", "hair.strand_scale"]),
    ("render", ["sheet.frames=0"], ["sheet.frames"]),
    ("render", ["cluster.connect_timeout_s=0"], ["cluster.connect_timeout_s"]),
    ("finetune", ["train.steps=0"], ["train.steps"]),
    ("finetune", ["train.steps=-3"], ["train.steps"]),
    ("finetune", ["train.lr=abc"], ["train.lr"]),
    ("finetune", ["data.size=0"], ["data.size"]),
    ("finetune", ["data.crop_scale=[0.9,0.2]"], ["data.crop_scale"]),
    ("infer", ["num_steps=0"], ["num_steps"]),
    ("infer", ["window=0"], ["window"]),
    ("infer", ["max_frames=0"], ["max_frames"]),
    ("infer", ["overlap=-1"], ["overlap"]),
    ("classical", ["max_frames=0"], ["max_frames"]),
])
def test_values_that_cannot_be_meant_are_refused_before_work(app, overrides, words, tmp_path):
    module = {"render": "pipelines.render", "finetune": "gvm_train.finetune", "infer": "gvm_train.infer",
              "classical": "matting.classical"}[app]
    paths = {"render": [f"store.path={tmp_path / 's.zarr'}", "dry_run=plan", "body.model=standin"],
             "finetune": [f"output_dir={tmp_path / 'ft'}", f"data.stores=[{tmp_path / 'none.zarr'}]"],
             "infer": [f"output_dir={tmp_path / 'inf'}", "input=sample", f"checkpoint={tmp_path / 'none'}"],
             "classical": [f"output_dir={tmp_path / 'cl'}", "input=sample"]}[app]
    cfg = to_container(compose(app, [*paths, *overrides]))
    with pytest.raises(UserError) as e:
        importlib.import_module(module).main.task(cfg)
    for w in words:
        assert w in str(e.value), str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == []   # refused before anything was created


@pytest.mark.parametrize("args, key", [
    (["pipelines.pseudolabel", "input=sample", "store={t}/p.zarr"], "store"),
    (["pipelines.render", "dry_run=plan", "store={t}/s.zarr"], "store"),
    pytest.param(["gvm_train.finetune", "train=5"], "train", marks=pytest.mark.slow),   # 6 s: torch and diffusers load
])
def test_a_value_given_to_a_section_of_keys_is_one_line(args, key, tmp_path):
    p = run(*(a.format(t=tmp_path) for a in args))
    last = one_error_line(p, f"{key}: is a section of keys", f"{key}.")
    assert list(tmp_path.iterdir()) == [], last


@pytest.mark.slow
def test_the_loops_real_video_sheet_needs_frames(tmp_path):
    one_error_line(run("pipelines.loop", "real.sheet_frames=0", f"output_dir={tmp_path / 'loop'}"), "real.sheet_frames")
    assert not (tmp_path / "loop").exists()


def test_overlap_not_below_the_window_is_refused_with_the_models_window(tmp_path):
    from gvm_train import infer
    from gvm_train.model import build_model
    from gvm_train.pipeline import GVMPipeline
    model = tmp_path / "model"
    GVMPipeline.from_model(build_model(to_container(compose("finetune", []))["model"])).save_pretrained(model)
    cfg = to_container(compose("infer", ["input=sample", f"checkpoint={model}", "overlap=8",
                                         f"output_dir={tmp_path / 'out'}"]))
    with pytest.raises(UserError, match="overlap"):
        infer.main.task(cfg)
    # A truncated weights file: one line naming the folder, not three tracebacks.
    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UserError, match=r"vae cannot be loaded"):
        infer.main.task({**cfg, "overlap": 2})
    assert not (tmp_path / "out").exists()


def test_classical_on_a_video_without_a_person_says_so(tmp_path):
    frames = tmp_path / "wall"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):   # a textured grey wall
        cv2.imwrite(str(frames / f"{i:04d}.png"), (120 + 20 * rng.random((72, 96, 3))).astype(np.uint8))
    p = run("matting.classical", f"input={frames}", f"output_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'h'}")
    assert p.returncode == 3, p.stderr[-2000:]
    assert "no person found in any frame" in p.stdout
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["frames"] == 2 and record["frames_without_person"] == 2


def test_a_classical_run_on_the_sample_is_quiet_and_verbose_shows_it_all(tmp_path):
    p = run("matting.classical", "input=sample", "max_frames=2", f"output_dir={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'h'}")
    assert p.returncode == 0, p.stderr[-3000:]
    noise = re.compile(r"TensorFlow|absl|WARNING|PERFORMANCE|Warning|W0000|INFO:")
    assert not noise.search(p.stdout + p.stderr), p.stdout + p.stderr
    assert "classical matting: 100%" in p.stderr and "2 frames of" in p.stdout
    assert "TensorFlow Lite" in (tmp_path / "h" / "libraries.log").read_text()   # kept, not lost
    loud = run("matting.classical", "input=sample", "max_frames=1", f"output_dir={tmp_path / 'out2'}",
               f"hydra.run.dir={tmp_path / 'h2'}", "verbose=true")
    assert loud.returncode == 0 and "TensorFlow Lite" in loud.stderr
    assert not (tmp_path / "h2" / "libraries.log").exists()


@pytest.mark.blender
@pytest.mark.slow
def test_a_render_dry_run_is_quiet(tmp_path, cache_dir):
    p = run("pipelines.render", *SMALL, "dry_run=true", "n_clips=1", f"body.cache_dir={cache_dir}",
            f"store.path={tmp_path / 's.zarr'}", f"hydra.run.dir={tmp_path / 'h'}", timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "probe: frame 1 of clip000000" in p.stdout and "estimate:" in p.stdout
    assert not re.search(r"CUEW|HIPEW|WARNING|Kernel cache|Warp", p.stdout + p.stderr), p.stdout + p.stderr
    assert "CUEW" in (tmp_path / "h" / "libraries.log").read_text()   # kept, not lost


@pytest.mark.slow
def test_an_infer_run_on_the_sample_is_quiet(tmp_path):
    from gvm_train.model import build_model
    from gvm_train.pipeline import GVMPipeline
    model = tmp_path / "model"   # mask-guided: the segmenter (mediapipe, TF Lite) runs too
    GVMPipeline.from_model(build_model(to_container(compose("finetune", ["model.gvm.mask_guided=true"]))["model"])
                           ).save_pretrained(model)
    p = run("gvm_train.infer", "input=sample", f"checkpoint={model}", "max_frames=3", f"output_dir={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'h'}")
    assert p.returncode == 0, p.stderr[-3000:]
    noise = re.compile(r"TensorFlow|absl|WARNING|PERFORMANCE|Warning|W0000|INFO:")
    assert not noise.search(p.stdout + p.stderr), p.stdout + p.stderr
    assert "infer: 100%" in p.stderr and "3 frames of 176x144" in p.stdout


@pytest.mark.parametrize("config", sorted(p.stem for p in (ROOT / "conf").glob("*.yaml")))
def test_every_app_config_composes_with_its_console_keys(config):
    cfg = to_container(compose(config, []))
    assert cfg["verbose"] is False


@pytest.mark.parametrize("module, config", [("pipelines.render", "render"), ("gvm_train.finetune", "finetune"),
                                            ("matting.classical", "classical"), ("pipelines.publish", "publish")])
def test_help_describes_the_app_and_its_main_keys(module, config):
    text = help_text(config, module)
    about = (ROOT / "conf" / f"{config}.yaml").read_text().splitlines()[0].lstrip("# ")
    assert text.startswith(about) and f"python -m {module}" in text
    cfg = to_container(compose(config, []))
    keys = re.findall(r"^  (\S+?)=", text, re.M)
    top = {k.split(".")[0] for k in keys}
    assert top <= set(cfg) | {g.split("=")[0] for g in keys}, top - set(cfg)
    assert len(text.splitlines()) < 120                  # not Hydra's 561 lines
    if config == "render":
        assert "n_clips=4" in text and "verbose=false" in text


def test_help_on_the_command_line_is_fast():
    start = time.monotonic()
    p = run("pipelines.render", "--help")
    assert p.returncode == 0 and "main keys" in p.stdout and "n_clips" in p.stdout
    assert time.monotonic() - start < 10


def test_help_into_a_closed_pipe_ends_quietly():
    # `--help | head`: the reader is gone before the app writes; no traceback for the user.
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.render", "--help"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 1 and "Traceback" not in err and "BrokenPipe" not in err, err


def _sigterm_when(proc: subprocess.Popen, log: Path, needle: str, timeout: float) -> float:
    end = time.monotonic() + timeout
    while not re.search(needle, log.read_text()):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < end, log.read_text()[-3000:]
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    start = time.monotonic()
    proc.wait(30)
    return time.monotonic() - start


def _stopped_by_sigterm(module: str, args: list[str], log: Path, needle: str) -> str:
    """Start `module`, send SIGTERM once its output matches `needle`; it must exit 143 within 10 s.
    Returns what it printed."""
    with open(log, "w") as out:
        proc = subprocess.Popen([PY, "-m", module, *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    took = _sigterm_when(proc, log, needle, 240)
    text = log.read_text()
    assert proc.returncode == 143 and took < 10, text[-2000:]
    return text


@pytest.mark.slow
def test_finetune_stops_on_sigterm_and_resumes_to_the_same_model(tmp_path):
    store = write_store(tmp_path / "s.zarr", 3, t=16, h=40, w=48)
    args = [f"data.stores=[{store}]", "train.steps=6", "train.checkpoint_every=2",
            "train.val_every=0", "train.tensorboard=false", "train.threads=1", f"hydra.run.dir={tmp_path / 'h'}"]
    log = tmp_path / "ft.log"
    text = _stopped_by_sigterm("gvm_train.finetune", [*args, f"output_dir={tmp_path / 'a'}"], log, "3/6")
    assert "stopped at step" in text and "stopped by SIGTERM" in text and "Traceback" not in text
    assert not (tmp_path / "a" / "final").exists()
    assert not list((tmp_path / "a" / "checkpoints").glob("*.tmp"))
    kept = {p: p.read_bytes() for p in (tmp_path / "a" / "checkpoints").rglob("*") if p.is_file()}
    assert kept
    resumed = run("gvm_train.finetune", *args, f"output_dir={tmp_path / 'a'}", timeout=300)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout, resumed.stderr[-2000:]
    straight = run("gvm_train.finetune", *args, f"output_dir={tmp_path / 'b'}", timeout=300)
    assert straight.returncode == 0, straight.stderr[-2000:]
    for name in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        assert (tmp_path / "a" / "final" / name).read_bytes() == (tmp_path / "b" / "final" / name).read_bytes()


# --- the README's model examples, as written -----------------------------------------------------

def readme_commands(*sections: str) -> list[list[str]]:
    """The `.venv/bin/python -m ...` lines of the sh blocks of README.md and every docs/*.md page:
    under these headings (any level, their subsections included, in the order given; each heading
    must be on exactly one page, once), or in every sh block of every page when none is given."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts = [p.read_text() for p in pages]

    def headed(text: str) -> list[list]:   # [level, title, body] per heading; headings in fenced code skipped
        out, fenced = [], False
        for line in text.splitlines(keepends=True):
            if line.startswith("```"):
                fenced = not fenced
            m = None if fenced else re.match(r"(#+) (.+?)\s*$", line)
            if m:
                out.append([len(m.group(1)), m.group(2), ""])
            elif out:
                out[-1][2] += line
        return out

    def commands(body: str) -> list[list[str]]:
        return [shlex.split(ln)[2:] for block in re.findall(r"```sh\n(.*?)```", body, re.S)
                for ln in block.splitlines() if ln.startswith(".venv/bin/python -m ")]

    if not sections:
        return [c for t in texts for c in commands(t)]
    out = []
    for title in sections:
        bodies = []
        for page, text in zip(pages, texts):
            secs = headed(text)
            for i, (level, name, body) in enumerate(secs):
                if name != title:
                    continue
                for sub_level, _, sub_body in secs[i + 1:]:
                    if sub_level <= level:
                        break
                    body += sub_body
                bodies.append((page.relative_to(ROOT), body))
        assert len(bodies) == 1, (title, [str(p) for p, _ in bodies])   # one home for each example section
        out += commands(bodies[0][1])
    return out


SMALLER = {   # documented overrides that make the examples quick; each replaces or adds a key
    "gvm_train.finetune": ["train.steps=2", "train.val_every=0", "train.tensorboard=false"],
    "gvm_train.infer": ["max_frames=3"],
    "matting.classical": ["max_frames=2"],
    "pipelines.benchmark_set": ["frames=4"],
}


def _with(args: list[str], extra: list[str]) -> list[str]:
    keys = {e.split("=")[0] for e in extra}
    return [a for a in args if a.split("=")[0] not in keys] + extra


@pytest.mark.slow
def test_readme_model_examples_run_as_written(tmp_path, monkeypatch):
    commands = readme_commands("Fine-tuning", "Inference", "Benchmark sets and evaluation")
    modules = [c[0] for c in commands]
    assert modules == ["gvm_train.finetune", "gvm_train.infer", "matting.classical", "pipelines.benchmark_set",
                       "gvm_train.infer", "matting.evaluate"], modules
    # Every example written to be run as it stands (`.venv/bin/python -m ...` in an sh block of the README
    # or a docs page) is one of these, so none goes untested.
    assert sorted(map(tuple, readme_commands())) == sorted(map(tuple, commands)), readme_commands()
    (tmp_path / "data").mkdir()
    write_store(tmp_path / "data" / "synth.zarr", 5, t=16, h=36, w=36)
    monkeypatch.chdir(tmp_path)   # the examples' relative paths (data/, runs/, outputs/) land here
    for module, *args in commands:
        extra = SMALLER.get(module, [])
        if module == "gvm_train.infer" and not args[0].endswith("sample"):
            extra = []   # a whole benchmark set: every frame, for evaluate to pair them
        app = importlib.import_module(module).main
        code = app.task(compose(app.config_name, _with(args, extra)))
        assert code == 0, (module, args)
    metrics = json.loads((tmp_path / "outputs" / "eval" / "tiny.json").read_text())
    assert metrics["dataset"]["pha_mad"] >= 0
    assert len(metrics["clips"]) >= 2 and len(metrics["clips"]) % 2 == 0   # each clip on a still and a moving background
    assert (tmp_path / "outputs" / "sample" / "pha" / "0002.png").is_file()
    assert len(list((tmp_path / "outputs" / "sample_classical" / "pha").glob("*.png"))) == 2


@pytest.mark.slow
def test_infer_stops_on_sigterm_and_the_rerun_completes_it(tmp_path):
    from gvm_train.model import build_model
    from gvm_train.pipeline import GVMPipeline
    model = tmp_path / "model"
    GVMPipeline.from_model(build_model(to_container(compose("finetune", []))["model"])).save_pretrained(model)
    args = ["input=sample", f"checkpoint={model}", "threads=1", f"output_dir={tmp_path / 'out'}",
            f"hydra.run.dir={tmp_path / 'h'}"]
    log = tmp_path / "infer.log"
    text = _stopped_by_sigterm("gvm_train.infer", args, log, "20/")
    assert "stopped after" in text and "Traceback" not in text
    pha = tmp_path / "out" / "pha"
    kept = {p.name: p.read_bytes() for p in pha.glob("*.png")}
    assert kept and not (tmp_path / "out" / "run.json").exists() and not list(pha.glob("*.part"))
    again = run("gvm_train.infer", *args, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["frames"] == len(list(pha.glob("*.png")))
    assert all((pha / name).read_bytes() == data for name, data in kept.items())   # the same frames, bit for bit


def _clip_files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store / "clips")): p.read_bytes() for p in (store / "clips").rglob("*") if p.is_file()}


@pytest.mark.slow
def test_pseudolabel_stops_on_sigterm_and_the_rerun_completes_it(tmp_path):
    store = tmp_path / "pseudo.zarr"
    args = ["input=sample", "segmenter=selfie", "clip.seconds=1", "clip.min_seconds=1", "quality.min_score=0",
            f"store.path={store}", f"hydra.run.dir={tmp_path / 'h'}"]
    log = tmp_path / "pl.log"
    text = _stopped_by_sigterm("pipelines.pseudolabel", args, log, "30/120")
    assert "stopped by SIGTERM" in text and "Traceback" not in text
    kept = _clip_files(store)
    clips = lambda: [p for p in (store / "clips").iterdir() if p.is_dir()]  # noqa: E731
    assert 1 <= len(clips()) < 4, clips()   # whole clips only: a clip is there or it is not
    again = run("pipelines.pseudolabel", *args, timeout=300)
    assert again.returncode == 0 and "already done" in again.stdout, again.stderr[-2000:]
    after = _clip_files(store)
    assert len(clips()) == 4
    assert all(after[name] == data for name, data in kept.items())   # the clips written before the stop, bit for bit


@pytest.mark.slow
def test_publish_stops_on_sigterm_and_the_rerun_reuses_what_it_packed(tmp_path):
    from tests.test_publish import make_store
    store = make_store(tmp_path / "s.zarr", n=40, t=12, h=96, w=128)
    out = tmp_path / "release"
    args = [f"store={store}", f"output_dir={out}", "shard_bytes=1", f"hydra.run.dir={tmp_path / 'h'}"]
    log = tmp_path / "publish.log"
    text = _stopped_by_sigterm("pipelines.publish", args, log, r"packing shards: .*\| [1-9]\d*/")   # once a shard is whole
    assert "stopped after" in text and "stopped by SIGTERM" in text and "Traceback" not in text
    assert not (out / "manifest.json").exists()
    kept = {p: p.read_bytes() for p in (out / "data").rglob("*") if p.is_file() and ".part" not in str(p)}
    assert kept and all(p.suffix in (".zip", ".tar") for p in kept)   # whole shards only in sight
    again = run("pipelines.publish", *args, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{len(kept)} reused" in again.stdout, again.stdout
    assert all(p.read_bytes() == data for p, data in kept.items())
    assert run("pipelines.publish", "verify", str(out)).returncode == 0
    assert not [p for p in out.rglob("*") if ".part" in p.name]   # nothing the stop left behind
