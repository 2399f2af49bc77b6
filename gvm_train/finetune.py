"""`python -m gvm_train.finetune`: fine-tune the generative matting model on gvm-synth stores.

    python -m gvm_train.finetune data.stores=[data/synth.zarr] model=tiny train.steps=200 output_dir=runs/a

Writes `<output_dir>/checkpoints/step-XXXXXXX/` (model folder or LoRA adapter, optimizer,
scheduler, EMA), `log.csv`, `val.csv`, `loss.png`, TensorBoard events under `tensorboard/`
and the final model to `<output_dir>/final` (with train.save_initial, the step-0 model to
`<output_dir>/initial`, the untrained reference for evaluations).
A rerun continues from the latest checkpoint. Resuming is exact: sample i of the run is a pure
function of (seed, i) and each step's noise of (seed, step), so a resumed run replays what an
uninterrupted one would have done.
"""
from __future__ import annotations

import csv
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from core import seeds, stops
from core.checks import integer, is_number, one_of, writable
from core.cli import UserError, app, to_container
from gvm_train import data
from gvm_train.data import guided_sets, latent_cache
from gvm_train.model import GVMModel, build_model
from gvm_train.model.objectives import predict_alpha, training_loss
from gvm_train.model.regimes import apply_regime, has_lora, load_lora, merge_lora, save_lora
from gvm_train.pipeline import GVMPipeline

LOG_FIELDS = ("step", "loss", "latent", "l1", "laplacian", "gradient", "lr", "seconds")


def save_model(model: GVMModel, folder: Path) -> Path:
    """The model as a pipeline folder, written aside and renamed: a stopped run leaves no half model."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    GVMPipeline.from_model(model).save_pretrained(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return folder


def _checkpoints(out: Path) -> list[Path]:
    return sorted(p for p in (out / "checkpoints").glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))


def load_model(c: dict, out: Path, ckpt: Path | None) -> GVMModel:
    lora = c["model"]["regime"]["name"] == "lora"
    if ckpt is None:
        return build_model(c["model"])
    model = GVMPipeline.from_pretrained(out / "base" if lora else ckpt / "model").model
    if model.config.preset != c["model"]["preset"]:
        raise ValueError(f"checkpoint {ckpt} holds a {model.config.preset!r} model but the config asks for "
                         f"model={c['model']['preset']}; use another output_dir or the same model")
    if model.config.mask_guided != bool(c["model"]["gvm"]["mask_guided"]):
        raise ValueError(f"checkpoint {ckpt} holds a model with mask_guided={model.config.mask_guided}; "
                         "use another output_dir or the same model.gvm.mask_guided")
    if lora:
        load_lora(model.unet, ckpt / "lora")
    return model


def save_checkpoint(out: Path, step: int, model: GVMModel, opt, sched, ema, keep: int) -> Path:
    final = out / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if has_lora(model.unet):
        save_lora(model.unet, tmp / "lora")
    else:
        save_model(model, tmp / "model")
    torch.save({"step": step, "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "ema": ema.state_dict() if ema is not None else None}, tmp / "state.pt")
    os.replace(tmp, final)  # a checkpoint exists whole or not at all
    for old in _checkpoints(out)[:-keep]:
        shutil.rmtree(old)
    return final


@torch.no_grad()
def validation_mad(model: GVMModel, val_set: data.WindowDataset, batch_size: int) -> float:
    """1e3 x mean |predicted - true alpha| over the held-out windows (MAD, as matting papers report)."""
    model.eval()
    errors = []
    for start in range(0, len(val_set), batch_size):
        batch = torch.utils.data.default_collate([val_set[i] for i in range(start, min(start + batch_size, len(val_set)))])
        pred = predict_alpha(model, batch["rgb"], batch.get("mask"), generator=torch.Generator().manual_seed(start))
        errors.append((pred.cpu() - batch["alpha"]).abs().flatten(1).mean(1))
    model.train()
    return 1e3 * float(torch.cat(errors).mean())


def _keep_rows_upto(path: Path, step: int) -> None:
    """A run killed after its last checkpoint logged steps that the resumed run logs again."""
    if path.exists():
        with path.open() as f:
            rows = [r for r in csv.DictReader(f) if int(r["step"]) <= step]
        with path.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()) if rows else ["step"])
            w.writeheader()
            w.writerows(rows)


def _append(path: Path, fields: tuple[str, ...] | list[str], row: dict) -> None:
    new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields))
        if new:
            w.writeheader()
        w.writerow(row)


def plot(out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.5))
    with (out / "log.csv").open() as f:
        rows = list(csv.DictReader(f))
    ax[0].plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], lw=0.8)
    ax[0].set(xlabel="step", ylabel="training loss", yscale="log", title="loss")
    if (out / "val.csv").exists():
        with (out / "val.csv").open() as f:
            val = list(csv.DictReader(f))
        ax[1].plot([int(r["step"]) for r in val], [float(r["mad"]) for r in val], "o-")
    ax[1].set(xlabel="step", ylabel="MAD (1e3 x mean |error|)", title="validation on held-out clips")
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
    return out / "loss.png"


MIXED_PRECISION = ("no", "fp16", "bf16")


def check(c: dict) -> None:
    """Every `train` and `data` value, before a store is opened or a weight built."""
    t = c["train"]
    for key in ("steps", "batch_size", "grad_accum", "checkpoint_every", "keep_checkpoints", "val_windows", "log_every"):
        integer(t[key], f"train.{key}", 1)
    for key in ("warmup_steps", "val_every", "workers", "threads"):
        integer(t[key], f"train.{key}", 0)
    integer(t["latent_cache"]["windows"], "train.latent_cache.windows", 0)
    integer(t["latent_cache"]["batch_size"], "train.latent_cache.batch_size", 1)
    integer(c["seed"], "seed", 0)
    for key in ("lr", "weight_decay"):
        if not is_number(t[key]) or t[key] < 0 or (key == "lr" and t[key] == 0):
            raise UserError(f"train.{key} must be a {'positive' if key == 'lr' else 'non-negative'} number, got {t[key]!r}")
    one_of(t["mixed_precision"], MIXED_PRECISION, "train.mixed_precision")
    if t["mixed_precision"] != "no" and not torch.cuda.is_available():
        raise UserError(f"train.mixed_precision={t['mixed_precision']} needs a CUDA GPU; on the CPU use no")
    data.check(c["data"])
    writable(c["output_dir"], "output_dir")
    if t["latent_cache"]["dir"]:
        writable(t["latent_cache"]["dir"], "train.latent_cache.dir")


def train(c: dict) -> dict[str, Any]:
    from accelerate import Accelerator
    from diffusers.training_utils import EMAModel
    from tqdm import tqdm

    check(c)
    t, out, seed = c["train"], Path(c["output_dir"]), c["seed"]
    if t["threads"]:
        torch.set_num_threads(t["threads"])
    accelerator = Accelerator(mixed_precision=t["mixed_precision"], gradient_accumulation_steps=t["grad_accum"],
                              cpu=not torch.cuda.is_available())
    rank, nproc = accelerator.process_index, accelerator.num_processes
    try:
        refs = data.index_stores(c["data"]["stores"])
        train_refs, val_refs = data.split(refs, c["data"]["val_fraction"], c["data"]["val_min_clips"])
        per_step = t["batch_size"] * t["grad_accum"] * nproc
        guided = bool(c["model"]["gvm"]["mask_guided"])
        train_set = data.WindowDataset(train_refs, c["data"], seed, t["steps"] * per_step, guide=guided)
        sets = c["data"]["guided_sets"]
        if sets["sets"] and not guided:
            raise ValueError("data.guided_sets: only a mask-guided model (model.gvm.mask_guided=true) trains on them")
        if sets["sets"] and sets["share"] > 0:
            windows = guided_sets.GuidedSetWindows(guided_sets.index(sets["sets"]), c["data"], seed, len(train_set))
            train_set = guided_sets.Mixed(train_set, windows, sets["share"], seed)
        val_set = data.WindowDataset(val_refs or train_refs, c["data"], seeds.derive(seed, "val") % 2**32, t["val_windows"],
                                     guide=guided)
        found = _checkpoints(out) if t["resume"] else []
        ckpt = found[-1] if found else None
        model = load_model(c, out, ckpt)
    except (ValueError, FileNotFoundError) as e:
        raise UserError(str(e)) from None
    out.mkdir(parents=True, exist_ok=True)
    model.to(accelerator.device)
    lora = c["model"]["regime"]["name"] == "lora"
    if lora and ckpt is None:
        save_model(model, out / "base")  # adapters are saved alone; the frozen base once
    if t["save_initial"] and ckpt is None:
        save_model(model, out / "initial")  # the step-0 model: the "untrained" row of an evaluation
    params = apply_regime(model, c["model"]["regime"])
    opt = torch.optim.AdamW(params, lr=t["lr"], weight_decay=t["weight_decay"])
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, t["warmup_steps"])))
    ema = EMAModel(params, decay=t["ema"]["decay"]) if t["ema"]["enabled"] else None
    start = 0
    if ckpt is not None:
        state = torch.load(ckpt / "state.pt", weights_only=False)
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if ema is not None and state["ema"] is not None:
            ema.load_state_dict(state["ema"])
        start = state["step"]
        for name in ("log.csv", "val.csv"):
            _keep_rows_upto(out / name, start)
        print(f"resuming from {ckpt} at step {start}")
    model.unet, opt, sched = accelerator.prepare(model.unet, opt, sched)
    board = None
    if t["tensorboard"] and accelerator.is_main_process:
        from torch.utils.tensorboard import SummaryWriter
        # purge_step drops the events a killed run logged after its last checkpoint.
        board = SummaryWriter(out / "tensorboard", purge_step=start + 1 if start else None)
    # Sample indices as a pure function of (step, micro-batch, process): the data position is the step.
    order = [((s * t["grad_accum"] + m) * nproc + rank) * t["batch_size"] + b
             for s in range(start, t["steps"]) for m in range(t["grad_accum"]) for b in range(t["batch_size"])]
    cache = t["latent_cache"]
    source = train_set
    if cache["windows"]:
        pool = latent_cache.build(train_set, model, cache["windows"], Path(cache["dir"] or out / "latents"),
                                  cache["batch_size"])
        source = latent_cache.CachedWindows(pool, len(train_set))
    loader = torch.utils.data.DataLoader(source, batch_size=t["batch_size"], sampler=order, num_workers=t["workers"])
    def validate(step: int) -> None:
        mad = validation_mad(model, val_set, t["batch_size"])
        _append(out / "val.csv", ("step", "mad"), {"step": step, "mad": mad})
        if board is not None:
            board.add_scalar("val/mad", mad, step)

    if start == 0 and t["val_every"]:
        validate(0)
    batches = iter(loader)
    bar = tqdm(range(start, t["steps"]), initial=start, total=t["steps"], desc="finetune", unit="step",
               disable=not accelerator.is_main_process)
    try:
        for step in bar:
            tick = time.perf_counter()
            for micro in range(t["grad_accum"]):
                batch = next(batches)
                noise = torch.Generator(device=accelerator.device).manual_seed(seeds.derive(seed, "noise", step, micro, rank) % 2**63)
                with accelerator.accumulate(model.unet), accelerator.autocast():
                    out_ = training_loss(model, batch, c["model"]["loss"], generator=noise)
                    accelerator.backward(out_["loss"])
                    opt.step()
                    sched.step()
                    opt.zero_grad()
            if ema is not None:
                ema.step(params)
            done = step + 1
            row = {k: float(out_[k].detach()) for k in LOG_FIELDS[1:6] if k in out_}
            row.update(step=done, lr=sched.get_last_lr()[0], seconds=time.perf_counter() - tick)
            if done % t["log_every"] == 0 or done == t["steps"]:
                _append(out / "log.csv", LOG_FIELDS, row)
                if board is not None:
                    for k in LOG_FIELDS[1:]:
                        if k in row:
                            board.add_scalar(f"train/{k}", row[k], done)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if t["val_every"] and (done % t["val_every"] == 0 or done == t["steps"]):
                validate(done)
            if done % t["checkpoint_every"] == 0 or done == t["steps"]:
                save_checkpoint(out, done, model, opt, sched, ema, t["keep_checkpoints"])
            stops.check()
    except BaseException as e:   # checkpoints are whole or absent; the logs past the last one are trimmed on resume
        if not stops.stopping(e):
            raise
        bar.close()
        last = _checkpoints(out)
        print(f"stopped at step {bar.n}; " + (f"latest checkpoint {last[-1].name}: " if last else "no checkpoint yet: ")
              + "the same command resumes from it", file=sys.stderr, flush=True)
        raise
    if board is not None:
        board.close()
    model.unet = accelerator.unwrap_model(model.unet)
    if ema is not None:
        ema.copy_to(params)
    if has_lora(model.unet):
        merge_lora(model.unet)
    final = save_model(model, out / "final")
    return {"final": str(final), "plot": str(plot(out)), "steps": t["steps"], "resumed_from": start}


@app("finetune")
def main(cfg: DictConfig) -> int:
    result = train(to_container(cfg))
    print(f"final model: {result['final']}\nloss plot: {result['plot']}")
    return 0


if __name__ == "__main__":
    main()
