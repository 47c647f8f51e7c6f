"""The families: name -> Family. The wiring (quartet/) is the only place that looks them up.

`get(name)` imports that family alone, so a stage of one family runs (and DVC tracks) only its
own code; `families()` imports all four.
"""

from __future__ import annotations

import importlib

from components.config import ConfigError
from components.family import Family

NAMES = ("forecaster", "translator", "generative", "rl")


def get(name: str) -> Family:
    if name not in NAMES:
        raise ConfigError(f"unknown family {name!r} (known: {sorted(NAMES)})")
    return importlib.import_module(f"families.{name}").FAMILY


def families() -> dict[str, Family]:
    return {name: get(name) for name in NAMES}
