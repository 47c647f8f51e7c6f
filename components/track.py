"""MLflow: experiments, lineage tags, per-epoch metrics, pyfunc models, registry and champions.

Why driver-side: each stage process is the one MLflow writer (sqlite allows one writer well;
workers never need credentials). Experiments are `quartet/<family>/<task>` so every model of a
task lines up in the compare view; registered models are `quartet-<family>-<task>` with the
alias `@champion`, moved only when a new version beats the champion on the same test metric.

What the UI opens on: experiments are tagged as model training (`mlflow.experimentKind`), carry a
shared runs view (the task's metric columns; `ui_url` links to it), every stage run logs its data
as an MLflow dataset (the Dataset column: `<family>/<task>` @ the data.dvc md5), and each
registered version's description is a short model card (`model_card`).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from components.config import REPO_ROOT, Params, artifact_root, tracking_uri
from components.family import Metric

log = logging.getLogger(__name__)

CHAMPION = "champion"
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_model.py")
# The experiment-level flag MLflow 3's UI reads to tell a model-training experiment from a GenAI
# one (values of the UI's ExperimentKind). Ours are all model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
# A runs-table view stored on the experiment (the UI's "share view" mechanism): the tag
# `mlflow.sharedViewState.<key>` holds the view as JSON; `?viewStateShareKey=<key>` opens it.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
VIEW_KEY = "quartet"
# MLflow 3.17's UI picks GenAI or model training for the whole app from a toggle remembered in
# the browser (default GenAI), not from the experiment's tag: every link we print sets it.
ML_WORKFLOW = "workflowType=machine_learning"


def experiment_name(params: Params, family: str, task: str) -> str:
    return f"{params.mlflow.experiment_prefix}/{family}/{task}"


def registered_name(family: str, task: str) -> str:
    return f"quartet-{family}-{task}"


def setup(params: Params, family: str, task: str, root: Path = REPO_ROOT,
          metric: Metric | None = None, baselines: tuple[str, ...] = ()) -> str:
    """Point MLflow at the store and make sure the task's experiment exists; returns its id.

    The experiment is tagged as model training (`EXPERIMENT_KIND_TAG`), also one created before
    quartet set it (users upgrading); a kind a user chose by hand stays. Given the task's
    `metric`, the experiment also holds the runs view `ui_url` opens (`runs_view`)."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri(params, root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = experiment_name(params, family, task)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        location = None if uri.startswith("http") else f"{artifact_root(params, root)}/{family}/{task}"
        try:
            mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
        except Exception:  # created meanwhile by another process
            pass
        exp = mlflow.get_experiment_by_name(name)
    if exp.lifecycle_stage == "deleted":
        from components.config import ConfigError

        raise ConfigError(
            f"MLflow experiment {name!r} is deleted: restore it (mlflow experiments restore --experiment-id "
            f"{exp.experiment_id}) or remove it for good (mlflow gc)"
        )
    client = MlflowClient()
    kind = exp.tags.get(EXPERIMENT_KIND_TAG)
    if kind is None or kind.endswith("_inferred"):  # missing, or only the UI's guess
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if metric is not None:
        view = json.dumps(runs_view(metric, baselines), sort_keys=True)
        if exp.tags.get(VIEW_TAG_PREFIX + VIEW_KEY) != view:
            client.set_experiment_tag(exp.experiment_id, VIEW_TAG_PREFIX + VIEW_KEY, view)
    mlflow.set_experiment(experiment_id=exp.experiment_id)
    return exp.experiment_id


def runs_view(metric: Metric, baselines: tuple[str, ...] = ()) -> dict[str, Any]:
    """The runs table a task's experiment opens on: the data version (Dataset), the model, the
    validation and test metric beside the baselines' test values, the train wall time; best
    test metric first. Column keys are the UI's (`metrics.`name``)."""
    metrics = [metric.val, metric.test, *(f"{metric.test}_{b}" for b in baselines), "train_wall_s"]
    return {
        "selectedColumns": ["attributes.`Dataset`", "attributes.`Models`", "params.`hparams.model`",
                            *(f"metrics.`{m}`" for m in metrics)],
        "orderByKey": f"metrics.`{metric.test}`",
        "orderByAsc": metric.mode == "min",
    }


def ui_url(base: str, experiment_id: str | None = None) -> str:
    """The UI link to print: model-training mode; with an experiment, its runs in `runs_view`."""
    base = base.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?{ML_WORKFLOW}"
    return f"{base}/#/experiments/{experiment_id}/runs?{ML_WORKFLOW}&viewStateShareKey={VIEW_KEY}"


def git_commit(root: Path = REPO_ROOT) -> str:
    """HEAD of the repo (+"-dirty"); QUARTET_GIT_COMMIT when the code travelled without .git (jobs)."""
    if os.environ.get("QUARTET_GIT_COMMIT"):
        return os.environ["QUARTET_GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (subprocess.SubprocessError, FileNotFoundError):
        return "unknown"


def data_md5(root: Path = REPO_ROOT) -> str:
    path = root / "data.dvc"
    try:
        return str(yaml.safe_load(path.read_text())["outs"][0]["md5"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError):
        return "unknown"


def lineage_tags(family: str, task: str, stage: str, model: str | None = None, root: Path = REPO_ROOT) -> dict[str, str]:
    """Tags that tie an MLflow run to the code and data that produced it."""
    tags = {
        "quartet.family": family,
        "quartet.task": task,
        "quartet.stage": stage,
        "dvc.stage": f"{stage}@{family}-{task}",
        "git.commit": git_commit(root),
        "data.dvc.md5": data_md5(root),
    }
    if model:
        tags["quartet.model"] = model
    if os.environ.get("QUARTET_SUBMISSION_ID"):  # a cluster job: `quartet submit` finds its runs by it
        tags["quartet.submission"] = os.environ["QUARTET_SUBMISSION_ID"]
    return tags


# ----------------------------------------------------------------------------- data lineage
DATA_SOURCE_TYPE = "dvc"


def data_input(family: str, task: str, context: str, root: Path = REPO_ROOT, params: Params | None = None) -> Any:
    """The prepared split a stage read, as an MLflow DatasetInput: name `<family>/<task>`, digest
    the data.dvc md5 (whole: a DVC dir md5 is 36 characters, MLflow's digest limit), source the
    DVC path (`dvc` source type: data.dvc, its md5, the prepare stage and its output dir),
    profile the split counts; `context` ("training", "tuning") is the input tag the UI shows.

    Why an entity and not `mlflow.data.*` datasets: the data are DVC's; MLflow only records
    which version a run read, so nothing is loaded, hashed again or uploaded."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    from components.config import layout

    lay = layout(family, task, root, params)
    md5 = data_md5(root)
    prepared = lay.prepared_dir
    with contextlib.suppress(ValueError):
        prepared = prepared.relative_to(root)
    source = {"uri": f"dvc://data.dvc@{md5}/{prepared.as_posix()}", "dvc_file": "data.dvc", "md5": md5,
              "path": prepared.as_posix(), "stage": f"prepare@{family}-{task}"}
    profile = None
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        counts = json.loads((lay.prepared_dir / "info.json").read_text()).get("counts")
        profile = json.dumps({"counts": counts}, sort_keys=True) if counts else None
    dataset = Dataset(name=f"{family}/{task}", digest=md5[:36], source_type=DATA_SOURCE_TYPE,
                      source=json.dumps(source, sort_keys=True), profile=profile)
    return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def log_data_input(run_id: str, family: str, task: str, context: str, root: Path = REPO_ROOT,
                   params: Params | None = None) -> None:
    """Record on `run_id` which data version it read (`data_input`): the runs table's Dataset
    column then shows `<family>/<task>` (the md5's first characters) for the run."""
    from mlflow import MlflowClient

    MlflowClient().log_inputs(run_id, datasets=[data_input(family, task, context, root, params)])


def log_sweep_data_inputs(parent_run_id: str, family: str, task: str, root: Path = REPO_ROOT,
                          params: Params | None = None) -> int:
    """`log_data_input` ("tuning") on a sweep run and on each of its trial runs (those tagged
    `mlflow.parentRunId` = it: Ray's MLflowLoggerCallback makes them); returns how many runs."""
    from mlflow import MlflowClient

    client = MlflowClient()
    parent = client.get_run(parent_run_id)
    trials = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
                                max_results=10_000)
    run_ids = [parent_run_id, *(t.info.run_id for t in trials)]
    for run_id in run_ids:
        log_data_input(run_id, family, task, "tuning", root, params)
    return len(run_ids)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """MLflow params are flat strings; nested dicts become dotted keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def log_history(history: list[dict[str, float]]) -> None:
    """Per-epoch metrics of the active run, step = epoch (the UI draws them as curves)."""
    import mlflow

    for row in history:
        step = int(row["epoch"])
        mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch" and _finite(v)}, step=step)


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(float(v))


# ----------------------------------------------------------------------------- models + registry
def log_training(family: str, task: str, hparams: dict[str, Any], tp: Any, sweep_run_id: str, result: Any,
                 root: Path = REPO_ROOT, params: Params | None = None) -> dict[str, str]:
    """The train stage's MLflow run: its data (`log_data_input`, context "training"), params,
    per-epoch curves, wall time, the model dir."""
    import mlflow

    tags = lineage_tags(family, task, "train", hparams["model"], root)
    with mlflow.start_run(run_name=f"train-{hparams['model']}", tags=tags) as run:
        log_data_input(run.info.run_id, family, task, "training", root, params)
        mlflow.log_params(flatten({"hparams": hparams, "train": tp.train.model_dump(exclude={"hparams"})}))
        mlflow.log_param("tune.sweep_run_id", sweep_run_id)
        log_history(result.history)
        mlflow.log_metric("train_wall_s", result.wall_s)
        mlflow.log_artifacts(str(result.model_dir), "model_dir")
    return {"mlflow_run_id": run.info.run_id, "experiment_id": run.info.experiment_id}


def log_evaluation(run_id: str, metrics: dict[str, float], plots_dir: Path) -> None:
    """Evaluate's metrics and plots on the train run. Logged one step after the last epoch: the
    run's latest val_*/test_* (what the compare view shows) are those of the evaluated best-epoch
    model; the curve stays per epoch."""
    import mlflow

    with mlflow.start_run(run_id=run_id):
        mlflow.log_metrics(metrics, step=int(metrics.get("epochs_trained", 0)))
        mlflow.log_artifacts(str(plots_dir), "plots")


def code_dirs(*modules: str) -> list[str]:
    """The top-level package directories of `modules` (what a logged pyfunc needs to import)."""
    dirs = []
    for m in ("components", *modules):
        package = importlib.import_module(m.split(":")[0].split(".")[0])
        d = str(Path(next(iter(package.__path__))).resolve())  # a namespace package (components/) has no __file__
        if d not in dirs:
            dirs.append(d)
    return dirs


def log_pyfunc(model_dir: Path, run_id: str, predictor: str, method: str, request: str,
               input_example: dict[str, Any]) -> Any:
    """Log a model dir as a pyfunc on `run_id` (models-from-code, code shipped along): it answers
    with `predictor`'s `method`, one `request` ("module:Class") per input row."""
    import warnings

    import mlflow

    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        # MLflow hints that integer fields (e.g. `horizon`) cannot hold missing values: by design.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_ENTRY),
            artifacts={"model_dir": str(model_dir)},
            code_paths=code_dirs(predictor),
            input_example=input_example,
            signature=request_signature(input_example, import_object(request)),
            model_config={"predictor": predictor, "method": method, "request": request},
            pip_requirements=_pip_requirements(),
        )


def request_signature(input_example: dict[str, Any], request_cls: type) -> Any:
    """The pyfunc's input schema: inferred from the example, but a field the request model gives
    a default (e.g. the forecaster's `intervals`) is optional, as it is on Serve's routes; an
    inferred schema would make every key of the example required."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types.schema import ColSpec, Schema

    inferred = infer_signature(input_example)
    fields = getattr(request_cls, "model_fields", {})
    required = {name for name, f in fields.items() if f.is_required()} if fields else None
    cols = [ColSpec(c.type, c.name, required=required is None or c.name in required) for c in inferred.inputs.inputs]
    return ModelSignature(inputs=Schema(cols), outputs=inferred.outputs, params=inferred.params)


def _pip_requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{p}=={version(p)}" for p in ("torch", "mlflow", "numpy", "pandas", "pydantic", "pyarrow", "PyYAML")]


def import_object(path: str) -> Any:
    """'package.module:Name' -> the object (the registry and Serve configs name classes as text)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def load_predictor(predictor_path: str, model_dir: Path, model_version: str | None = None) -> Any:
    """'package.module:Class' -> an instance for this model dir."""
    return import_object(predictor_path)(model_dir, model_version=model_version)


def smoke_test(model_uri: str, input_example: dict[str, Any]) -> Any:
    """Load the logged model the way `mlflow models serve` does and predict once; raises if broken."""
    import mlflow

    model = mlflow.pyfunc.load_model(model_uri)
    return model.predict(input_example)


@dataclass(frozen=True)
class Promotion:
    name: str
    version: str
    metric: str
    value: float
    previous_version: str | None
    previous_value: float | None
    promoted: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def champion(name: str) -> Any | None:
    """The current champion's ModelVersion (tags hold its test metric and test-set fingerprint)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


@contextlib.contextmanager
def promotion_lock(name: str, timeout_s: float = 120, stale_s: float = 600) -> Iterator[None]:
    """Only one process at a time decides about `name`'s champion, on any MLflow backend.

    Why a registered model as the lock: creating one is atomic in every MLflow store (a unique
    name in the database) and needs no storage shared with the other writers. A holder that died
    leaves the lock behind; one older than `stale_s` is broken."""
    import random
    import socket

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client, lock = MlflowClient(), f"{name}.promotion-lock"
    end = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(lock, description=f"held by {socket.gethostname()}:{os.getpid()} "
                                           "while it moves @champion; removed when done")
            break
        except MlflowException as e:
            # Taken (RESOURCE_ALREADY_EXISTS), or the store was busy (sqlite: "database is
            # locked"): either way, wait and try again until the deadline.
            log.debug("promotion lock of %s: %s", name, e.error_code)
            with contextlib.suppress(MlflowException):
                if time.time() * 1000 - client.get_registered_model(lock).creation_timestamp > stale_s * 1000:
                    log.warning("breaking a stale promotion lock on %s", name)
                    client.delete_registered_model(lock)
                    continue
            if time.monotonic() > end:
                raise TimeoutError(f"another process has held the promotion lock of {name} for over {timeout_s:.0f} s "
                                   f"(registered model {lock!r}; delete it if no register is running)") from None
            time.sleep(0.1 + 0.2 * random.random())
    try:
        yield
    finally:
        with contextlib.suppress(MlflowException):
            client.delete_registered_model(lock)


def register_and_promote(
    model_uri: str, name: str, metric: str, value: float, mode: str, test_set: str, tags: dict[str, str],
    promote_hint: str = "", veto: str | None = None,
) -> Promotion:
    """Register a version; move @champion only if it beats the champion on the same metric of the
    same test set (`test_set` fingerprints the split and the task's shape) and nothing vetoes it
    (`veto`: why not, e.g. a baseline beats it). Otherwise the champion stays, and the reason says so.

    Atomic: the champion is read, compared and moved under `promotion_lock`, so of two concurrent
    registers the worse can never overwrite the better. The version is registered with
    `quartet.promoted=pending`; the alias moves first, then the tag says true/false, so `true`
    always means the alias was moved to it."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient()
    version_tags = {**tags, "quartet.metric": metric, "quartet.metric_value": repr(value), "quartet.test_set": test_set,
                    "quartet.promoted": "pending"}
    mv = mlflow.register_model(model_uri, name, tags=version_tags)
    with promotion_lock(name):
        promoted, reason, prev_version, prev_value = _decide(champion(name), metric, value, mode, test_set, promote_hint)
        if veto is not None:
            promoted, reason = False, veto
            client.set_model_version_tag(name, mv.version, "quartet.refused", veto)
        if promoted:
            client.set_registered_model_alias(name, CHAMPION, mv.version)
        client.set_model_version_tag(name, mv.version, "quartet.promoted", str(promoted).lower())
    return Promotion(name, str(mv.version), metric, value, prev_version, prev_value, promoted, reason)


def _decide(current: Any, metric: str, value: float, mode: str, test_set: str,
            promote_hint: str) -> tuple[bool, str, str | None, float | None]:
    """(promote?, why, champion version, champion value): pure, given the current champion."""
    if current is None:
        return True, "no champion yet", None, None
    prev_version = str(current.version)
    raw_prev = current.tags.get("quartet.metric_value")
    prev_value = float(raw_prev) if raw_prev is not None else None
    if current.tags.get("quartet.metric") != metric or prev_value is None or current.tags.get("quartet.test_set") != test_set:
        return (False, f"not comparable: champion v{prev_version} was scored on another test set or metric; "
                f"it stays{promote_hint}", prev_version, prev_value)
    promoted = Metric(metric, mode).better(value, prev_value)
    cmp = "beats" if promoted else "does not beat"
    return promoted, f"{metric} {value:.6g} {cmp} champion v{prev_version} ({prev_value:.6g})", prev_version, prev_value


def model_card(*, name: str, version: str, family: str, task: str, hparams: dict[str, Any], metric: Metric,
               metrics: dict[str, float], baselines: tuple[str, ...], data_version: str, prepared: str,
               test_set: str, commit: str, promotion: Promotion, intended_use: str, limits: str) -> str:
    """A registered version's description (markdown, short): what it is, the data it was trained
    and tested on, its metric beside the baselines, the promotion decision, intended use, limits."""

    def num(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    model = hparams.get("model", "?")
    knobs = ", ".join(f"{k}={num(v)}" for k, v in sorted(hparams.items()) if k != "model" and v is not None)
    direction = "lower is better" if metric.mode == "min" else "higher is better"
    value = metrics.get(metric.test)
    lines = [
        f"**{name} v{version}**: {family} / {task}, model `{model}` ({knobs})",
        "",
        f"- **Data**: `data.dvc` md5 `{data_version}`; split `{prepared}` (stage `prepare@{family}-{task}`); "
        f"test set fingerprint `{test_set[:12]}`; code `{commit[:12]}`",
        f"- **Metric**: `{metric.test}` = {num(float(value)) if value is not None else '?'} ({direction}); "
        f"`{metric.val}` = {num(float(metrics[metric.val])) if metric.val in metrics else '?'}",
    ]
    scored = [(b, metrics[f"{metric.test}_{b}"]) for b in baselines if f"{metric.test}_{b}" in metrics]
    if scored:
        lines.append("- **Baselines** (same test set): " + ", ".join(f"{b} {num(float(v))}" for b, v in scored))
    lines += [
        f"- **Promotion**: {'@champion' if promotion.promoted else 'not promoted'}: {promotion.reason}",
        f"- **Intended use**: {intended_use or 'not stated'}",
        f"- **Limits**: {limits or 'not stated'}",
    ]
    return "\n".join(lines) + "\n"


def describe(name: str, version: str, card: str, promoted: bool) -> bool:
    """Write `card` as the version's description, and as the registered model's (what the
    registry page shows) when the version became the champion: the model's card is the
    champion's (`promote` copies it when the alias is moved by hand).

    Never raises: it runs after the version is registered and @champion moved, and a missing
    description is cosmetic while failing the stage would leave a registered, promoted version
    that DVC thinks was not (its rerun registers a duplicate). A failure is logged as a warning."""
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        client.update_model_version(name, version, description=card)
        if promoted:
            client.update_registered_model(name, description=card)
        return True
    except Exception as e:  # noqa: BLE001 - cosmetic: see the docstring
        log.warning("%s v%s: could not write the model card (%s); the registration stands", name, version, e)
        return False


def promote(name: str, version: str) -> None:
    """Move @champion to an existing version by hand (e.g. after the test set changed); its
    model card becomes the registered model's description."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    mv = client.get_model_version(name, version)  # raises if it does not exist
    with promotion_lock(name):
        client.set_registered_model_alias(name, CHAMPION, version)
        client.set_model_version_tag(name, version, "quartet.promoted", "manual")
    if mv.description:
        card = re.sub(r"^- \*\*Promotion\*\*: .*$", "- **Promotion**: @champion, moved by hand (quartet promote)",
                      mv.description, flags=re.M)
        try:
            client.update_model_version(name, version, description=card)
            client.update_registered_model(name, description=card)
        except MlflowException as e:  # cosmetic, as in `describe`
            log.warning("%s: could not copy v%s's model card (%s)", name, version, e)


def version_info(mv: Any) -> dict[str, Any]:
    """What `/models` tells about a version: name, version, run, metric and the run's test metrics."""
    import mlflow

    run = mlflow.get_run(mv.run_id) if mv.run_id else None
    return {
        "name": mv.name,
        "version": str(mv.version),
        "alias": CHAMPION,
        "run_id": mv.run_id,
        "experiment_id": run.info.experiment_id if run else None,
        "metric": mv.tags.get("quartet.metric"),
        "test_metrics": {k: v for k, v in (run.data.metrics.items() if run else []) if k.startswith("test_")},
    }


def download_version(name: str, version: str, dst: Path) -> Path:
    """Download `models:/<name>/<version>` (by version: the alias may move meanwhile) -> its model dir."""
    import mlflow

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{name}/{version}", dst_path=str(dst)))
    model_dir = local / "artifacts" / "model_dir"
    if not model_dir.is_dir():
        candidates = [p.parent for p in local.rglob("config.json")]
        if not candidates:
            raise FileNotFoundError(f"models:/{name}/{version} has no quartet model dir")
        model_dir = candidates[0]
    return model_dir
