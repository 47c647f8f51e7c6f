"""One training session for every loop: where it runs, how it reports, how it resumes.

A family's loop is `loop(config: LoopConfig, session: Session) -> history`, written once and read
top to bottom (CleanRL's style). The session is what differs between the three ways quartet
runs a loop, and the only place that knows Ray:

- `PlainSession`: this process (tests, benchmarks, `quartet.api.train_plain`); writes the best
  model dir at the end when asked for one.
- `TuneSession`: inside a Tune function trial; each epoch's metrics go to `ray.tune.report`.
- `TrainSession`: inside a Ray Train worker; DDP, a checkpoint per epoch (rank 0), resume from
  the last checkpoint after a worker or host died.

`Best(metric)` keeps the best epoch by the metric's direction (`Metric.better`), and is where
divergence is detected: an epoch whose metric is not finite before any finite one raises
`TrainingDiverged`, a `ConfigError` (the user's learning rate, not a crash).

Every session pins the CPU kernels first (`components/kernels.py`: numerics that reproduce across
processors) and records the capability it got (`cpu_capability` in every model dir's versions).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.config import ConfigError
from components.family import Metric
from components.kernels import pin_kernels
from components.modeldir import WEIGHTS, save_model_dir
from components.progress import epoch_line

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

STATE = "train_state.pt"  # the resumable state (optimizers, buffers, RNGs), only in checkpoints
HISTORY = "history.json"


def versions() -> dict[str, str]:
    """What produced a model: library versions and the CPU kernel capability actually used."""
    from importlib.metadata import version

    import torch

    # importlib.metadata, not `import ray`: importing Ray before cluster.apply_env() would make a
    # later local Ray bind the machine's address instead of 127.0.0.1.
    return {"torch": torch.__version__, "ray": version("ray"), "cpu_capability": torch.backends.cpu.get_cpu_capability()}


class TrainingDiverged(ConfigError):
    """The metric never became finite: a learning-rate problem the user can fix."""


# ----------------------------------------------------------------------------- config
@dataclass(frozen=True)
class LoopConfig:
    """Everything a loop needs, typed: one value passed to every launcher (and pickled by Ray)."""

    family: str
    task: str
    hparams: dict[str, Any]  # validated by the family; hparams["model"] names the model
    info: dict[str, Any]  # the prepared split's info.json
    prepared_dir: str
    epochs: int
    seed: int
    metric: Metric  # what "best epoch" means (val_<name>, its direction)
    max_train_samples: int | None = None
    threads: int = 1
    use_gpu: bool = False
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str:
        return str(self.hparams["model"])

    @property
    def prepared(self) -> Path:
        return Path(self.prepared_dir)

    def with_hparams(self, hparams: dict[str, Any]) -> LoopConfig:
        return dataclasses.replace(self, hparams=hparams)

    def model_config(self) -> dict[str, Any]:
        """The config.json of a model dir: enough to rebuild the module without the params."""
        return {"family": self.family, "task": self.task, "model": self.model, "hparams": self.hparams,
                "info": self.info, "seed": self.seed, "versions": self.versions or versions()}


# ----------------------------------------------------------------------------- best epoch
def state_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a module's weights (the DDP wrapper removed)."""
    return {k: v.detach().cpu().clone() for k, v in unwrap(model).state_dict().items()}


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """DDP wraps the module (`.module`) only under Ray Train with more than one worker."""
    return getattr(model, "module", model)


class Best:
    """The best epoch so far by `metric` (first best kept on ties), and its weights."""

    def __init__(self, metric: Metric, history: list[dict[str, Any]] = (), weights: dict | None = None) -> None:
        self.metric = metric
        self.key = metric.val
        self.value: float | None = None
        for h in history:
            self._consider(float(h[self.key]))
        self.weights = weights

    def _consider(self, value: float) -> bool:
        if math.isfinite(value) and (self.value is None or self.metric.better(value, self.value)):
            self.value = value
            return True
        return False

    def update(self, metrics: dict[str, Any], model: torch.nn.Module) -> bool:
        """Take this epoch's metrics; keep the model's weights when they are the best so far.
        Adds best_<metric> to `metrics`. Raises TrainingDiverged while no epoch was finite."""
        value = float(metrics[self.key])
        improved = self._consider(value)
        if improved:
            self.weights = state_copy(model)
        if self.weights is None:
            raise TrainingDiverged(f"training diverged: {self.key} is {value} after epoch {metrics.get('epoch')} "
                                   "(lower the learning rate or set clip_norm)")
        metrics["best_" + self.key] = self.value
        return improved


@dataclass
class Restored:
    """What a resumed run continues from: the loop's own state, the history, the best weights."""

    state: dict[str, Any]
    history: list[dict[str, Any]]
    best_weights: dict[str, Any]

    @property
    def next_epoch(self) -> int:
        return int(self.state["epoch"]) + 1


# ----------------------------------------------------------------------------- sessions
class Session:
    """Where a loop runs. The base class is the plain, single-process one."""

    rank: int = 0
    world_size: int = 1

    def __init__(self, config: LoopConfig) -> None:
        import torch

        from components.data import set_seeds

        pin_kernels()
        torch.set_num_threads(int(config.threads))
        set_seeds(int(config.seed))
        self.config = config
        self.device = self._device()

    def _device(self) -> torch.device:
        import torch

        return torch.device("cuda" if self.config.use_gpu and torch.cuda.is_available() else "cpu")

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model on this session's device (and wrapped in DDP under Ray Train)."""
        return model.to(self.device)

    def prepare_loader(self, loader: Any, shards_itself: bool = False) -> Any:
        """A training DataLoader (sharded by rank under Ray Train unless it `shards_itself`)."""
        return loader

    def restore(self) -> Restored | None:
        """The last checkpoint of this run, when resuming after a failure (only under Ray Train)."""
        return None

    def agree_sum(self, value: float) -> float:
        """The sum of `value` over all workers (a loop's collective decision, e.g. how many updates)."""
        return float(value)

    def agree_flag(self, flag: bool) -> bool:
        """Rank 0's `flag` on every worker (e.g. "stop: solved"), so no worker stops alone."""
        return bool(flag)

    def report(self, metrics: dict[str, Any], history: list[dict[str, Any]], best: Best,
               state: Callable[[], dict[str, Any]]) -> None:
        """One epoch done: `metrics` to the launcher; under Ray Train also a checkpoint (rank 0)
        holding the best weights, the history and `state()` (the loop's resumable state, with
        at least "epoch")."""

    def finish(self, history: list[dict[str, Any]], best: Best) -> list[dict[str, Any]]:
        return history


class PlainSession(Session):
    """This process; with `out_dir`, the best epoch's model dir is written there at the end."""

    def __init__(self, config: LoopConfig, out_dir: Path | str | None = None) -> None:
        super().__init__(config)
        self.out_dir = Path(out_dir) if out_dir else None

    def finish(self, history: list[dict[str, Any]], best: Best) -> list[dict[str, Any]]:
        if self.out_dir is not None and best.weights is not None:
            save_model_dir(self.out_dir, {**self.config.model_config(), "history": history}, best.weights)
        return history


class TuneSession(Session):
    """A Tune function trial: metrics go to Tune (its scheduler may stop the trial); no checkpoints."""

    def report(self, metrics: dict[str, Any], history: list[dict[str, Any]], best: Best,
               state: Callable[[], dict[str, Any]]) -> None:
        import ray.tune

        ray.tune.report(metrics)


class TrainSession(Session):
    """A Ray Train worker: DDP over the worker group, checkpoints, resume."""

    def __init__(self, config: LoopConfig) -> None:
        import ray.train

        ctx = ray.train.get_context()
        self.rank, self.world_size = ctx.get_world_rank(), ctx.get_world_size()
        super().__init__(config)

    def _device(self) -> torch.device:
        import ray.train.torch

        return ray.train.torch.get_device()

    def prepare(self, model: torch.nn.Module) -> torch.nn.Module:
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def prepare_loader(self, loader: Any, shards_itself: bool = False) -> Any:
        import ray.train.torch

        return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=not shards_itself)

    def restore(self) -> Restored | None:
        import ray.train
        import torch

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as d:
            state = torch.load(Path(d) / STATE, map_location="cpu", weights_only=True)
            history = json.loads((Path(d) / HISTORY).read_text())
            best = torch.load(Path(d) / WEIGHTS, map_location="cpu", weights_only=True)
        log.info("resumed from the checkpoint after epoch %d", state["epoch"])
        return Restored(state, history, best)

    def _all_reduce(self, value: float, op: str) -> float:
        import torch
        import torch.distributed as dist

        if self.world_size == 1:
            return float(value)
        # gloo reduces CPU tensors; under NCCL the tensor must live on the GPU
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device if dist.get_backend() == "nccl" else "cpu")
        if op == "broadcast":
            dist.broadcast(t, src=0)
        else:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item())

    def agree_sum(self, value: float) -> float:
        return self._all_reduce(value, "sum")

    def agree_flag(self, flag: bool) -> bool:
        return self._all_reduce(1.0 if flag else 0.0, "broadcast") > 0.5

    def report(self, metrics: dict[str, Any], history: list[dict[str, Any]], best: Best,
               state: Callable[[], dict[str, Any]]) -> None:
        import ray.train
        import torch

        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if self.rank == 0:
                train_state = state()
                model_config = {**self.config.model_config(), "epoch": train_state["epoch"], "history": history}
                save_model_dir(Path(d), model_config, best.weights)
                torch.save(train_state, Path(d) / STATE)
                (Path(d) / HISTORY).write_text(json.dumps(history))
                checkpoint = ray.train.Checkpoint.from_directory(d)
                # One plain line per epoch (Ray forwards a worker's output line by line). Not print():
                # Ray Train patches it to log *and* print when stdout is wrapped, i.e. twice.
                line = epoch_line(f"train {self.config.family}/{self.config.task}", int(metrics["epoch"]) + 1,
                                  self.config.epochs, metrics)
                sys.stdout.write(line + "\n")
                sys.stdout.flush()
            ray.train.report(metrics, checkpoint=checkpoint, checkpoint_dir_name=f"epoch={int(metrics['epoch']):04d}")


# ----------------------------------------------------------------------------- launch helpers
Loop = Callable[[LoopConfig, Session], list[dict[str, Any]]]


def train_worker(loop: Loop, worker_config: dict[str, Any]) -> list[dict[str, Any]]:
    """What a Ray Train worker runs (`functools.partial(train_worker, loop)`: picklable by name)."""
    return loop(worker_config["loop"], TrainSession(worker_config["loop"]))


def tune_trial(loop: Loop, config: LoopConfig) -> list[dict[str, Any]]:
    return loop(config, TuneSession(config))
