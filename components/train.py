"""Ray Train around a family's loop: the supervised epoch loop, checkpoints, resume, model dirs.

Why one loop with three launchers: the same per-worker function runs inside a Ray Train worker
(`launcher="train"`: DDP, checkpoints, fault-tolerant resume), inside a Tune trial process
(`launcher="tune"`: reports only, cheap on 2 cores) and in a plain process (`launcher="plain"`:
benchmarks and unit tests). Only `report_epoch` knows the difference.

The model-dir format is the one contract every consumer reads: `config.json` (family, task,
model, hparams, data info, versions) + `weights.pt` (a state_dict; never a pickled module).
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from components.config import Params, resolve
from components.data import atomic_dir, read_json, seeded_loader, set_seeds, write_json

log = logging.getLogger(__name__)

CONFIG_JSON = "config.json"
WEIGHTS = "weights.pt"
STATE = "train_state.pt"  # optimizer + current weights, only in checkpoints
HISTORY = "history.json"


# ----------------------------------------------------------------------------- model dirs
def versions() -> dict[str, str]:
    # importlib.metadata, not `import ray`: importing Ray before cluster.apply_env() would make a
    # later local Ray bind the machine's address instead of 127.0.0.1.
    from importlib.metadata import version

    return {"torch": torch.__version__, "ray": version("ray")}


def save_model_dir(out: Path, config: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_JSON).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    torch.save(state_dict, out / WEIGHTS)


def load_model_dir(model_dir: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    config = read_json(model_dir / CONFIG_JSON)
    weights = model_dir / WEIGHTS
    if not weights.is_file():
        from components.data import DataError

        raise DataError(f"{weights}: file not found (not a quartet model dir)")
    return config, torch.load(weights, map_location="cpu", weights_only=True)


def load_model(
    model_dir: Path, build: Callable[[dict[str, Any], dict[str, Any]], torch.nn.Module],
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model dir -> (the family's module in eval mode, its config), from config.json + weights.pt alone."""
    config, state = load_model_dir(Path(model_dir))
    model = build(config["hparams"], config["info"])
    model.load_state_dict(state)
    return model.eval(), config


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """`prepare_model` wraps in DDP only when world_size > 1."""
    return getattr(model, "module", model)


# ----------------------------------------------------------------------------- the loop
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
    val_metric: str
    mode: str = "min"
    # loader(dataset, batch_size, shuffle, seed, rank, world_size) -> DataLoader, for families that
    # batch their own way (e.g. length buckets); it must shard by rank itself when world_size > 1.
    loader: Callable[[Any, int, bool, int, int, int], Any] | None = None


def _device(launcher: str, want_gpu: bool) -> torch.device:
    """Ray Train assigns a worker its device; elsewhere a GPU is used when asked for and present."""
    if launcher == "train":
        import ray.train.torch

        return ray.train.torch.get_device()
    return torch.device("cuda" if want_gpu and torch.cuda.is_available() else "cpu")


def _to(batch: Any, device: torch.device) -> Any:
    if device.type == "cpu":
        return batch
    return [b.to(device) for b in batch] if isinstance(batch, (list, tuple)) else batch.to(device)


def _world() -> tuple[int, int]:
    import ray.train

    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def restore_checkpoint() -> tuple[dict[str, Any], list[dict], dict[str, torch.Tensor]] | None:
    """The last Ray Train checkpoint of this run, if any: (train state, history, best weights).

    For any family loop under `launcher="train"`; the train state is whatever the loop saved
    with `write_checkpoint_dir` (at least {"epoch": int}).
    """
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE, map_location="cpu", weights_only=True)
        history = json.loads((Path(d) / HISTORY).read_text())
        best = torch.load(Path(d) / WEIGHTS, map_location="cpu", weights_only=True)
    log.info("resumed from checkpoint after epoch %d", state["epoch"])
    return state, history, best


def write_checkpoint_dir(
    d: Path, model_config: dict[str, Any], history: list[dict], best_weights: dict[str, torch.Tensor],
    train_state: dict[str, Any],
) -> None:
    """One checkpoint in the shared format: a loadable model dir (best weights so far) plus the
    state needed to resume (`train_state.pt`: epoch, current weights, optimizers, ...)."""
    save_model_dir(d, {**model_config, "history": history}, best_weights)
    torch.save(train_state, d / STATE)
    (d / HISTORY).write_text(json.dumps(history))


def _restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[int, list[dict], dict | None]:
    """Resume the supervised loop: (next epoch, history, best state)."""
    restored = restore_checkpoint()
    if restored is None:
        return 0, [], None
    state, history, best = restored
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"] + 1, history, best


def loop_device(config: dict[str, Any]) -> torch.device:
    """The device a family loop should use under its launcher."""
    return _device(config.get("launcher", "plain"), bool(config.get("use_gpu")))


def world(config: dict[str, Any]) -> tuple[int, int]:
    """(rank, world size): (0, 1) outside Ray Train."""
    return _world() if config.get("launcher", "plain") == "train" else (0, 1)


def finish_plain(config: dict[str, Any], history: list[dict], best_weights: dict[str, torch.Tensor] | None) -> None:
    """Under the plain launcher, write the final model dir when the caller asked for one."""
    if config.get("launcher", "plain") == "plain" and config.get("out_dir") and best_weights is not None:
        save_model_dir(Path(config["out_dir"]), {**config["model_config"], "history": history}, best_weights)


def report_epoch(
    launcher: str,
    metrics: dict[str, float],
    write_checkpoint: Callable[[Path], None] | None,
) -> None:
    """Send one epoch's metrics (and a checkpoint, under Ray Train) to whichever launcher runs us."""
    if launcher == "tune":
        import ray.tune

        ray.tune.report(metrics)
    elif launcher == "train":
        import ray.train

        rank, _ = _world()
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0 and write_checkpoint is not None:
                write_checkpoint(Path(d))
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch={metrics['epoch']:04d}")


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


def run_supervised(config: dict[str, Any], spec: SupervisedSpec) -> list[dict[str, float]]:
    """The per-worker epoch loop shared by supervised families.

    `config` (made by `loop_config`): family, task, hparams, info, prepared_dir, epochs, seed,
    launcher, model_config, and optionally max_train_samples, threads, use_gpu, out_dir (plain
    launcher only). Returns the per-epoch history.
    """
    launcher = config.get("launcher", "plain")
    hp = config["hparams"]
    info = config["info"]
    torch.set_num_threads(int(config.get("threads", 1)))
    set_seeds(int(config["seed"]))
    device = _device(launcher, bool(config.get("use_gpu")))
    model = spec.build(hp, info).to(device)
    train_ds, val_ds = spec.datasets(Path(config["prepared_dir"]), hp, info, config.get("max_train_samples"))
    rank, world_size = world(config)
    if spec.loader is not None:
        seed = int(config["seed"])
        train_loader = spec.loader(train_ds, int(hp["batch_size"]), True, seed, rank, world_size)
        val_loader = spec.loader(val_ds, int(hp.get("val_batch_size", 512)), False, 0, 0, 1)
    else:
        train_loader = seeded_loader(train_ds, int(hp["batch_size"]), shuffle=True, seed=int(config["seed"]))
        val_loader = seeded_loader(val_ds, 512, shuffle=False, seed=0)
    if launcher == "train":
        import ray.train.torch

        model = ray.train.torch.prepare_model(model)
        # A family's own loader shards itself; otherwise Ray adds a DistributedSampler.
        train_loader = ray.train.torch.prepare_data_loader(train_loader, add_dist_sampler=spec.loader is None)
        # val_loader stays whole on every rank: each worker scores the full validation split.
    optimizer = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]))
    start, history, best_state = (0, [], None)
    if launcher == "train":
        start, history, best_state = _restore(model, optimizer)
    sign = 1.0 if spec.mode == "min" else -1.0
    best_value = min((sign * h[spec.val_metric] for h in history), default=float("inf"))
    clip = hp.get("clip_norm")

    for epoch in range(start, int(config["epochs"])):
        for sampler in (getattr(train_loader, "sampler", None), getattr(train_loader, "batch_sampler", None)):
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(hp, epoch, int(config["epochs"]))
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
                   "lr": optimizer.param_groups[0]["lr"], "resumed_at_epoch": start, "world_size": world_size, **val}
        history.append(metrics)
        if sign * val[spec.val_metric] < best_value:
            best_value = sign * val[spec.val_metric]
            best_state = {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}
        metrics["best_" + spec.val_metric] = sign * best_value

        if best_state is None:
            raise FloatingPointError(
                f"training diverged: {spec.val_metric} is {val[spec.val_metric]} after epoch {epoch} "
                "(lower the learning rate or set clip_norm)"
            )

        def write_checkpoint(d: Path, epoch: int = epoch, best: dict | None = best_state) -> None:
            state = {"epoch": epoch, "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict()}
            write_checkpoint_dir(d, {**config["model_config"], "epoch": epoch}, history, best, state)

        report_epoch(launcher, metrics, write_checkpoint)

    finish_plain(config, history, best_state)
    return history


# ----------------------------------------------------------------------------- driver side
@dataclass(frozen=True)
class TrainResult:
    model_dir: Path
    history: list[dict[str, float]]
    checkpoint_path: str
    wall_s: float


def loop_config(
    family: str,
    task: str,
    hparams: dict[str, Any],
    info: dict[str, Any],
    prepared_dir: Path,
    epochs: int,
    seed: int,
    launcher: str,
    **extra: Any,
) -> dict[str, Any]:
    """The one dict every launcher passes to a family's loop."""
    model_config = {
        "family": family,
        "task": task,
        "model": hparams["model"],
        "hparams": hparams,
        "info": info,
        "seed": seed,
        "versions": versions(),
    }
    return {
        "family": family,
        "task": task,
        "hparams": hparams,
        "info": info,
        "prepared_dir": str(prepared_dir),
        "epochs": epochs,
        "seed": seed,
        "launcher": launcher,
        "model_config": model_config,
        **extra,
    }


def scaling(num_workers: int, cpus_per_worker: float, gpus_per_worker: float) -> Any:
    """ScalingConfig from params: CPU-only unless GPUs per worker are asked for."""
    import ray.train

    resources = {"CPU": cpus_per_worker} | ({"GPU": gpus_per_worker} if gpus_per_worker else {})
    return ray.train.ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources)


def fit(
    train_loop: Callable[[dict[str, Any]], Any],
    config: dict[str, Any],
    params: Params,
    num_workers: int,
    cpus_per_worker: float,
    max_failures: int,
    out_model_dir: Path,
    run_name: str | None = None,
    gpus_per_worker: float = 0,
) -> TrainResult:
    """Run `train_loop` under a TorchTrainer and write the best model dir atomically."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    name = run_name or f"train-{config['family']}-{config['task']}-{uuid.uuid4().hex[:8]}"
    storage = resolve(params.ray.storage_path)
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={**config, "launcher": "train"},
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
        if "training diverged" in str(e):  # a params problem: say which, without a worker traceback
            from components.config import ConfigError

            message = next(line for line in str(e).splitlines() if "training diverged" in line)
            raise ConfigError(message.strip().removeprefix("FloatingPointError: ")) from None
        raise
    wall = time.perf_counter() - t0
    if result.error:
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
