"""The pipeline's stages as plain functions: prepare -> tune -> train -> evaluate -> register.

Each takes a `Family` and the loaded params, reads the previous stage's small file and writes its
own (the DVC outputs of dvc.yaml); `quartet <stage> FAMILY TASK` and `python -m quartet.stage`
only look the family up and call these, so tests call them too. Why here and not in the CLI:
a DVC stage depends on the code it runs; with the stages in the CLI module, editing the help text
of `quartet ui` invalidated every stage.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from components import cluster, config, data, track
from components.config import REPO_ROOT, ConfigError, Params, TaskParams, layout
from components.family import Family

log = logging.getLogger(__name__)


def task_params(params: Params, family: Family, task: str) -> TaskParams:
    if task not in family.all_tasks:
        raise ConfigError(f"family {family.name!r} has no task {task!r} (tasks: {list(family.all_tasks)})")
    return params.task(family.name, task)


def require_server_in_job(params: Params, root: Path) -> None:
    """Inside a Ray job the runs must go to a server every node and the user reach, never to a
    sqlite file in the job's throw-away working dir."""
    uri = config.tracking_uri(params, root)
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") and not uri.startswith(("http://", "https://")):
        raise ConfigError(
            f"a cluster job needs an MLflow server (got {uri}): set MLFLOW_TRACKING_URI on the cluster's nodes, "
            "mlflow.tracking_uri in the profile, or quartet submit --mlflow-uri http://..."
        )


def setup_tracking(family: Family, task: str, params: Params, root: Path) -> str:
    """`track.setup` with the task's metric and baselines: the experiment's runs view shows them."""
    return track.setup(params, family.name, task, root, metric=family.metrics[task], baselines=family.baselines)


# ----------------------------------------------------------------------------- data
def make_data(families: Iterable[Family], root: Path = REPO_ROOT, verify: bool = True, force: bool = False) -> str:
    """Materialise data/ from its sources (deterministic), then check it against data.dvc."""
    params = config.load(root)
    data_dir = root / "data"
    if force or not data_dir.exists():
        with data.atomic_dir(data_dir) as tmp:
            for fam in families:
                fam.ingest(tmp / fam.name, params.seed)
    md5 = data.dvc_dir_md5(data_dir)
    expected = track.data_md5(root)
    if verify and expected != "unknown" and md5 != expected:
        raise ConfigError(
            f"data/ hashes to {md5} but data.dvc pins {expected}: the sources changed "
            "(package versions?). Inspect, then `dvc add data` if the change is intended."
        )
    return md5


# ----------------------------------------------------------------------------- stages
def prepare(family: Family, task: str, params: Params, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Raw data -> train/val/test splits + info.json (prepared/<family>/<task>)."""
    tp = task_params(params, family, task)
    lay = layout(family.name, task, root, params)
    with data.atomic_dir(lay.prepared_dir) as tmp:
        info = family.prepare(task, tp.prepare, lay.raw_dir, tmp, params.seed)
    log.info("prepared %s: %s", lay.key, info.get("counts"))
    return info


def tune(family: Family, task: str, params: Params, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Sweep with Ray Tune; write best_params.yaml (the tuned values; the trials live in MLflow,
    under the sweep run; it and every trial record the data version read as an MLflow dataset)."""
    from mlflow import MlflowClient

    from components.train import loop_config, worker_threads
    from components.tune import check_space, run_sweep

    tp = with_default_spaces(family, task_params(params, family, task))
    label = f"families.{family.name}.{task}"
    fixed = {**tp.tune.hparams, "model": tp.tune.models[0]}
    check_space(tp, fixed, lambda hp: family.validate_hparams(hp, task), label)  # before Ray starts
    require_server_in_job(params, root)
    lay = layout(family.name, task, root, params)
    trial_cpus = tp.tune.cpus_per_trial if tp.tune.launcher == "function" else tp.train.cpus_per_worker
    base = loop_config(family, task, fixed, lay.prepared_dir, tp.tune.epochs, params.seed,
                       max_train_samples=tp.tune.max_train_samples, threads=worker_threads(trial_cpus))
    base = base.with_hparams({**tp.tune.hparams, "model": base.model})  # unvalidated: each trial validates its own
    with cluster.ray_session(params), cluster.deadline(tp.tune.timeout_s + 300, f"tune {family.name}/{task}"):
        setup_tracking(family, task, params, root)
        result = run_sweep(
            tp=tp, params=params, loop=family.loop, validate_hparams=lambda hp: family.validate_hparams(hp, task),
            base=base, experiment=track.experiment_name(params, family.name, task),
            tags=track.lineage_tags(family.name, task, "tune", root=root), tracking_uri=config.tracking_uri(params, root),
        )
    out = {"hparams": result.best_hparams, "metric": result.metric, "value": result.best_value,
           "trials": result.n_trials, "mlflow_sweep_run_id": result.parent_run_id}
    data.write_text_atomic(lay.best_params, yaml.safe_dump(out, sort_keys=True))
    # beside the trials, so a user who tuned on a cluster gets them back (quartet submit tune)
    MlflowClient().log_artifact(result.parent_run_id, str(lay.best_params))
    track.log_sweep_data_inputs(result.parent_run_id, family.name, task, root, params)
    log.info("best %s = %.6g with %s", result.metric, result.best_value, result.best_hparams)
    return out


def with_default_spaces(family: Family, tp: TaskParams) -> TaskParams:
    """The task's sweep with each candidate model's search space: params' when it gives one (it
    replaces the model's whole default), else the one declared beside the model (ModelSpec.space)."""
    from components.config import SpaceSpec, validate_model

    space = {}
    for name in tp.tune.models:
        given = tp.tune.search_space.get(name)
        if given is None:
            given = {k: validate_model(SpaceSpec, v, f"{family.name} model {name!r} default space: {k}")
                     for k, v in family.model(name).space.items()}
        space[name] = given
    return tp.model_copy(update={"tune": tp.tune.model_copy(update={"search_space": space})})


def train_hparams(family: Family, task: str, tp: TaskParams, best_params: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(validated hparams of the final training, best_params.yaml's content): the model's
    defaults <- train.hparams <- the tuned values."""
    best = config.read_yaml(best_params) if best_params.exists() else {"hparams": {}}
    merged = {**tp.train.hparams, **best.get("hparams", {})}
    if "model" not in merged:
        raise ConfigError(
            f"no model to train: {best_params} is missing (run `quartet tune {family.name} {task}`) "
            f"and families.{family.name}.{task}.train.hparams.model is not set"
        )
    return family.validate_hparams(merged, task), best


def train(family: Family, task: str, params: Params, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Retrain the best config with Ray Train; write the model dir; log the run to MLflow."""
    import mlflow

    from components.train import fit, loop_config, worker_threads

    tp = task_params(params, family, task)
    lay = layout(family.name, task, root, params)
    hparams, best = train_hparams(family, task, tp, lay.best_params)
    require_server_in_job(params, root)
    cfg = loop_config(family, task, hparams, lay.prepared_dir, tp.train.epochs, params.seed,
                      threads=worker_threads(tp.train.cpus_per_worker))
    with cluster.ray_session(params), cluster.deadline(tp.train.timeout_s, f"train {family.name}/{task}"):
        setup_tracking(family, task, params, root)
        result = fit(family.loop, cfg, params, tp.train.num_workers, tp.train.cpus_per_worker,
                     tp.train.max_failures, lay.model_dir, gpus_per_worker=tp.train.gpus_per_worker)
    if family.finish_model_dir is not None:
        family.finish_model_dir(lay.model_dir, lay.prepared_dir)
    run = track.log_training(family.name, task, hparams, tp, best.get("mlflow_sweep_run_id", "none"), result, root,
                             params)
    data.write_json(lay.model_dir / "run.json", run)
    return {"run_id": run["mlflow_run_id"], "epochs": len(result.history), "wall_s": result.wall_s}


def evaluate(family: Family, task: str, params: Params, root: Path = REPO_ROOT) -> dict[str, float]:
    """Metrics (DVC metrics JSON + MLflow) and plots (DVC plots + MLflow artifacts)."""
    tp = task_params(params, family, task)
    lay = layout(family.name, task, root, params)
    run_id = data.read_json(lay.model_dir / "run.json")["mlflow_run_id"]
    with data.atomic_dir(lay.plots_dir) as plots:
        metrics = family.evaluate(lay.model_dir, lay.prepared_dir, plots, tp.evaluate)
    data.write_json(lay.metrics_file, metrics)
    setup_tracking(family, task, params, root)
    track.log_evaluation(run_id, metrics, lay.plots_dir)
    return metrics


def register(family: Family, task: str, params: Params, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Log the model dir as a pyfunc, smoke-test it, register it, promote it if it is better, and
    write its model card (`track.model_card`) as the description: a card that cannot be written
    is a warning, never a failed stage once the version is registered (`track.describe`)."""
    tp = task_params(params, family, task)
    lay = layout(family.name, task, root, params)
    metrics = data.read_json(lay.metrics_file)
    metric = family.metrics[task]
    value = metrics.get(metric.test)
    if value is None or not math.isfinite(float(value)):
        raise ConfigError(f"{lay.metrics_file}: no finite {metric.test!r}; not registering a broken model")
    run_id = data.read_json(lay.model_dir / "run.json")["mlflow_run_id"]
    example = family.input_example(lay.model_dir)
    route = family.route_for(task)
    predictor = f"{family.predictor.__module__}:{family.predictor.__name__}"
    request = f"{route.request.__module__}:{route.request.__name__}"
    setup_tracking(family, task, params, root)
    info = track.log_pyfunc(lay.model_dir, run_id, predictor, route.method, request, example)
    track.smoke_test(info.model_uri, example)  # raises before registration if the model is broken
    model_config = data.read_json(lay.model_dir / "config.json")
    model = model_config["model"]
    test_set = family.test_set_fingerprint(lay.prepared_dir)
    tags = track.lineage_tags(family.name, task, "register", model, root)
    promotion = track.register_and_promote(
        info.model_uri, track.registered_name(family.name, task), metric.test, float(value), metric.mode,
        test_set, tags,
        promote_hint=f" (to serve the new one: quartet promote {family.name} {task} VERSION)",
        veto=baseline_veto(family, task, metrics) if tp.registration.must_beat_baselines else None,
    )
    log.info("%s v%s: %s", promotion.name, promotion.version, promotion.reason)
    prepared = lay.prepared_dir.relative_to(root) if lay.prepared_dir.is_relative_to(root) else lay.prepared_dir
    try:  # the version is registered and promoted: its card is cosmetic, the stage must not fail now
        card = track.model_card(
            name=promotion.name, version=promotion.version, family=family.name, task=task,
            hparams=model_config.get("hparams") or {"model": model}, metric=metric, metrics=metrics,
            baselines=family.baselines, data_version=tags["data.dvc.md5"], prepared=prepared.as_posix(),
            test_set=test_set, commit=tags["git.commit"], promotion=promotion,
            intended_use=family.intended_use.get(task, ""), limits=family.limits.get(task, ""),
        )
    except Exception as e:  # noqa: BLE001
        log.warning("%s v%s: no model card (%s)", promotion.name, promotion.version, e)
    else:
        track.describe(promotion.name, promotion.version, card, promotion.promoted)
    out = promotion.as_dict() | {"model_uri": info.model_uri}
    data.write_json(lay.registry_file, out)
    return out


def baseline_veto(family: Family, task: str, metrics: dict[str, float]) -> str | None:
    """Why a model must not become champion: a forecast that needs no training does better."""
    beaten = family.beaten_by(task, metrics)
    if beaten is None:
        return None
    name, baseline = beaten
    metric = family.metrics[task]
    value = float(metrics[metric.test])
    return (f"{metric.test} {value:.6g} is beaten by the {name} baseline ({baseline:.6g}: the model is "
            f"{abs(value - baseline) / abs(baseline):.1%} worse); not promoted")


STAGES = {"prepare": prepare, "tune": tune, "train": train, "evaluate": evaluate, "register": register}
