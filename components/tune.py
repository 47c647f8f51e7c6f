"""Ray Tune: search spaces from params, Optuna + ASHA, concurrency sized from the cluster.

Why two launchers: on a 2-core machine a TorchTrainer per trial costs 3.5x a plain function
trial (stack-verified.md), so `launcher: function` runs the family loop inside the trial process;
`launcher: trainer` (the cluster profile) runs a TorchTrainer per trial through the Train-V2
driver pattern with `TuneReportCallback`. Every trial becomes an MLflow run under one parent
run for the sweep (tag `mlflow.parentRunId`).
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components.config import ConfigError, Params, SpaceSpec, TaskParams, resolve

log = logging.getLogger(__name__)


class DefineByRun:
    """An Optuna define-by-run space: pick a model, then that model's own hyperparameters.

    Parameter names are namespaced (`gru.lr`) because Optuna forbids one name with two
    distributions, and a model's space is conditional on the model choice. A class, not a
    closure, because Tune pickles the searcher (with its space) into its experiment state.
    """

    def __init__(self, models: list[str], search_space: dict[str, dict[str, SpaceSpec]]) -> None:
        self.models = list(models)
        self.search_space = search_space

    def __call__(self, trial: Any) -> None:
        model = trial.suggest_categorical("model", self.models)
        for key, spec in self.search_space.get(model, {}).items():
            name = f"{model}.{key}"
            if spec.choice is not None:
                trial.suggest_categorical(name, list(spec.choice))
            elif spec.uniform is not None:
                trial.suggest_float(name, *spec.uniform)
            elif spec.loguniform is not None:
                trial.suggest_float(name, *spec.loguniform, log=True)
            elif spec.randint is not None:
                trial.suggest_int(name, *spec.randint)


def representative_samples(models: list[str], search_space: dict[str, dict[str, SpaceSpec]]) -> list[dict[str, Any]]:
    """One flat trial config per model with every searched value at its extremes, so that a typo
    or an impossible value in a search space is caught before Ray starts."""
    samples = []
    for model in models:
        for pick in (0, -1):
            trial: dict[str, Any] = {"model": model}
            for key, spec in search_space.get(model, {}).items():
                values = spec.choice or spec.uniform or spec.loguniform or spec.randint
                trial[f"{model}.{key}"] = values[pick]
            samples.append(trial)
    return samples


def hparams_from_trial(trial_config: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """Flat Optuna config ({'model': 'gru', 'gru.lr': ...}) on top of the default hparams."""
    model = trial_config["model"]
    own = {k.split(".", 1)[1]: v for k, v in trial_config.items() if k.startswith(model + ".")}
    return {**base, "model": model, **own}


def concurrency(
    tune_params: TaskParams | Any, cluster_cpus: float, train_cpus: float = 1.0, cluster_gpus: float = 0.0,
    train_gpus: float = 0.0,
) -> int:
    """How many trials fit at once: never more than the CPUs (and GPUs) allow, nor than params ask."""
    tp = tune_params
    function = tp.launcher == "function"
    cpus = tp.cpus_per_trial if function else tp.num_workers_per_trial * train_cpus
    gpus = tp.gpus_per_trial if function else tp.num_workers_per_trial * train_gpus
    limit = math.floor(cluster_cpus / cpus + 1e-9)
    if gpus:
        limit = min(limit, math.floor(cluster_gpus / gpus + 1e-9))
    return max(1, min(tp.max_concurrent, limit))


DRIVER_RESOURCE = "quartet_driver"
# Ray Train retries a worker group that cannot start (no resources, a host down) forever by
# default; a few minutes (each try waits 60 s) covers a host that rejoins, then the trial fails.
CONTROLLER_RETRIES = 5


def driver_resources(cluster_resources: dict[str, float]) -> dict[str, float]:
    """What a trial that only drives a TorchTrainer asks for. It only waits, but Ray needs it to
    ask for something: 0.01 CPU by default (1 would starve the workers on 2 cores). On a cluster
    whose head offers the custom resource `quartet_driver` (make cluster-up, infra/k8s) the
    drivers sit there instead, so the workers' CPUs stay whole for Train workers (Ray's docs:
    put drivers on "safe" nodes)."""
    if cluster_resources.get(DRIVER_RESOURCE, 0) > 0:
        return {"CPU": 0, DRIVER_RESOURCE: 0.01}
    return {"CPU": 0.01}


def _function_trial(config: dict[str, Any], *, train_loop: Callable, validate_hparams: Callable, base_loop: dict) -> None:
    """Tune function trainable: the family loop runs right here and reports each epoch to Tune."""
    hparams = validate_hparams(hparams_from_trial(config, base_loop["hparams"]))
    loop = {**base_loop, "hparams": hparams, "launcher": "tune"}
    loop["model_config"] = {**loop["model_config"], "model": hparams["model"], "hparams": hparams}
    train_loop(loop)


def _trainer_trial(
    config: dict[str, Any], *, train_loop: Callable, validate_hparams: Callable, base_loop: dict,
    num_workers: int, cpus_per_worker: float, gpus_per_worker: float, storage_path: str, max_failures: int = 0,
) -> None:
    """Train-V2 driver pattern: this trial only drives a TorchTrainer and forwards its reports."""
    import ray.train
    import ray.tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from components.train import scaling

    hparams = validate_hparams(hparams_from_trial(config, base_loop["hparams"]))
    loop = {**base_loop, "hparams": hparams, "launcher": "train"}
    loop["model_config"] = {**loop["model_config"], "model": hparams["model"], "hparams": hparams}
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=loop,
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
        scaling_config=scaling(num_workers, cpus_per_worker, gpus_per_worker),
        run_config=ray.train.RunConfig(
            name=f"trial-{ray.tune.get_context().get_trial_id()}-{uuid.uuid4().hex[:6]}",
            storage_path=storage_path,
            callbacks=[TuneReportCallback()],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
            # a lost worker (a host dies) restarts the worker group from the last checkpoint
            failure_config=ray.train.FailureConfig(max_failures=max_failures, controller_failure_limit=CONTROLLER_RETRIES),
        ),
    )
    trainer.fit()
    _drain_train_reports()


def _drain_train_reports(settle_s: float = 1.0, timeout_s: float = 60.0) -> None:
    """Return from a trainer trial only after Tune has taken every report Train forwarded.

    Why: in Ray 2.60 TuneReportCallback hands the Train controller's reports to the trial through
    a one-slot queue actor, while a function trainable that returns puts its own end-of-trial
    marker into the one-slot result queue. If the function returns while the last epoch's report
    is still in flight (a slow MLflow server or a cross-host queue make that likely), the trial's
    main thread blocks forever putting that report behind the marker. Waiting until both queues
    have stayed empty for `settle_s` closes the window.
    """
    import time

    from ray.train._internal.session import get_session

    session = get_session()
    inter_actor = getattr(session, "_inter_actor_queue", None) if session else None
    if inter_actor is None:
        return
    end = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < end:
        if inter_actor.empty() and session.result_queue.empty():
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= settle_s:
                return
        else:
            quiet_since = None
        time.sleep(0.05)
    log.warning("Train reports still queued after %.0f s; ending the trial anyway", timeout_s)


@dataclass(frozen=True)
class SweepResult:
    best_hparams: dict[str, Any]
    best_value: float
    metric: str
    n_trials: int
    parent_run_id: str
    trials: list[dict[str, Any]]


def run_sweep(
    *,
    family: str,
    task: str,
    params: Params,
    train_loop: Callable,
    validate_hparams: Callable,
    base_loop: dict[str, Any],
    metric: str,
    mode: str,
    experiment: str,
    tags: dict[str, str],
    tracking_uri: str,
) -> SweepResult:
    """One Optuna+ASHA sweep; trials go to MLflow under a parent run; returns the best hparams."""
    import mlflow
    import ray
    import ray.tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    tp = params.task(family, task).tune
    tcfg = params.task(family, task).train
    cpus = float(ray.cluster_resources().get("CPU", 1))
    storage = str(resolve(params.ray.storage_path))
    if tp.launcher == "function":
        trial_loop = {**base_loop, "use_gpu": tp.gpus_per_trial > 0}
        trainable = ray.tune.with_resources(
            ray.tune.with_parameters(_function_trial, train_loop=train_loop, validate_hparams=validate_hparams, base_loop=trial_loop),
            {"CPU": tp.cpus_per_trial} | ({"GPU": tp.gpus_per_trial} if tp.gpus_per_trial else {}),
        )
    else:
        trainable = ray.tune.with_resources(
            ray.tune.with_parameters(
                _trainer_trial, train_loop=train_loop, validate_hparams=validate_hparams, base_loop=base_loop,
                num_workers=tp.num_workers_per_trial, cpus_per_worker=tcfg.cpus_per_worker,
                gpus_per_worker=tcfg.gpus_per_worker, storage_path=storage, max_failures=tcfg.max_failures,
            ),
            driver_resources(ray.cluster_resources()),
        )
    gpus = float(ray.cluster_resources().get("GPU", 0))
    max_concurrent = concurrency(tp, cpus, tcfg.cpus_per_worker, gpus, tcfg.gpus_per_worker)
    with mlflow.start_run(run_name=f"tune-{family}-{task}", tags=tags) as parent:
        mlflow.log_params({"tune.models": ",".join(tp.models), "tune.num_samples": tp.num_samples,
                           "tune.epochs": tp.epochs, "tune.launcher": tp.launcher, "tune.max_concurrent": max_concurrent})
        callback = MLflowLoggerCallback(
            tracking_uri=tracking_uri,
            experiment_name=experiment,
            tags={**tags, "quartet.stage": "tune-trial", "mlflow.parentRunId": parent.info.run_id},
        )
        tuner = ray.tune.Tuner(
            trainable,
            tune_config=ray.tune.TuneConfig(
                metric=metric,
                mode=mode,
                num_samples=tp.num_samples,
                max_concurrent_trials=max_concurrent,
                search_alg=OptunaSearch(space=DefineByRun(tp.models, tp.search_space), metric=metric, mode=mode, seed=params.seed),
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=tp.epochs, grace_period=min(tp.grace_period, tp.epochs)),
                time_budget_s=tp.timeout_s,
            ),
            run_config=ray.tune.RunConfig(
                name=f"tune-{family}-{task}-{uuid.uuid4().hex[:8]}",
                storage_path=storage,
                callbacks=[callback],
                verbose=1,
                # a trial whose process or node died is retried (the sweep survives a lost host)
                failure_config=ray.tune.FailureConfig(max_failures=tp.max_failures),
            ),
        )
        grid = tuner.fit()
        ok = [r for r in grid if r.error is None and r.metrics and metric in r.metrics]
        if not ok:
            errors = [str(r.error)[:300] for r in grid if r.error is not None]
            raise ConfigError(f"no tuning trial reported {metric!r}; first errors: {errors[:3]}")
        # The loop reports best_<metric> (best epoch so far): the train stage keeps the best epoch too.
        # Only trials that finished without error compete.
        def score(r: Any) -> float:
            return float(r.metrics.get(f"best_{metric}", r.metrics[metric]))

        best = min(ok, key=score) if mode == "min" else max(ok, key=score)
        best_hparams = validate_hparams(hparams_from_trial(best.config, base_loop["hparams"]))
        best_value = score(best)
        trials = [
            {"config": r.config, "epochs": int(r.metrics.get("epoch", -1)) + 1, "node_ip": r.metrics.get("node_ip"),
             metric: float(r.metrics.get(f"best_{metric}", r.metrics[metric]))}
            for r in ok
        ]
        mlflow.log_params(best_hparams | {"model": best_hparams["model"]})
        mlflow.log_metric(f"best_{metric}", best_value)
        mlflow.log_dict({"trials": trials}, "trials.json")
        return SweepResult(best_hparams, best_value, metric, len(grid), parent.info.run_id, trials)
