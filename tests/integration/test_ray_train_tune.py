"""Ray Train and Tune for real on a local 2-CPU Ray: a diverged worker reaching the driver as a
ConfigError, and both Tune launchers logging trials to MLflow under one parent run. (DDP with 2
workers and resume after a killed worker: tests/integration/test_ddp_<family>.py, each family.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from components import config, track
from components.train import fit, loop_config
from components.tune import run_sweep
from families.forecaster import FAMILY, data
from tests.integration.faults import params_with_storage

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    data.ingest(raw, 42)
    out = tmp_path_factory.mktemp("prepared")
    data.prepare("synthetic", {"split": [3000, 200, 200]}, raw, out, 42)
    return out


def loop(prepared: Path, epochs: int, **hp):
    return loop_config(FAMILY, "synthetic", {"model": "gru", "hidden": 16, "layers": 1, "batch_size": 32, **hp},
                       prepared, epochs)


def diverging_loop(cfg, session):
    """A loop whose first epoch's metric is NaN, as an overflowing loss gives."""
    import torch

    from components.session import Best

    Best(cfg.metric).update({"epoch": 0, cfg.metric.val: float("nan")}, torch.nn.Linear(1, 1))


def test_a_diverged_worker_is_a_config_error_naming_the_metric(ray_local, prepared, tmp_path: Path) -> None:
    """Divergence inside a Ray Train worker reaches the driver as one line saying what to do,
    recognised by the exception's type through Ray's wrapping (not by its text); no model dir."""
    with pytest.raises(config.ConfigError, match="training diverged: val_mse is nan after epoch 0") as err:
        fit(diverging_loop, loop(prepared, 1), params_with_storage(tmp_path), num_workers=1, cpus_per_worker=1,
            max_failures=0, out_model_dir=tmp_path / "model")
    assert "Traceback" not in str(err.value)
    assert not (tmp_path / "model").exists()


@pytest.mark.parametrize("launcher", ["function", "trainer"])
def test_sweep_logs_every_trial_under_one_parent_run(ray_local, prepared, tmp_path: Path, launcher: str) -> None:
    import mlflow
    from mlflow import MlflowClient

    raw = config.raw_params(REPO, "tiny")
    tune_raw = raw["families"]["forecaster"]["synthetic"]["tune"]
    tune_raw.update({"launcher": launcher, "num_samples": 2 if launcher == "function" else 1, "epochs": 2})
    raw["mlflow"] = {"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "artifact_root": str(tmp_path / "art")}
    raw["ray"]["storage_path"] = str(tmp_path / "ray_results")
    params = config.validate(raw)
    track.setup(params, "forecaster", "synthetic")
    base = dataclasses.replace(loop(prepared, 2, hidden=8), max_train_samples=300)
    result = run_sweep(
        tp=params.task("forecaster", "synthetic"), params=params, loop=FAMILY.loop,
        validate_hparams=lambda hp: FAMILY.validate_hparams(hp, "synthetic"), base=base,
        experiment=track.experiment_name(params, "forecaster", "synthetic"),
        tags=track.lineage_tags("forecaster", "synthetic", "tune"), tracking_uri=config.tracking_uri(params),
    )
    assert result.best_hparams["model"] in ("gru", "wavenet") and result.best_value > 0
    # best_params.yaml holds what the sweep chose, not the defaults under it
    assert set(result.best_hparams) <= {"model", "hidden", "lr"}, result.best_hparams
    client = MlflowClient(tracking_uri=config.tracking_uri(params))
    exp = client.get_experiment_by_name("quartet/forecaster/synthetic")
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    assert len(children) == tune_raw["num_samples"]
    for child in children:
        assert client.get_metric_history(child.info.run_id, "val_mse"), "trial has no per-epoch metrics"
    mlflow.set_tracking_uri(None)
