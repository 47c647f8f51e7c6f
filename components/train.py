"""The supervised epoch loop, and the launchers that run any family's loop (plain, Ray Train).

A loop is `loop(config: LoopConfig, session: Session)` (components/session.py): the session is
where it runs. `run_supervised` is the loop of every family whose training is "minimise a loss
over batches" (forecaster, translator, the autoencoders); a family with another shape (the DCGAN,
the RL agents) writes its own loop against the same session.

The model-dir format is the one contract every consumer reads: `config.json` (family, task,
model, hparams, data info, versions) + `weights.pt` (a state_dict; never a pickled module).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from components.config import ConfigError, Params, resolve
from components.data import atomic_dir, read_json, seeded_loader, write_json
from components.family import Family
from components.modeldir import CONFIG_JSON, WEIGHTS, load_model, load_model_dir, save_model_dir  # noqa: F401
from components.session import (
    HISTORY,
    Best,
    Loop,
    LoopConfig,
    PlainSession,
    Session,
    TrainingDiverged,
    train_worker,
    unwrap,
)

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the supervised loop
@dataclass(frozen=True)
class SupervisedSpec:
    """What a family supplies to the generic supervised loop."""

    # build(hparams, info) -> nn.Module
    build: Callable[[dict[str, Any], dict[str, Any]], torch.nn.Module]
    # datasets(prepared_dir, hparams, info, max_train_samples) -> (train_ds, val_ds)
    datasets: Callable[[Path, dict[str, Any], dict[str, Any], int | None], tuple[Any, Any]]
    # loss(model, batch, hparams) -> scalar tensor
    loss: Callable[[torch.nn.Module, Any, dict[str, Any]], torch.Tensor]
    # validate(model, loader, hparams, info) -> {"val_<metric>": float, ...}
    validate: Callable[[torch.nn.Module, Any, dict[str, Any], dict[str, Any]], dict[str, float]]
    # loader(dataset, batch_size, shuffle, seed, rank, world_size) -> DataLoader, for families that
    # batch their own way (e.g. length buckets); it must shard by rank itself when world_size > 1.
    loader: Callable[[Any, int, bool, int, int, int], Any] | None = None


def _to(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    return [b.to(device) for b in batch] if isinstance(batch, (list, tuple)) else batch.to(device)


def epoch_lr(hp: dict[str, Any], epoch: int, epochs: int) -> float:
    """The learning rate of `epoch` (0-based) out of `epochs`.

    `lr_schedule` "constant" (the default, what the book's Keras fits use) keeps `lr`; "cosine"
    decays it by half a cosine over the run, never reaching 0 (the last epoch trains at
    lr·(1+cos(π(E−1)/E))/2). A pure function of the epoch, so a resumed run gets the same rate
    without saving scheduler state."""
    lr = float(hp["lr"])
    if hp.get("lr_schedule", "constant") != "cosine":
        return lr
    return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / max(int(epochs), 1)))


def set_epoch(loader: Any, epoch: int) -> None:
    """Reshuffle a (distributed or bucketing) sampler for this epoch."""
    for sampler in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)


def supervised_loaders(config: LoopConfig, session: Session, spec: SupervisedSpec, train_ds: Any, val_ds: Any):
    """(train loader, sharded by rank; val loader, whole on every rank: each scores the full split)."""
    hp, seed = config.hparams, int(config.seed)
    if spec.loader is not None:
        train_loader = spec.loader(train_ds, int(hp["batch_size"]), True, seed, session.rank, session.world_size)
        val_loader = spec.loader(val_ds, int(hp.get("val_batch_size", 512)), False, 0, 0, 1)
    else:
        train_loader = seeded_loader(train_ds, int(hp["batch_size"]), shuffle=True, seed=seed)
        val_loader = seeded_loader(val_ds, 512, shuffle=False, seed=0)
    return session.prepare_loader(train_loader, shards_itself=spec.loader is not None), val_loader


def run_supervised(config: LoopConfig, session: Session, spec: SupervisedSpec) -> list[dict[str, float]]:
    """The epoch loop shared by supervised families: Adam, optional clipping and cosine decay,
    the best epoch by the task's val metric. Returns the per-epoch history."""
    hp, info, device = config.hparams, config.info, session.device
    model = session.prepare(spec.build(hp, info))
    train_ds, val_ds = spec.datasets(config.prepared, hp, info, config.max_train_samples)
    train_loader, val_loader = supervised_loaders(config, session, spec, train_ds, val_ds)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]))
    start, history, best = 0, [], Best(config.metric)
    restored = session.restore()
    if restored is not None:
        unwrap(model).load_state_dict(restored.state["model"])
        optimizer.load_state_dict(restored.state["optimizer"])
        start, history = restored.next_epoch, restored.history
        best = Best(config.metric, history, restored.best_weights)
    clip = hp.get("clip_norm")

    for epoch in range(start, config.epochs):
        set_epoch(train_loader, epoch)
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(hp, epoch, config.epochs)
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for batch in train_loader:
            batch = _to(batch, device)
            optimizer.zero_grad(set_to_none=True)
            loss = spec.loss(model, batch, hp)
            loss.backward()
            if clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), float(clip))
            optimizer.step()
            n = len(batch[0]) if isinstance(batch, (list, tuple)) else 1
            total += float(loss.detach()) * n
            count += n
        train_time = time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            val = spec.validate(unwrap(model), (_to(b, device) for b in val_loader), hp, info)
        metrics = {"epoch": epoch, "train_loss": total / max(count, 1), "epoch_time_s": train_time,
                   "lr": optimizer.param_groups[0]["lr"], "resumed_at_epoch": start,
                   "world_size": session.world_size, **val}
        history.append(metrics)
        best.update(metrics, model)
        session.report(metrics, history, best, lambda epoch=epoch: {
            "epoch": epoch, "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict()})

    return session.finish(history, best)


# ----------------------------------------------------------------------------- launchers
@dataclass(frozen=True)
class TrainResult:
    model_dir: Path | None
    history: list[dict[str, float]]
    checkpoint_path: str | None
    wall_s: float


def loop_config(family: Family, task: str, hparams: dict[str, Any], prepared_dir: Path | str, epochs: int,
                seed: int = 42, **options: Any) -> LoopConfig:
    """The LoopConfig of one run: hparams validated by the family (for this task), the prepared
    split's info.json, the task's metric. `options`: max_train_samples, threads, use_gpu."""
    if task not in family.all_tasks:
        raise ConfigError(f"family {family.name!r} has no task {task!r} (tasks: {list(family.all_tasks)})")
    info = read_json(Path(prepared_dir) / "info.json")
    return LoopConfig(family=family.name, task=task, hparams=family.validate_hparams(hparams, task), info=info,
                      prepared_dir=str(prepared_dir), epochs=int(epochs), seed=int(seed), metric=family.metrics[task],
                      **options)


def train_plain(loop: Loop, config: LoopConfig, out_dir: Path | None = None) -> TrainResult:
    """Run a family's loop in this process; with `out_dir`, write the best epoch's model dir there."""
    t0 = time.perf_counter()
    history = loop(config, PlainSession(config, out_dir))
    return TrainResult(out_dir, history, None, time.perf_counter() - t0)


def worker_threads(cpus: float) -> int:
    """Torch threads for a worker that reserved `cpus` Ray CPUs: the whole ones, at least one.
    Ray sets OMP_NUM_THREADS the same way; more threads than reserved CPUs would steal cores
    from the workers Ray placed beside it. (Results differ in the last bits between thread
    counts, so the count is part of the config, not a machine fact.)"""
    return max(1, int(cpus + 1e-9))


def scaling(num_workers: int, cpus_per_worker: float, gpus_per_worker: float) -> Any:
    """ScalingConfig from params: CPU-only unless GPUs per worker are asked for."""
    import ray.train

    resources = {"CPU": cpus_per_worker} | ({"GPU": gpus_per_worker} if gpus_per_worker else {})
    return ray.train.ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources)


def diverged(error: BaseException) -> TrainingDiverged | None:
    """The TrainingDiverged behind a Ray Train failure, if that is what failed (a worker's
    exception arrives wrapped: WorkerGroupError.worker_failures -> RayTaskError(cause))."""
    failures = getattr(error, "worker_failures", None) or {}
    for e in [error, *failures.values()]:
        while e is not None:
            if isinstance(e, TrainingDiverged):
                return e
            e = getattr(e, "cause", None) or e.__cause__
    return None


def fit(
    loop: Loop,
    config: LoopConfig,
    params: Params,
    num_workers: int,
    cpus_per_worker: float,
    max_failures: int,
    out_model_dir: Path,
    run_name: str | None = None,
    gpus_per_worker: float = 0,
) -> TrainResult:
    """Run `loop` in a TorchTrainer's workers and write the best model dir atomically."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    name = run_name or f"train-{config.family}-{config.task}-{uuid.uuid4().hex[:8]}"
    storage = resolve(params.ray.storage_path)
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        functools.partial(train_worker, loop),
        train_loop_config={"loop": config},
        torch_config=TorchConfig(backend="nccl" if gpus_per_worker else "gloo"),
        scaling_config=scaling(num_workers, cpus_per_worker, gpus_per_worker),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
        ),
    )
    t0 = time.perf_counter()
    try:
        result = trainer.fit()
    except Exception as e:
        cause = diverged(e)
        if cause is not None:  # a params problem: say which, without a worker traceback
            raise ConfigError(str(cause).splitlines()[0]) from None
        raise
    wall = time.perf_counter() - t0
    if result.error:
        cause = diverged(result.error)
        if cause is not None:
            raise ConfigError(str(cause).splitlines()[0]) from None
        raise RuntimeError(f"training failed: {result.error}")
    if result.checkpoint is None:
        raise RuntimeError("training reported no checkpoint")
    with result.checkpoint.as_directory() as d:
        history = json.loads((Path(d) / HISTORY).read_text())
        with atomic_dir(out_model_dir) as tmp:
            for fname in (CONFIG_JSON, WEIGHTS):
                shutil.copy2(Path(d) / fname, tmp / fname)
            write_json(tmp / HISTORY, history)
    return TrainResult(out_model_dir, history, result.checkpoint.path, wall)
