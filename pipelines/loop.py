"""`python -m pipelines.loop` (`make loop`): the whole loop, small, in one command.

Renders a small store; composites its training clips and mattes them with the classical baseline
(the guide the mask-guided model will refine, so it also learns that guide's own errors);
fine-tunes the tiny model twice (mask-free, the paper's mode, and mask-guided); composites the
held-out clips into a benchmark set; mattes that set with the untrained mask-guided model (its
step-0 weights), both fine-tuned ones and the classical baseline; puts the true alpha through the
model's autoencoder at the inference size (the ceiling of a mask-free output); evaluates them all;
mattes the bundled real video; and writes `<output_dir>/report.md`: one table per resolution, the
training curves, the per-frame metric plots and contact sheets of the predictions.

Each stage is one of the project's own apps called with the overrides listed for it in
conf/loop.yaml, and each is resumable, so a rerun after an interruption picks up where it stopped
(finished clips, checkpoints, benchmark clips and matted clips are kept).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from core import done, rules
from core.checks import integer, one_of, writable

from core.cli import UserError, app, compose, run_app, to_container
from gvm_train import infer
from gvm_train.finetune import train
from gvm_train.pipeline import GVMPipeline
from matting import classical, layout, sheet
from matting.video import open_input
from matting.evaluate import compare_table, evaluate, write_report as write_evaluation
from pipelines import benchmark_set

MODELS = {   # method: (fine-tune folder under output_dir, saved model in it)
    "untrained": ("finetune_guided", "initial"),
    "fine-tuned": ("finetune", "final"),
    "mask-guided": ("finetune_guided", "final"),
}
CEILING = "autoencoder"   # the true alpha through the fine-tuned model's autoencoder at the inference size
METHODS = (*MODELS, "classical", CEILING)
SHOWN = (*MODELS, "classical")   # the contact sheet's prediction columns


def _cfg(name: str, overrides: list[str]) -> dict:
    return to_container(compose(name, overrides))


class Stages:
    """Runs the stages in order, timing each."""

    def __init__(self, c: dict):
        self.c, self.out = c, Path(c["output_dir"]).resolve()
        self.seconds: dict[str, float] = {}

    def timed(self, name: str, fn, *args):
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        result = fn(*args)
        self.seconds[name] = round(time.perf_counter() - start, 1)
        print(f"== {name}: {self.seconds[name]:.0f} s ==", flush=True)
        return result

    @property
    def store(self) -> Path:
        return self.out / "synth.zarr"

    def render(self) -> None:
        """The render app in its own process, as `make render` runs it (Ray and Blender leave with it)."""
        code, _ = run_app("pipelines.render", [*self.c["render"], f"store.path={self.store}",
                                               f"hydra.run.dir={self.out / 'render_run'}"])
        if code:
            raise UserError(f"render: exit status {code} (see its summary above; rerun make loop to retry what failed)")

    def guide_sets(self) -> list[dict[str, str]]:
        """The training clips composited (conf guided_train) and matted by the classical baseline:
        the mask-guided model also learns from the errors of the guide it will refine."""
        if self.c["guide"] != "classical" or not self.c["guided_train"]:
            return []
        sets = benchmark_set.build(_cfg("benchmark_set", [*self.split, *self.c["guided_train"], "clips=train",
                                                          f"stores=[{self.store}]",
                                                          f"output_dir={self.out / 'guided_train'}"]))
        for s in sets:
            self.classical(s, self.out / "guided_train_classical" / s.name)
        return [{"frames": str(s), "guide": str(self.out / "guided_train_classical" / s.name)} for s in sets]

    def finetune(self, guide_sets: list[dict[str, str]]) -> None:
        sets = ",".join(f"{{frames:'{s['frames']}',guide:'{s['guide']}'}}" for s in guide_sets)
        guided = [*self.c["guided"], f"data.guided_sets.sets=[{sets}]"]
        for folder, extra in (("finetune", self.c["mask_free"]), ("finetune_guided", guided)):
            print(f"-- {folder}", flush=True)
            train(_cfg("finetune", [*self.c["finetune"], *extra, f"data.stores=[{self.store}]",
                                    f"output_dir={self.out / folder}", "train.save_initial=true"]))

    @property
    def split(self) -> list[str]:
        """finetune's split keys: a benchmark set made with others could hold a training clip."""
        return [o for o in self.c["finetune"] if o.startswith("data.")]

    def benchmark(self) -> list[Path]:
        return benchmark_set.build(_cfg("benchmark_set", [*self.split, *self.c["benchmark"], f"stores=[{self.store}]",
                                                          f"output_dir={self.out / 'benchmark'}"]))

    def classical(self, bench: Path, root: Path) -> None:
        """The classical baseline's mattes of every clip of a set, under root/<clip>/."""
        classical_cfg = _cfg("classical", self.c["classical"])
        for clip in layout.clips(bench, layout.COM):
            dest = root / clip.name
            cc = {**classical_cfg, "input": str(clip / layout.COM), "output_dir": str(dest), "mask": self.instance_mask(clip)}
            if not done.is_done(dest, classical.settings(cc)):
                print(f"classical: {bench.name}/{clip.name}", flush=True)
                classical.matte_folder(cc["input"], dest, cc)

    def instance_mask(self, clip: Path) -> str | None:
        """With guide=instance, a set clip of one person of several is guided by that person's
        instance mask (its guide/), the classical baseline and the mask-guided models alike."""
        return str(clip / layout.GUIDE) if self.c["guide"] == "instance" and (clip / layout.GUIDE).is_dir() else None

    def predict(self, sets: list[Path]) -> None:
        for bench in sets:
            self.classical(bench, self.out / "pred" / bench.name / "classical")   # first: it can be the models' guide
            for method in (*MODELS, CEILING):
                pipe = None
                for clip in layout.clips(bench, layout.COM):
                    dest = self.out / "pred" / bench.name / method / clip.name
                    folder, saved = MODELS.get(method, MODELS["fine-tuned"])
                    checkpoint = self.out / folder / saved
                    if pipe is None:
                        base = _cfg("infer", [*self.c["infer"], f"checkpoint={checkpoint}"])
                        pipe = infer.load_pipeline(str(checkpoint), *infer.device_and_dtype(base))
                    given = self.instance_mask(clip) or (
                        self.out / "pred" / bench.name / "classical" / clip.name / layout.PHA if self.c["guide"] == "classical"
                        else "segmenter")
                    guide = f"mask={given}" if pipe.model.config.mask_guided else "mask=segmenter"   # a mask-free model takes none
                    ic = _cfg("infer", [*self.c["infer"], f"input={clip / layout.COM}", guide,
                                        f"checkpoint={checkpoint}", f"output_dir={dest}"])
                    if method == CEILING:
                        autoencode(pipe, clip, dest, ic)
                    elif not done.is_done(dest, infer.settings(ic)):
                        print(f"{method}: {bench.name}/{clip.name}", flush=True)
                        infer.matte(ic, pipe)

    def evaluate(self, sets: list[Path]) -> dict[str, dict[str, Any]]:
        ec = _cfg("evaluate", self.c["evaluate"])
        results: dict[str, dict[str, Any]] = {}
        for bench in sets:
            results[bench.name] = {}
            for method in METHODS:
                r = evaluate(self.out / "pred" / bench.name / method, bench, ec["protocol"], ec["metrics"], ec["workers"],
                             threads=ec["threads"], truth_cache_mb=ec["truth_cache_mb"])
                write_evaluation(r, self.out / "eval" / bench.name / f"{method}.json")
                results[bench.name][method] = r
        return results


def real_video(out: Path, c: dict) -> Path:
    """The bundled real clip (`real.input`) matted by the classical baseline and both fine-tuned models,
    the mask-guided one guided by that classical matte, and a contact sheet of them (frames as rows)."""
    r = c["real"]
    root = out / "real"
    classical_cfg = _cfg("classical", [*c["classical"], f"max_frames={r['frames']}"])
    classical.matte_folder(r["input"], root / "classical", classical_cfg)
    shown = {"classical": root / "classical"}
    for method in ("fine-tuned", "mask-guided"):
        folder, saved = MODELS[method]
        guide = [f"mask={root / 'classical' / layout.PHA}"] if method == "mask-guided" else []   # the mask-free takes none
        ic = _cfg("infer", [*c["infer"], f"input={r['input']}", f"max_frames={r['frames']}", *guide,
                            f"checkpoint={out / folder / saved}", f"output_dir={root / method}"])
        infer.matte(ic)
        shown[method] = root / method
    frames = list(open_input(r["input"]).frames(0, r["frames"]))
    picks = np.linspace(0, len(frames) - 1, r["sheet_frames"]).round().astype(int)
    names = [layout.frames(root / "classical", layout.PHA)[i].name for i in picks]
    rows = [sheet.row([sheet.tile(frames[i], height=r["cell"])]
                      + [sheet.tile(cv2.imread(str(d / layout.PHA / n), cv2.IMREAD_GRAYSCALE), height=r["cell"])
                         for d in shown.values()], label=f"frame {i}") for i, n in zip(picks, names)]
    labels = ("frame", *shown)
    return sheet.write(out / "real_sample.png", sheet.grid(rows, columns=labels, column_width=rows[0].shape[1] // len(labels)))


def autoencode(pipe: GVMPipeline, clip: Path, dest: Path, ic: dict) -> None:
    """The clip's true alpha through the model's autoencoder at the size inference works at."""
    record = {"method": CEILING, "checkpoint": ic["checkpoint"], "short_side": ic["short_side"],
              "max_long_side": ic["max_long_side"], "truth": str(clip / layout.PHA)}
    if done.is_done(dest, record):
        return
    files = layout.frames(clip, layout.PHA)
    truth = (cv2.imread(str(f), cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255 for f in files)
    (dest / layout.PHA).mkdir(parents=True, exist_ok=True)
    for f, a in zip(files, pipe.autoencode(truth, short_side=ic["short_side"], max_long_side=ic["max_long_side"])):
        cv2.imwrite(str(dest / layout.PHA / f.name), np.rint(a * 255).astype(np.uint8))
    done.mark(dest, record)


def prediction_sheet(bench: Path, pred_root: Path, path: Path, cell: int, max_clips: int) -> Path:
    """Per clip (row): the composite, the true alpha and each method's alpha at the middle frame."""
    rows = []
    for clip in layout.clips(bench, layout.COM)[:max_clips]:
        name = layout.frames(clip, layout.PHA)[len(layout.frames(clip, layout.PHA)) // 2].name
        images = [cv2.cvtColor(cv2.imread(str(clip / layout.COM / name)), cv2.COLOR_BGR2RGB),
                  cv2.imread(str(clip / layout.PHA / name), cv2.IMREAD_GRAYSCALE)]
        images += [cv2.imread(str(pred_root / m / clip.name / layout.PHA / name), cv2.IMREAD_GRAYSCALE) for m in SHOWN]
        rows.append(sheet.row([sheet.tile(i, height=cell) for i in images]))
    labels = ("composite", "truth", *SHOWN)
    return sheet.write(path, sheet.grid(rows, columns=labels, column_width=rows[0].shape[1] // len(labels)))


def write_report(out: Path, results: dict[str, dict[str, Any]], seconds: dict[str, float], c: dict) -> Path:
    guide = {"classical": "the classical baseline's matte", "segmenter": "the segmenter's person map",
             "instance": "the target person's instance mask where a clip holds several people (the classical "
                         "baseline too), else the segmenter's person map"}[c["guide"]]
    lines = ["# gvm-synth loop report", "",
             "Render a small store, fine-tune the tiny model on it mask-free (the paper's mode) and mask-guided, "
             "matte its held-out clips composited onto still and moving backgrounds, and score: the untrained "
             "mask-guided model (its step-0 weights), both fine-tuned models, the classical baseline (mediapipe "
             f"segmentation -> trimap -> closed-form matting) and the autoencoder ceiling (the true alpha through "
             f"the model's autoencoder at the inference size: no model output can do better). The mask-guided "
             f"models are guided by {guide}.", "",
             "Stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
             + f" (total {sum(seconds.values()):.0f} s)", ""]
    for bench, by_method in results.items():
        lines += [f"## {bench}", "", compare_table(by_method), ""]
        picture = prediction_sheet(out / "benchmark" / bench, out / "pred" / bench, out / f"predictions_{bench}.png",
                                   c["report"]["cell"], c["report"]["clips"])
        lines += [f"![predictions]({picture.name})", ""]
        lines += [f"Per-frame metrics: [{m}](eval/{bench}/{m}.png)" for m in METHODS] + [""]
    lines += ["## The bundled real video", "",
              f"{c['real']['input']}: its frames, the classical matte, the mask-free and the mask-guided model's "
              "(guided by that classical matte).", "", "![real video](real_sample.png)", ""]
    lines += ["## Training", "", "mask-free: ![loss](finetune/loss.png)", "",
              "mask-guided: ![loss](finetune_guided/loss.png)", ""]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    (out / "report.json").write_text(json.dumps(
        {"seconds": seconds, "dataset": {b: {m: r["dataset"] for m, r in by.items()} for b, by in results.items()}},
        indent=1, default=lambda x: None))
    return report


def run(c: dict) -> Path:
    s = Stages(c)
    s.out.mkdir(parents=True, exist_ok=True)
    s.timed("render", s.render)
    guide_sets = s.timed("guides", s.guide_sets)
    s.timed("finetune", s.finetune, guide_sets)
    sets = s.timed("benchmark", s.benchmark)
    s.timed("predict", s.predict, sets)
    results = s.timed("evaluate", s.evaluate, sets)
    s.timed("real video", real_video, s.out, c)
    report = write_report(s.out, results, s.seconds, c)
    print("\n" + report.read_text())
    return report


def check_stages(c: dict) -> None:
    """Every stage's config composed and checked as its app checks it, before the first stage: a bad
    override fails now, named by the stage's key, not an hour into the loop."""
    from gvm_train.finetune import check as check_finetune
    from gvm_train.infer import check as check_infer
    from matting.metrics import check_config
    from pipelines import plan
    out = Path(c["output_dir"]).resolve()
    store = [f"data.stores=[{out / 'synth.zarr'}]", f"output_dir={out / 'check'}"]
    split = [o for o in c["finetune"] if o.startswith("data.")]
    stages = {"render": ("render", [*c["render"], f"store.path={out / 'synth.zarr'}"]),
              "finetune": ("finetune", [*c["finetune"], *c["mask_free"], *store]),
              "guided": ("finetune", [*c["finetune"], *c["guided"], *store]),
              "guided_train": ("benchmark_set", [*split, *c["guided_train"], *store]),
              "benchmark": ("benchmark_set", [*split, *c["benchmark"], *store]),
              "infer": ("infer", c["infer"]), "classical": ("classical", c["classical"]),
              "evaluate": ("evaluate", c["evaluate"])}
    own = {"render": plan.check, "finetune": check_finetune, "evaluate": lambda sub: check_config(sub["metrics"]),
           "infer": lambda sub: check_infer({**sub, "input": c["real"]["input"]})}
    for key, (name, overrides) in stages.items():
        try:
            sub = _cfg(name, overrides)
            base = compose(name, [])
            groups = [o for o in overrides if isinstance(base.get(o.split("=", 1)[0]), DictConfig)]
            rules.check(sub, _cfg(name, groups))
            own.get(name, lambda sub: None)(sub)
        except (HydraException, OmegaConfBaseException, ValueError) as e:   # UserError is a ValueError
            raise UserError(f"{key}: {' '.join(str(e).split())[:300]}") from None
    open_input(c["real"]["input"])   # the real video the loop mattes last: readable now


@app("loop")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    writable(c["output_dir"], "output_dir")
    one_of(c["guide"], ("classical", "segmenter", "instance"), "guide")
    for key in ("frames", "sheet_frames", "cell"):
        integer(c["real"][key], f"real.{key}", 1)
    integer(c["report"]["clips"], "report.clips", 1)
    integer(c["report"]["cell"], "report.cell", 8)
    check_stages(c)
    print(f"report: {run(c)}")
    return 0


if __name__ == "__main__":
    main()
