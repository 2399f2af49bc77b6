"""Where the Hydra config tree lives, and plain reads of it for code that runs without Hydra.

conf/ is the one home of every tunable number; library code that needs a default reads it here
instead of keeping a copy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def load(name: str) -> dict[str, Any]:
    """One YAML file of conf/ as plain data, e.g. load("hair/default") or load("evaluate").

    Interpolations that need a running Hydra app (`${now:...}`) are left unresolved; environment
    lookups (`${oc.env:...}`) resolve.
    """
    path = CONF_DIR / f"{name}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    node = OmegaConf.load(path)
    node.pop("defaults", None)
    node.pop("hydra", None)
    return OmegaConf.to_container(node, resolve=True)
