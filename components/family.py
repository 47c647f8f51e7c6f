"""The family protocol: what a model family (families/<family>/) hands to the verbs.

Why a dataclass and not a base class: a family is a bundle of plain functions (ingest, prepare,
loop, evaluate), its model zoo and a Predictor class; the verbs in components/ call them and
never import a family. `families/__init__.py` maps names to these objects.

Each model is declared once, as a `ModelSpec` in its family's zoo (timm's `register_model`,
NeuralForecast's `default_config`): its name, its own hyperparameters (a pydantic model), its
constructor and its default search space. `validate_hparams` is the one check every stage and
every trial goes through.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from components.config import ConfigError, validate_model

log = logging.getLogger(__name__)


class RequestError(ValueError):
    """A request the model cannot answer (wrong shape, too long, ...): served as HTTP 422."""


class Predictor(Protocol):
    """Loads one model dir; used by the MLflow pyfunc wrapper and by Ray Serve alike.

    Besides `__init__`, a Predictor has one method per Route of its family, named by
    `Route.method`, taking a list of that route's requests and returning their responses in
    order (one pass over the whole list: that is how Serve batches)."""

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None: ...


@dataclass(frozen=True)
class Route:
    """One HTTP route of the served app: POST /<family>/<name>, body validated by `request`,
    answered by the Predictor method `method`, for the registered tasks in `tasks` (all the
    family's when empty)."""

    name: str
    request: type[BaseModel]
    response: type[BaseModel]
    method: str
    tasks: tuple[str, ...] = ()
    # Request task -> the registered task that answers it on this route, e.g. generative
    # "reconstruct" for "fashion-mnist" is answered by the "fashion-mnist-autoencoder" champion.
    task_map: dict[str, str] = field(default_factory=dict)

    def serves(self, task: str) -> bool:
        return not self.tasks or task in self.tasks


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
class ModelSpec:
    """One model of a family, declared once."""

    name: str
    hparams: type[BaseModel]  # this model's knobs (extra="forbid"); `model` is added by validation
    build: Callable[[dict[str, Any], dict[str, Any]], Any]  # (validated hparams, data info) -> nn.Module
    space: dict[str, dict[str, Any]] = field(default_factory=dict)  # default search space (SpaceSpec dicts)
    tasks: tuple[str, ...] = ()  # the tasks it can be trained for (all the family's when empty)
    doc: str = ""


def zoo(*specs: ModelSpec) -> dict[str, ModelSpec]:
    """name -> spec, refusing a name declared twice."""
    out: dict[str, ModelSpec] = {}
    for s in specs:
        if s.name in out:
            raise ValueError(f"model {s.name!r} declared twice")
        out[s.name] = s
    return out


@dataclass(frozen=True)
class Family:
    name: str
    tasks: tuple[str, ...]
    # ingest(raw_dir, seed): writes this family's raw files under raw_dir deterministically.
    ingest: Callable[[Path, int], None]
    # prepare(task, prepare_params, raw_dir, out_dir, seed): writes splits + info.json into out_dir.
    prepare: Callable[[str, dict[str, Any], Path, Path, int], dict[str, Any]]
    models: dict[str, ModelSpec]
    # loop(config: LoopConfig, session: Session) -> history: the family's training loop.
    loop: Callable[[Any, Any], list[dict[str, Any]]]
    # evaluate(model_dir, prepared_dir, plots_dir, params) -> flat metrics dict (val_*, test_*).
    evaluate: Callable[[Path, Path, Path, dict[str, Any]], dict[str, float]]
    predictor: type
    metrics: dict[str, Metric]  # task -> the metric it is tuned and promoted on
    routes: tuple[Route, ...] = field(default_factory=tuple)
    # input_example(model_dir) -> a request dict used for the MLflow signature and a smoke test.
    input_example: Callable[[Path], dict[str, Any]] | None = None
    # The info.json keys that, with the bytes of the prepared test* files, define what a test
    # metric was measured on (two models compare only when these agree).
    test_set_keys: tuple[str, ...] = ()
    # finish_model_dir(model_dir, prepared_dir): adds what serving needs beyond the weights, once
    # the best weights are known: the forecaster's conformal errors (measured on the val split)
    # and the few test windows its demo panel draws. The train stage runs it on the model dir it
    # wrote, so the registered model carries them.
    finish_model_dir: Callable[[Path, Path], Any] | None = None
    # Forecasts that need no training, scored by evaluate as `<test metric>_<name>`: register
    # refuses to promote a model one of them beats (a champion must earn its keep).
    baselines: tuple[str, ...] = ()
    # The family's panel of the served app's demo page (`GET /`): a plain script that calls
    # `quartet.register(family, {title, render})` and only the family's public JSON routes.
    demo_panel: Path | None = None
    # The model card `register` writes as the registered model's description (track.model_card):
    # task -> what its model is for, and task -> what it must not be taken for (honest, short).
    intended_use: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    # Tasks the stage commands run on request (`quartet train rl Breakout --profile full`) that
    # the default `dvc repro` does not: they cost more than a laptop's pipeline budget (Atari:
    # minutes per evaluation). The app serves one once it has a @champion; health and status
    # never count one that has none as missing.
    extra_tasks: tuple[str, ...] = ()

    @property
    def all_tasks(self) -> tuple[str, ...]:
        """The pipeline's tasks, then the extra ones: what a stage command accepts."""
        return self.tasks + self.extra_tasks

    def beaten_by(self, task: str, metrics: dict[str, float]) -> tuple[str, float] | None:
        """(name, value) of the best baseline that beats the model's test metric, else None."""
        metric = self.metrics[task]
        scored = [(name, float(metrics[f"{metric.test}_{name}"])) for name in self.baselines
                  if f"{metric.test}_{name}" in metrics]
        beating = [(n, v) for n, v in scored if metric.better(v, float(metrics[metric.test]))]
        if not beating:
            return None
        best = beating[0]
        for n, v in beating[1:]:
            best = (n, v) if metric.better(v, best[1]) else best
        return best

    def model(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise ConfigError(f"{self.name} hparams: model: unknown model {name!r} (known: {', '.join(self.models)})")
        return self.models[name]

    def validate_hparams(self, raw: dict[str, Any], task: str | None = None) -> dict[str, Any]:
        """raw hparams (params + tuned values) -> this model's validated hparams, with `model`.

        Keys another model of the family takes are dropped (a task's hparams are shared by all
        the models its sweep considers); a key no model takes is an error naming it."""
        if "model" not in raw:
            raise ConfigError(f"{self.name} hparams: model: missing (one of {', '.join(self.models)})")
        spec = self.model(str(raw["model"]))
        if task is not None and spec.tasks and task not in spec.tasks:
            raise ConfigError(f"{self.name} hparams: model: {spec.name!r} cannot be trained for task {task!r} "
                              f"(it does {', '.join(spec.tasks)})")
        own = set(spec.hparams.model_fields)
        known = set().union(*(s.hparams.model_fields for s in self.models.values()))
        unknown = sorted(k for k in raw if k != "model" and k not in known)
        if unknown:
            raise ConfigError(f"{self.name} hparams: {unknown[0]}: no {self.name} model takes this key")
        dropped = sorted(k for k in raw if k != "model" and k not in own)
        if dropped:
            log.debug("%s: ignoring hparams of other models: %s", spec.name, dropped)
        hp = validate_model(spec.hparams, {k: v for k, v in raw.items() if k in own}, f"{self.name} hparams ({spec.name})")
        return {"model": spec.name, **hp.model_dump()}

    def route_for(self, task: str) -> Route:
        """The route a registered task's model answers (what its MLflow pyfunc serves)."""
        for r in self.routes:
            if r.serves(task):
                return r
        raise ConfigError(f"family {self.name!r} has no route for task {task!r}")

    def test_set_fingerprint(self, prepared_dir: Path) -> str:
        """What a test metric was measured on: the test split's bytes and the task's shape.

        Every prepared file whose name starts with "test" counts (test.parquet, test_seeds.json, ...)."""
        info = json.loads((Path(prepared_dir) / "info.json").read_text())
        shape = {k: info.get(k) for k in ("task", *self.test_set_keys)}
        h = hashlib.md5()
        for f in sorted(Path(prepared_dir).glob("test*")):
            if f.is_file():
                h.update(f.name.encode())
                h.update(hashlib.md5(f.read_bytes()).digest())
        h.update(json.dumps(shape, sort_keys=True).encode())
        return h.hexdigest()
