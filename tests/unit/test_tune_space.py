"""Search spaces are data in params.yaml; the Optuna space is conditional on the model choice."""

from __future__ import annotations

import optuna
import pytest

from components.config import SpaceSpec, TuneParams
from components.tune import DefineByRun, concurrency, hparams_from_trial


def test_define_by_run_namespaces_each_models_params() -> None:
    space = DefineByRun(
        ["gru", "wavenet"],
        {"gru": {"lr": SpaceSpec(loguniform=(1e-3, 1e-2)), "hidden": SpaceSpec(choice=[8, 16])},
         "wavenet": {"hidden": SpaceSpec(randint=(4, 9))}},
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        space(trial)
        params = trial.params
        seen.add(params["model"])
        own = {k for k in params if k != "model"}
        assert all(k.startswith(params["model"] + ".") for k in own)
        study.tell(trial, 0.0)
    assert seen == {"gru", "wavenet"}


def test_hparams_from_trial_keeps_defaults_and_drops_other_models() -> None:
    hp = hparams_from_trial({"model": "gru", "gru.lr": 0.01, "wavenet.hidden": 5}, {"batch_size": 32, "hidden": 20})
    assert hp == {"batch_size": 32, "hidden": 20, "model": "gru", "lr": 0.01}


@pytest.mark.parametrize(
    ("launcher", "max_concurrent", "cpus", "expected"),
    [("function", 2, 2, 2), ("function", 8, 2, 2), ("function", 1, 16, 1), ("trainer", 8, 2, 1), ("trainer", 8, 8, 4)],
)
def test_concurrency_never_exceeds_cpus(launcher: str, max_concurrent: int, cpus: float, expected: int) -> None:
    tp = TuneParams(models=["gru"], num_samples=4, epochs=2, max_concurrent=max_concurrent, launcher=launcher,
                    num_workers_per_trial=2)
    assert concurrency(tp, cpus) == expected


def test_concurrency_is_also_capped_by_gpus() -> None:
    tp = TuneParams(models=["gru"], num_samples=8, epochs=2, max_concurrent=8, gpus_per_trial=0.5)
    assert concurrency(tp, cluster_cpus=16, cluster_gpus=2) == 4
    tp = TuneParams(models=["gru"], num_samples=8, epochs=2, max_concurrent=8, launcher="trainer", num_workers_per_trial=2)
    assert concurrency(tp, cluster_cpus=16, train_cpus=1, cluster_gpus=2, train_gpus=1) == 1
