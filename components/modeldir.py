"""The model-dir format: the one contract every consumer reads.

`config.json` (family, task, model, hparams, data info, versions, history) + `weights.pt` (a
state_dict; never a pickled module). Training writes it, evaluate, register, the MLflow pyfunc
and Serve read it; it rebuilds the module from config.json alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.data import DataError, read_json

if TYPE_CHECKING:
    import torch

CONFIG_JSON = "config.json"
WEIGHTS = "weights.pt"


def save_model_dir(out: Path, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> None:
    import torch

    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_JSON).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    torch.save(state_dict, out / WEIGHTS)


def load_model_dir(model_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import torch

    config = read_json(Path(model_dir) / CONFIG_JSON)
    weights = Path(model_dir) / WEIGHTS
    if not weights.is_file():
        raise DataError(f"{weights}: file not found (not a quartet model dir)")
    return config, torch.load(weights, map_location="cpu", weights_only=True)


def load_model(
    model_dir: Path, build: Callable[[dict[str, Any], dict[str, Any]], torch.nn.Module],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model dir -> (the family's module in eval mode, its config), from config.json + weights.pt alone."""
    config, state = load_model_dir(Path(model_dir))
    model = build(config["hparams"], config["info"])
    model.load_state_dict(state)
    return model.eval(), config
