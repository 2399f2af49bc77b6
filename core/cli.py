"""Hydra entry points whose bad input ends in one clear line and a non-zero exit.

Each app stays a real Hydra app (`key=value` overrides, `--cfg job`, `--multirun`); before
Hydra runs, the overrides are composed once so that an unknown key or a malformed value is
reported as a single line instead of Hydra's multi-line report. While the task runs, library
chatter goes to `libraries.log` in Hydra's run folder (core.quiet; `verbose=true` shows it),
and a stop (Ctrl-C, SIGTERM) at any moment ends it with one line and the signal's exit status
(core.stops): the task's own cleanup runs and it prints what finished.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import errno
import functools
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any, Callable

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from core import ranges, rules, stops
from core.conf import CONF_DIR
from core.errors import UserError

EXIT_BAD_INPUT = 2
LIBRARY_LOG = "libraries.log"
# Failures of a path the user named (an output folder under a file, a read-only place, a full disk).
PATH_ERRNOS = {errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC,
               errno.ENAMETOOLONG}


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the apps that take plain flags: a usage error is one `error:` line and exit
    status 2, as any app's bad input (argparse prints its usage first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (usage: {self.prog} --help)")


def guarded(work: Callable[[], int | None]) -> int:
    """Run an app's work to its exit status: a UserError (or a config value met late, or an output
    path that cannot be written) ends in one `error:` line and status 2; a stop, whatever exception
    it became in the code it hit, in one line and the signal's status (core.stops)."""
    stops.install()
    try:
        code = work() or 0
    except BaseException as e:
        if not stops.stopping(e):
            if isinstance(e, UserError):
                fail(str(e))
            if isinstance(e, OmegaConfBaseException):   # e.g. a value of the wrong type met late
                fail(_one_line(e))
            if isinstance(e, OSError) and e.errno in PATH_ERRNOS and e.filename:
                fail(f"{e.filename}: {e.strerror}")
            raise
    else:
        if stops.received() is None:
            return code
    print(f"stopped by {(stops.received() or signal.SIGINT).name}: what finished is kept; the same command resumes",
          file=sys.stderr, flush=True)
    # zarr's event loop thread may hold reads the stop cut short: asyncio would report each at exit;
    # torch logs its fake-tensor cache counts at exit (INFO, under Hydra's logging): the stop line stays last.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    logging.getLogger("torch._subclasses.fake_tensor").setLevel(logging.WARNING)
    return stops.status()


def _keys(lines: list[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(config groups, keys two levels deep with value and comment) of one conf file's text; a group
    merged into the file's own level (`group@_here_`) contributes its keys instead."""
    groups, keys, merged, top = [], [], [], None
    for ln in lines:
        if m := re.match(r"^( {2})?([A-Za-z_]\w*):\s*(.*)$", ln):
            nested, name, rest = m.groups()
            if not nested:
                top = name
            if top in ("defaults", "hydra") or (nested and top is None):
                continue
            value, _, comment = rest.partition("#")
            keys.append((f"{top}.{name}" if nested else name, value.strip() or "...", comment.strip()))
        elif top == "defaults" and (m := re.match(r"^\s+-\s*([^#]+?)\s*(?:#\s*(.*))?$", ln)) and m.group(1) != "_self_":
            group, _, option = (part.strip() for part in m.group(1).partition(":"))
            if group.endswith("@_here_"):
                merged += _keys((CONF_DIR / group.removesuffix("@_here_") / f"{option}.yaml").read_text().splitlines())[1]
            else:
                groups.append((f"{group}={option}", m.group(2) or ""))
    return groups, keys + merged


def help_text(config_name: str, module: str) -> str:
    """`--help`: the app's description and its main keys (two levels deep), read from the comments
    of its conf file, the one place they are written, with the config groups it composes."""
    lines = (CONF_DIR / f"{config_name}.yaml").read_text().splitlines()
    about = [ln.lstrip("# ").rstrip() for ln in lines[:next(i for i, ln in enumerate(lines) if not ln.startswith("#"))]]
    groups, keys = _keys(lines)
    keys = [(k, v, c) for i, (k, v, c) in enumerate(keys)   # a parent whose children are listed says nothing more
            if not (v == "..." and not c and i + 1 < len(keys) and keys[i + 1][0].startswith(f"{k}."))]
    rows = [(f"{k}={v}", c) for k, v, c in keys]
    width = max(len(r) for r, _ in groups + rows)
    show = lambda rs: [f"  {r:<{width}}  {c}".rstrip() for r, c in rs]  # noqa: E731
    out = [*about, "", f"usage: python -m {module} [key=value ...]      (every key: conf/{config_name}.yaml)", ""]
    if groups:
        out += ["config groups:", *show(groups), ""]
    out += ["main keys (default values):", *show(rows), "",
            "every key with its value: --cfg job    Hydra's own options: --hydra-help"]
    return "\n".join(out)


def _module(task: Callable) -> str:
    if task.__module__ != "__main__":
        return task.__module__
    path = Path(sys.argv[0]).resolve()
    try:
        return ".".join(path.relative_to(CONF_DIR.parent).with_suffix("").parts)
    except ValueError:
        return path.stem


def _one_line(e: BaseException) -> str:
    """Hydra's and OmegaConf's multi-line reports cut to what names the problem."""
    stop = ("Config search path", "full_key:", "object_type=", "To append to your config")
    lines = []
    for part in (e, e.__cause__):
        for line in str(part or "").splitlines():
            line = line.strip()
            if line.startswith(stop):
                break
            if line:
                lines.append(line)
    text = " ".join(lines).replace("Key '", "key '").replace("is not in struct", "is not in the config")
    if "To append to your config" in str(e):
        text += " (a new key needs a leading +)"
    return text


def _overrides(argv: list[str]) -> list[str] | None:
    """The key=value overrides of a command line, or None when Hydra must judge it (multirun)."""
    if any(a in ("-m", "--multirun") for a in argv):
        return None
    takes_value = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name",
                   "-cn", "--config-dir", "-cd", "--experimental-rerun"}
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a in takes_value:
            skip = True
        elif not a.startswith("-"):
            out.append(a)
    return out


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node) if isinstance(node, (DictConfig, ListConfig)) else node


def _replaced_sections(default: DictConfig, composed: DictConfig, overrides: list[str]) -> None:
    """A section of keys given one value (`store=x.zarr` for `store.path=x.zarr`) composes
    without complaint and fails deep inside the task: refuse it here, naming the keys it holds.
    A range written as a mapping ({int: [lo, hi]}) is a value, not a section: a number fixes it."""
    for o in overrides:
        key = o.split("=", 1)[0].lstrip("+~")
        was, now = OmegaConf.select(default, key), OmegaConf.select(composed, key)
        if isinstance(was, DictConfig) and not isinstance(now, DictConfig) and ranges.kind(_plain(was)) is None:
            inner = ", ".join(f"{key}.{k}" for k in list(was.keys())[:4])
            fail(f"{key}: is a section of keys ({inner}, ...), not a value; set one of them, e.g. "
                 f"{key}.{next(iter(was.keys()), 'key')}=...")


def _parse_each_yaml_once() -> None:
    """Hydra parses every YAML file of the tree again at each compose (pure-Python YAML: about
    0.35 s for conf/ on these machines) and one command line composes several times: keep each
    file's parse, by path and modification time, and hand Hydra a copy."""
    from hydra._internal.core_plugins.file_config_source import FileConfigSource
    if getattr(FileConfigSource.load_config, "parses_once", False):
        return
    load, kept = FileConfigSource.load_config, {}

    def load_config(self, config_path: str):
        full = os.path.realpath(os.path.join(self.path, self._normalize_file_name(config_path)))
        key = (full, os.stat(full).st_mtime_ns) if os.path.exists(full) else None
        if key is None or key not in kept:
            result = load(self, config_path)      # also raises Hydra's own error for a missing file
            if key is None:
                return result
            kept[key] = result
        result = kept[key]
        return dataclasses.replace(result, config=copy.deepcopy(result.config))

    load_config.parses_once = True
    FileConfigSource.load_config = load_config


_parse_each_yaml_once()


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    """The composed config, a copy of its first composition in this process: Hydra parses every
    YAML file of the tree again on each compose, and one command line composes the same tree
    several times (its checks, then the run), as the tests do with the same overrides."""
    return copy.deepcopy(_composed(config_name, tuple(overrides)))


@functools.lru_cache(maxsize=64)
def _composed(config_name: str, overrides: tuple[str, ...]) -> DictConfig:
    from hydra.core.global_hydra import GlobalHydra
    if GlobalHydra.instance().is_initialized():
        return hydra.compose(config_name=config_name, overrides=list(overrides))
    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra.compose(config_name=config_name, overrides=list(overrides))


def as_ranges(config_name: str, overrides: list[str]) -> list[str]:
    """Overrides of range keys rewritten as the ranges they mean: a [lo, hi] list takes the kind of
    the key's default ({int: [lo, hi]}, {choice: [...]} or uniform), and any list or mapping replaces
    the default instead of merging into it (Hydra cannot merge a list onto a mapping, and merging
    {int: ...} onto {choice: ...} would keep both); a text fixes a choice of texts
    (hair.styles.tied.tie=bun). A plain number needs nothing: it fixes the value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parsed = OverridesParser.create().parse_overrides(overrides)
    candidates = {i for i, o in enumerate(parsed)
                  if not o.is_delete() and not o.is_add() and not o.is_sweep_override()
                  and isinstance(o.value(), (list, dict, str))}
    if not candidates:
        return overrides
    default = _compose(config_name, [o for i, o in enumerate(overrides) if i not in candidates])
    out = []
    for i, (text, o) in enumerate(zip(overrides, parsed)):
        was = ranges.kind(_plain(OmegaConf.select(default, o.key_or_group))) if i in candidates else None
        value, key = o.value(), o.key_or_group
        if was == "choice" and isinstance(value, str):
            text = f"{key}={{choice:[{o.get_value_element_as_str()}]}}"
        elif was in ("int", "choice") and isinstance(value, list) and (was == "choice" or len(value) == 2):
            text = f"{key}={{{was}:{o.get_value_element_as_str()}}}"
        elif was is None or isinstance(value, str):
            out.append(text)
            continue
        out += [f"{key}=null", text]
    return out


def _culprit(config_name: str, overrides: list[str]) -> str:
    """` <override>` for the first override that fails alone (so the error line names its key), else ''."""
    for o in overrides:
        try:
            _compose(config_name, as_ranges(config_name, [o]))
        except (HydraException, OmegaConfBaseException, ValueError):
            return f" {o}"
    return ""


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """The config an app would see; for tests and tools that call apps as functions (also from
    inside a running app, whose Hydra already reads this same conf/ tree)."""
    return _compose(config_name, as_ranges(config_name, overrides))


def app(config_name: str) -> Callable[[Callable[[DictConfig], int]], Callable[[], None]]:
    """Decorate `task(cfg) -> exit code` into a console entry point."""
    def decorate(task: Callable[[DictConfig], int]) -> Callable[[], None]:
        @functools.wraps(task)
        def job(cfg: DictConfig) -> None:
            from core import quiet
            routing = contextlib.nullcontext()
            if not cfg.get("verbose", False):
                from hydra.core.hydra_config import HydraConfig
                routing = quiet.routed(Path(HydraConfig.get().runtime.output_dir) / LIBRARY_LOG)
            from hydra.core.hydra_config import HydraConfig
            hc = HydraConfig.get()   # the config groups this run chose (preset=paper, model=svd), not its values
            groups = [o for o in hc.overrides.task if o.split("=", 1)[0].lstrip("+~") in hc.runtime.choices]

            def work() -> int:
                # Every value against its default (as the groups this run chose ship it) and the rules.
                rules.check(to_container(cfg), to_container(_compose(config_name, groups)))
                return task(cfg)
            with routing:
                code = guarded(work)
            if code:
                sys.exit(code)

        hydra_main = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(job)

        def main() -> None:
            try:
                run()
            except BrokenPipeError:
                # The reader went away (`--help | head`): Python's documented quiet exit, with the
                # output still buffered sent nowhere instead of failing again at shutdown.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                sys.exit(1)

        def run() -> None:
            if any(a in ("-h", "--help") for a in sys.argv[1:]):
                print(help_text(config_name, _module(task)), flush=True)
                return
            overrides = _overrides(sys.argv[1:])
            if overrides is not None:
                try:
                    ranged = as_ranges(config_name, overrides)
                    _replaced_sections(_compose(config_name, []), _compose(config_name, ranged), overrides)
                except (HydraException, OmegaConfBaseException, ValueError) as e:   # ValueError: `cycles=5` for a group
                    fail(f"bad override{_culprit(config_name, overrides)}: {_one_line(e)}")
                # Hydra reads the command line itself: give it the overrides as the ranges they mean.
                rest = [a for a in sys.argv[1:] if a not in overrides]
                sys.argv[1:] = rest + ranged
            hydra_main()
        main.task = task  # the undecorated function, for tests
        main.config_name = config_name
        return main
    return decorate


def _override_value(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return {True: "true", False: "false", None: "null"}[v]
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_override_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{k}:{_override_value(x)}" for k, x in v.items()) + "}"
    return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"


def overrides_between(base: dict, target: dict, prefix: str = "") -> list[str]:
    """The `key=value` overrides that turn `base` into `target` on the keys `base` has (an app's
    config as another app composed it, given to that app's command line)."""
    out = []
    for k, v in base.items():
        if k not in target:
            continue
        if isinstance(v, dict) and isinstance(target[k], dict) and ranges.kind(v) is None:
            out += overrides_between(v, target[k], f"{prefix}{k}.")
        elif target[k] != v:
            out.append(f"{prefix}{k}={_override_value(target[k])}")
    return out


def run_app(module: str, args: list[str], capture: bool = False) -> tuple[int, str]:
    """Another app of this project in its own process, as a user starts it (`python -m module args`):
    its exit status and, with `capture`, what it printed. A stop of this process stops it too (it
    gets SIGTERM unless it is already ending, from a Ctrl-C its whole process group got) and is
    waited for, so it ends its own way, with its summary."""
    import subprocess
    proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=subprocess.PIPE if capture else None,
                            text=True)
    try:
        out, _ = proc.communicate()
    except BaseException:
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            proc.wait()
        raise
    return proc.returncode, out or ""


def to_container(cfg: DictConfig | dict) -> dict:
    """Plain resolved data; a dict (an app task called from code) passes through."""
    return cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
