"""The families: name -> Family. `cli.py` is the only place that wires a family into a verb."""

from __future__ import annotations

from components.config import ConfigError
from components.family import Family


def families() -> dict[str, Family]:
    # Imported lazily so that `import families` stays cheap and side-effect free.
    from families.forecaster import FAMILY as forecaster
    from families.generative import FAMILY as generative
    from families.rl import FAMILY as rl
    from families.translator import FAMILY as translator

    return {f.name: f for f in (forecaster, translator, generative, rl)}


def get(name: str) -> Family:
    known = families()
    if name not in known:
        raise ConfigError(f"unknown family {name!r} (known: {sorted(known)})")
    return known[name]
