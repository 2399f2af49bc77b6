"""Hydra entry points whose bad input ends in one clear line and a non-zero exit.

Each app stays a real Hydra app (`key=value` overrides, `--cfg job`, `--multirun`); before
Hydra runs, the overrides are composed once so that an unknown key or a malformed value is
reported as a single line instead of Hydra's multi-line report.
"""
from __future__ import annotations

import functools
import sys
from typing import Callable

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from core.conf import CONF_DIR
from core.errors import UserError

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


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


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """The config an app would see; for tests and tools that call apps as functions (also from
    inside a running app, whose Hydra already reads this same conf/ tree)."""
    from hydra.core.global_hydra import GlobalHydra
    if GlobalHydra.instance().is_initialized():
        return hydra.compose(config_name=config_name, overrides=overrides)
    with hydra.initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra.compose(config_name=config_name, overrides=overrides)


def app(config_name: str) -> Callable[[Callable[[DictConfig], int]], Callable[[], None]]:
    """Decorate `task(cfg) -> exit code` into a console entry point."""
    def decorate(task: Callable[[DictConfig], int]) -> Callable[[], None]:
        @functools.wraps(task)
        def job(cfg: DictConfig) -> None:
            try:
                code = task(cfg)
            except UserError as e:
                fail(str(e))
            except OmegaConfBaseException as e:  # e.g. a value of the wrong type met late
                fail(_one_line(e))
            if code:
                sys.exit(code)

        hydra_main = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base="1.3")(job)

        def main() -> None:
            overrides = _overrides(sys.argv[1:])
            if overrides is not None:
                try:
                    compose(config_name, overrides)
                except (HydraException, OmegaConfBaseException) as e:
                    fail(f"bad override: {_one_line(e)}")
            hydra_main()
        main.task = task  # the undecorated function, for tests
        return main
    return decorate


def to_container(cfg: DictConfig | dict) -> dict:
    """Plain resolved data; a dict (an app task called from code) passes through."""
    return cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=True)
