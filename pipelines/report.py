"""The diversity report of a store: what its clips sampled, against the ranges it was configured with.

`python -m pipelines.report <store>` (or `store.path=<store>`, plus any render key) writes into
`<store>.report/`: parameters.png (a histogram per numeric parameter with its configured range
shaded, a bar chart per text or yes/no one), parameters.md (the same as a table) and a contact
sheet, and prints the table. Every scalar leaf of every clip's spec and of what the render
resolved (camera placement, exposure, hair measures) is a parameter, so new sampled values appear
without being listed here. The render driver writes the report after each run.
"""
from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from omegaconf import DictConfig

import clipstore
from core.checks import writable
from core.cli import UserError, app, to_container
from pipelines import contact_sheet

SKIPPED = {"clip_id", "path", "seed", "motion_seed", "node", "host", "matrix_world", "frames", "position", "target",
           "pass_seconds", "sha256", "outputs"}   # outputs: the arrays' declarations, listed apart (`arrays`)


def leaves(d: Any, prefix: tuple = ()) -> Iterator[tuple[str, Any]]:
    """(dotted name, value) of every scalar in nested dicts; short numeric lists by index."""
    if isinstance(d, Mapping):
        for k, v in d.items():
            if k not in SKIPPED and not str(k).endswith("_seed"):
                yield from leaves(v, prefix + (str(k),))
    elif isinstance(d, (list, tuple)):
        if 0 < len(d) <= 4 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d):
            for i, v in enumerate(d):
                yield ".".join(prefix) + f"[{i}]", v
    elif isinstance(d, (bool, int, float, str)) or d is None:
        yield ".".join(prefix), d


def configured(definition: Mapping, name: str) -> tuple[float, float] | None:
    """The [lo, hi] (or {int: [lo, hi]}) range configured at the parameter's own path, else the union
    of those configured for its last key anywhere under its top-level group: a spec's camera.focal_mm comes from camera.focal_mm, a
    sky's sun elevation from lighting.sky.sun_elevation_deg."""
    group, key = name.split(".")[0], name.split(".")[-1].split("[")[0]
    exact: Any = definition   # a spec key at the same path as its config key (hair.face.brows.length) has one range
    for part in name.split("[")[0].split("."):
        exact = exact.get(part) if isinstance(exact, Mapping) else None
    if isinstance(exact, Mapping) and set(exact) == {"int"}:
        exact = exact["int"]
    if (isinstance(exact, (list, tuple)) and len(exact) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in exact)):
        return float(exact[0]), float(exact[1])
    found = []

    def walk(d: Any, last: str | None) -> None:
        if isinstance(d, Mapping):
            if set(d) == {"int"}:
                walk(d["int"], last)
                return
            for k, v in d.items():
                walk(v, str(k))
        elif (isinstance(d, (list, tuple)) and len(d) == 2 and last == key
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in d)):
            found.append((float(d[0]), float(d[1])))
    walk(definition.get(group, {}), None)
    return (min(lo for lo, _ in found), max(hi for _, hi in found)) if found else None


@dataclass
class Parameter:
    name: str
    values: list
    span: tuple[float, float] | None   # configured range, numeric parameters only

    @property
    def numeric(self) -> bool:
        return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.values)

    @property
    def coverage(self) -> float | None:
        """The share of the configured range that the sampled values span."""
        if not (self.numeric and self.span) or self.span[1] <= self.span[0]:
            return None
        lo, hi = self.span
        return float(max(0.0, min(max(self.values), hi) - max(min(self.values), lo)) / (hi - lo))

    @property
    def outside(self) -> int:
        if not (self.numeric and self.span):
            return 0
        lo, hi = self.span
        return int(sum(not (lo - 1e-9 <= v <= hi + 1e-9) for v in self.values))


def clip_attrs(root) -> list[Mapping]:
    """Every complete clip's attributes, read once for both the parameters and the kinds."""
    return [clipstore.read_clip(root, cid).attrs for cid in clipstore.complete_ids(root)]


def collect(root, clips: list[Mapping] | None = None) -> tuple[list[Parameter], int]:
    definition = root.attrs.get("dataset", {}).get("definition", {})
    values: dict[str, list] = {}
    clips = clip_attrs(root) if clips is None else clips
    for attrs in clips:
        rows = list(leaves(attrs.get("spec", {})))
        rows += [(f"render.{k}", v) for k, v in leaves(attrs.get("render", {}))]
        for name, v in rows:
            if v is not None:
                values.setdefault(name, []).append(v)
    params = [Parameter(n, v, configured(definition, n) if not n.startswith("render.") else None)
              for n, v in sorted(values.items())]
    return [p for p in params if len(set(map(str, p.values))) > 1 or p.span], len(clips)


def kinds(spec: Mapping) -> list[str]:
    """What a clip's spec holds beyond one person in skin-tight clothes: how many people and their
    layout; on anyone, each thing worn (with its kind or frame, a lens's kind, a scarf's fabric and
    whether it is sheer), the thing held (and its steam); the effect in the air. Each once a clip."""
    crowd = spec.get("people") or {}
    out = [f"people: {crowd['count']}", f"people: {crowd['layout']}"] if crowd.get("count", 1) > 1 else []
    for person in [spec, *crowd.get("others", [])]:
        for name, w in (person.get("worn") or {}).items():
            if w:
                out.append(f"worn: {name}" + (f" ({w.get('kind') or w.get('frame')})" if w.get("kind") or w.get("frame") else ""))
                if w.get("lens_material"):
                    out.append(f"worn: {w['lens_material']['lens']} lenses")
                if (w.get("material") or {}).get("kind") == "sheer":
                    out.append(f"worn: sheer {name}")
        if person.get("held"):
            out.append(f"held: {person['held']['kind']}")
            if person["held"].get("steam"):
                out.append("held: steam")
    if spec.get("effects"):
        out.append(f"effects: {spec['effects']['kind']}")
    return list(dict.fromkeys(out))


def shares(root, clips: list[Mapping] | None = None) -> Counter:
    """How many of the store's clips hold each kind (`kinds`)."""
    return Counter(k for attrs in (clip_attrs(root) if clips is None else clips) for k in kinds(attrs.get("spec", {})))


def table(params: list[Parameter], n_clips: int, held: dict[str, tuple[int, str]] | None = None,
          counted: Counter | None = None) -> str:
    lines = [f"{n_clips} clips, {len(params)} parameters that vary", ""]
    if held:
        lines += ["| output | clips | what it holds |", "|---|---|---|"]
        lines += [f"| {name} | {n} | {about} |" for name, (n, about) in held.items()] + [""]
    if counted:
        lines += ["| people, worn, held, in the air | clips | share |", "|---|---|---|"]
        lines += [f"| {k} | {n} | {n / n_clips:.0%} |" for k, n in sorted(counted.items())] + [""]
    lines += ["| parameter | clips | values | configured | covered |", "|---|---|---|---|---|"]
    for p in params:
        if p.numeric:
            v = np.asarray(p.values, float)
            seen = f"{v.min():.4g} / {np.median(v):.4g} / {v.max():.4g} (min / median / max)"
            conf = f"[{p.span[0]:.4g}, {p.span[1]:.4g}]" if p.span else ""
            cov = "" if p.coverage is None else f"{100 * p.coverage:.0f}%" + (f", {p.outside} outside" if p.outside else "")
        else:
            counts = Counter(map(str, p.values))
            seen, conf, cov = ", ".join(f"{k} {n}" for k, n in counts.most_common(8)), "", f"{len(counts)} distinct"
        lines.append(f"| {p.name} | {len(p.values)} | {seen} | {conf} | {cov} |")
    return "\n".join(lines)


def plot(params: list[Parameter], out: Path, r: dict) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    shown = [p for p in params if p.numeric or len(set(map(str, p.values))) <= r["max_categories"]]
    cols = r["columns"]
    rows = max(1, -(-len(shown) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 1.9 * rows), squeeze=False)
    for ax, p in zip(axes.ravel(), shown):
        if p.numeric:
            v = np.asarray(p.values, float)
            lo, hi = p.span or (v.min(), v.max())
            if p.span:
                ax.axvspan(lo, hi, color="tab:green", alpha=0.15, lw=0)
            ax.hist(v, bins=r["bins"], range=(min(lo, v.min()), max(hi, v.max()) + 1e-12), color="tab:blue")
        else:
            counts = Counter(map(str, p.values))
            names = sorted(counts)
            ax.bar(range(len(names)), [counts[n] for n in names], color="tab:orange")
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=6)
        ax.set_title(p.name, fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return out


def default_dir(cfg: dict) -> Path | None:
    """report.path, else next to a store on this disk, or under store.local_dir for one behind a URL."""
    if cfg["report"].get("path"):
        return Path(cfg["report"]["path"])
    return clipstore.location.beside(cfg["store"]["path"], ".report", cfg["store"]["local_dir"])


def write(root, folder: Path, cfg: dict, sheet: Path | None = None) -> tuple[Path, str] | None:
    """parameters.png, parameters.md and contact_sheet.png in `folder`; None for a store without clips.
    `sheet`: this store's contact sheet, already written at the same sheet settings (copied, not redrawn)."""
    clips = clip_attrs(root)
    params, n = collect(root, clips)
    if not n:
        return None
    held = clipstore.outputs_held(root, clipstore.complete_ids(root))
    writable(folder, "report.path")
    part = folder.with_name(folder.name + ".part")   # written aside, then in place: a failure leaves nothing
    shutil.rmtree(part, ignore_errors=True)
    try:
        part.mkdir(parents=True)
    except OSError as e:
        raise UserError(f"report folder {folder}: {e.strerror or e}") from None
    try:
        text = table(params, n, held, shares(root, clips))
        (part / "parameters.md").write_text(text + "\n")
        plot(params, part / "parameters.png", cfg["report"])
        if sheet is not None and sheet.is_file():
            shutil.copyfile(sheet, part / "contact_sheet.png")
        else:
            sh = cfg["sheet"]
            contact_sheet.write(root, part / "contact_sheet.png", sh["clips"], sh["frames"], sh["cell"], sh["crop"],
                                crop_on=sh["crop_on"])
    except BaseException:
        shutil.rmtree(part, ignore_errors=True)
        raise
    shutil.rmtree(folder, ignore_errors=True)
    part.rename(folder)
    return folder, text


@app("render")
def main(cfg: DictConfig) -> int:
    c = to_container(cfg)
    if not c["store"]["path"]:
        raise UserError("give the store: python -m pipelines.report <store> (or store.path=<store>)")
    clipstore.location.configure(c["store"]["path"], c["store"]["options"])
    try:
        root = clipstore.open_store(c["store"]["path"])
    except clipstore.StoreError as e:
        raise UserError(str(e)) from None
    folder = default_dir(c)
    if folder is None:
        raise UserError(f"store {c['store']['path']} is not on this disk: give report.path=<folder>")
    out = write(root, folder, c)
    if out is None:
        raise UserError(f"store {c['store']['path']} holds no complete clips")
    print(out[1])
    print(f"report: {out[0]} (parameters.png, parameters.md, contact_sheet.png)")
    return 0


def _positional_store(argv: list[str]) -> list[str]:
    """`report <store>` as `report store.path=<store>`: the first argument without `=`."""
    if len(argv) > 1 and "=" not in argv[1] and not argv[1].startswith("-"):
        return [argv[0], f"store.path={argv[1]}", *argv[2:]]
    return argv


if __name__ == "__main__":
    sys.argv = _positional_store(sys.argv)
    main()
