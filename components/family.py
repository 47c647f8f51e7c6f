"""The family protocol: what a model family (pipelines/<family>/) hands to the verbs.

Why a dataclass and not a base class: a family is a bundle of plain functions (ingest, prepare,
loop, evaluate) plus a Predictor class; the verbs in components/ call them and never import a
family. `pipelines/__init__.py` maps names to these objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel


class Predictor(Protocol):
    """Loads one model dir; used by the MLflow pyfunc wrapper and by Ray Serve alike."""

    def __init__(self, model_dir: Path) -> None: ...

    def predict(self, request: BaseModel) -> BaseModel: ...

    def predict_batch(self, requests: list[BaseModel]) -> list[BaseModel]: ...


@dataclass(frozen=True)
class Route:
    """One HTTP route of the served app: POST /<family>/<name>, body validated by `request`."""

    name: str
    request: type[BaseModel]
    response: type[BaseModel]
    # Request task -> the registered task that answers it on this route, e.g. generative
    # "reconstruct" for "fashion-mnist" is answered by the "fashion-mnist-autoencoder" champion.
    task_map: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Metric:
    """The metric a task is judged on: tuned on `val`, promoted on `test` (same name stem)."""

    name: str  # e.g. "mse" -> val_mse, test_mse
    mode: str = "min"

    @property
    def val(self) -> str:
        return f"val_{self.name}"

    @property
    def test(self) -> str:
        return f"test_{self.name}"

    def better(self, new: float, old: float) -> bool:
        return new < old if self.mode == "min" else new > old


@dataclass(frozen=True)
class Family:
    name: str
    tasks: tuple[str, ...]
    # ingest(raw_dir, seed): writes this family's raw files under raw_dir deterministically.
    ingest: Callable[[Path, int], None]
    # prepare(task, prepare_params, raw_dir, out_dir, seed): writes splits + info.json into out_dir.
    prepare: Callable[[str, dict[str, Any], Path, Path, int], dict[str, Any]]
    # validate_hparams(hparams) -> normalised hparams; raises ConfigError naming the key.
    validate_hparams: Callable[[dict[str, Any]], dict[str, Any]]
    # train_loop(config): the per-worker loop (Ray Train worker, Tune trial or plain process).
    train_loop: Callable[[dict[str, Any]], Any]
    # evaluate(model_dir, prepared_dir, plots_dir, params) -> flat metrics dict (val_*, test_*).
    evaluate: Callable[[Path, Path, Path, dict[str, Any]], dict[str, float]]
    predictor: type
    metrics: dict[str, Metric]  # task -> the metric it is tuned and promoted on
    routes: tuple[Route, ...] = field(default_factory=tuple)
    # input_example(model_dir) -> a request dict used for the MLflow signature and a smoke test.
    input_example: Callable[[Path], dict[str, Any]] | None = None
    # check_task_model(task, model): raises ConfigError when a model cannot do a task (e.g. an
    # autoencoder asked to be the generator), so the CLI says so before Ray starts.
    check_task_model: Callable[[str, str], None] | None = None


class RequestError(ValueError):
    """A request the model cannot answer (wrong shape, too long, ...): served as HTTP 422."""
