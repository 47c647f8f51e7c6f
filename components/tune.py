"""Ray Tune: search spaces from params, Optuna + ASHA, concurrency sized from the cluster.

Why two launchers: on a 2-core machine a TorchTrainer per trial costs 3.5x a plain function
trial (stack-verified.md), so `launcher: function` runs the family loop inside the trial process;
`launcher: trainer` (the cluster profile) runs a TorchTrainer per trial through the Train-V2
driver pattern with `TuneReportCallback`. Every trial becomes an MLflow run under one parent
run for the sweep (tag `mlflow.parentRunId`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from components.config import ConfigError, Params, SpaceSpec, TaskParams, resolve
from components.session import Loop, LoopConfig, train_worker, tune_trial

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


def trial_hparams(trial_config: dict[str, Any], base: dict[str, Any], validate_hparams: Callable) -> dict[str, Any]:
    """A trial's flat config on top of the sweep's fixed hparams, validated by the family (once)."""
    return validate_hparams(hparams_from_trial(trial_config, base))


def _function_trial(config: dict[str, Any], *, loop: Loop, validate_hparams: Callable, base: LoopConfig) -> None:
    """Tune function trainable: the family loop runs right here and reports each epoch to Tune."""
    tune_trial(loop, base.with_hparams(trial_hparams(config, base.hparams, validate_hparams)))


def _trainer_trial(
    config: dict[str, Any], *, loop: Loop, validate_hparams: Callable, base: LoopConfig,
    num_workers: int, cpus_per_worker: float, gpus_per_worker: float, storage_path: str, max_failures: int = 0,
) -> None:
    """Train-V2 driver pattern: this trial only drives a TorchTrainer and forwards its reports."""
    import functools

    import ray.train
    import ray.tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    from components.train import scaling

    trainer = TorchTrainer(
        functools.partial(train_worker, loop),
        train_loop_config={"loop": base.with_hparams(trial_hparams(config, base.hparams, validate_hparams))},
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
    best_hparams: dict[str, Any]  # the tuned values only: the model and its searched keys
    best_value: float
    metric: str
    n_trials: int
    parent_run_id: str
    trials: list[dict[str, Any]]


def check_space(tp: TaskParams, base_hparams: dict[str, Any], validate_hparams: Callable, label: str) -> None:
    """Every model's search space at its extremes, validated before Ray starts: a typo or an
    impossible value fails here, naming the key, instead of in a trial's log."""
    for sample in representative_samples(tp.tune.models, tp.tune.search_space):
        try:
            validate_hparams(hparams_from_trial(sample, base_hparams))
        except ConfigError as e:
            raise ConfigError(f"{label}.tune (search space of {sample['model']!r}): {e}") from None


def quiet_optuna() -> None:
    """Optuna announces every in-memory study at INFO; Tune's trial table is the progress here."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_sweep(
    *,
    tp: TaskParams,
    params: Params,
    loop: Loop,
    validate_hparams: Callable,
    base: LoopConfig,
    experiment: str,
    tags: dict[str, str],
    tracking_uri: str,
) -> SweepResult:
    """One Optuna+ASHA sweep of `tp.tune` over `base` (the fixed hparams and data); trials go to
    MLflow under a parent run; returns the best trial's hparams and value."""
    import mlflow
    import ray
    import ray.tune
    from ray.air.integrations.mlflow import MLflowLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    quiet_optuna()
    tune_p, train_p = tp.tune, tp.train
    metric, mode = base.metric.val, base.metric.mode
    family, task = base.family, base.task
    cpus = float(ray.cluster_resources().get("CPU", 1))
    storage = str(resolve(params.ray.storage_path))
    if tune_p.launcher == "function":
        trial_base = dataclasses.replace(base, use_gpu=tune_p.gpus_per_trial > 0)
        trainable = ray.tune.with_resources(
            ray.tune.with_parameters(_function_trial, loop=loop, validate_hparams=validate_hparams, base=trial_base),
            {"CPU": tune_p.cpus_per_trial} | ({"GPU": tune_p.gpus_per_trial} if tune_p.gpus_per_trial else {}),
        )
    else:
        trainable = ray.tune.with_resources(
            ray.tune.with_parameters(
                _trainer_trial, loop=loop, validate_hparams=validate_hparams, base=base,
                num_workers=tune_p.num_workers_per_trial, cpus_per_worker=train_p.cpus_per_worker,
                gpus_per_worker=train_p.gpus_per_worker, storage_path=storage, max_failures=train_p.max_failures,
            ),
            driver_resources(ray.cluster_resources()),
        )
    gpus = float(ray.cluster_resources().get("GPU", 0))
    max_concurrent = concurrency(tune_p, cpus, train_p.cpus_per_worker, gpus, train_p.gpus_per_worker)
    with mlflow.start_run(run_name=f"tune-{family}-{task}", tags=tags) as parent:
        mlflow.log_params({"tune.models": ",".join(tune_p.models), "tune.num_samples": tune_p.num_samples,
                           "tune.epochs": tune_p.epochs, "tune.launcher": tune_p.launcher,
                           "tune.max_concurrent": max_concurrent})
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
                num_samples=tune_p.num_samples,
                max_concurrent_trials=max_concurrent,
                search_alg=OptunaSearch(space=DefineByRun(tune_p.models, tune_p.search_space), metric=metric, mode=mode,
                                        seed=params.seed),
                scheduler=ASHAScheduler(time_attr="training_iteration", max_t=tune_p.epochs,
                                        grace_period=min(tune_p.grace_period, tune_p.epochs)),
                time_budget_s=tune_p.timeout_s,
            ),
            run_config=ray.tune.RunConfig(
                name=f"tune-{family}-{task}-{uuid.uuid4().hex[:8]}",
                storage_path=storage,
                callbacks=[callback],
                verbose=1,
                # a trial whose process or node died is retried (the sweep survives a lost host)
                failure_config=ray.tune.FailureConfig(max_failures=tune_p.max_failures),
            ),
        )
        grid = tuner.fit()
        best_key = f"best_{metric}"  # the loop reports the best epoch so far: train keeps the best epoch too

        def score(r: Any) -> float:
            return float(r.metrics.get(best_key, r.metrics[metric]))

        # Only trials that finished without error, with a finite score, compete.
        ok = [r for r in grid if r.error is None and r.metrics and metric in r.metrics and math.isfinite(score(r))]
        if not ok:
            errors = [str(r.error)[:300] for r in grid if r.error is not None]
            raise ConfigError(f"no tuning trial reported {metric!r}; first errors: {errors[:3]}")
        best = ok[0]
        for r in ok[1:]:  # the task's direction, from the one place that defines it (Metric.better)
            if base.metric.better(score(r), score(best)):
                best = r
        best_value = score(best)
        tuned = tuned_values(best.config)
        trials = [
            {"config": r.config, "epochs": int(r.metrics.get("epoch", -1)) + 1, "node_ip": r.metrics.get("node_ip"),
             metric: score(r)}
            for r in ok
        ]
        mlflow.log_params(tuned)
        mlflow.log_metric(best_key, best_value)
        mlflow.log_dict({"trials": trials}, "trials.json")
        return SweepResult(tuned, best_value, metric, len(grid), parent.info.run_id, trials)


def tuned_values(trial_config: dict[str, Any]) -> dict[str, Any]:
    """Only what the sweep chose: the model and its searched keys (no defaults baked in, so a
    changed default in params reaches the train stage without tuning again)."""
    return hparams_from_trial(trial_config, {})
