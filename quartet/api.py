"""The public Python API: what benchmarks, notebooks and tests call instead of the CLI.

    from quartet import api
    result = api.train_plain("forecaster", "synthetic", {"model": "gru", "hidden": 16},
                             "prepared/forecaster/synthetic", epochs=2, out_dir="/tmp/model")
    result.history[-1]["val_mse"], result.wall_s

Every function takes a family by name and validates as the pipeline does (a bad key is a
ConfigError naming it); the loops are the ones `dvc repro` runs, in this process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.family import Family
from components.session import LoopConfig
from components.train import TrainResult
from components.train import loop_config as _loop_config
from components.train import train_plain as _train_plain


def family(name: str | Family) -> Family:
    from families import get

    return name if isinstance(name, Family) else get(name)


def loop_config(family_name: str | Family, task: str, hparams: dict[str, Any], prepared_dir: Path | str, epochs: int,
                seed: int = 42, **options: Any) -> LoopConfig:
    """A validated LoopConfig (options: max_train_samples, threads, use_gpu)."""
    return _loop_config(family(family_name), task, hparams, prepared_dir, epochs, seed, **options)


def train_plain(family_name: str | Family, task: str, hparams: dict[str, Any], prepared_dir: Path | str, epochs: int,
                *, seed: int = 42, out_dir: Path | str | None = None, **options: Any) -> TrainResult:
    """Train one model with the family's loop in this process (no Ray); with `out_dir`, the best
    epoch's model dir is written there (loadable by the family's Predictor and `evaluate`)."""
    fam = family(family_name)
    config = _loop_config(fam, task, hparams, prepared_dir, epochs, seed, **options)
    result = _train_plain(fam.loop, config, Path(out_dir) if out_dir else None)
    if out_dir and fam.finish_model_dir is not None:  # as the train stage does
        fam.finish_model_dir(Path(out_dir), Path(prepared_dir))
    return result


def evaluate(family_name: str | Family, model_dir: Path | str, prepared_dir: Path | str, plots_dir: Path | str,
             params: dict[str, Any] | None = None) -> dict[str, float]:
    """The evaluate stage's metrics for one model dir (plots written into plots_dir)."""
    Path(plots_dir).mkdir(parents=True, exist_ok=True)
    return family(family_name).evaluate(Path(model_dir), Path(prepared_dir), Path(plots_dir), params or {})
