"""How the translator learns: (source, target) id pairs in length buckets, teacher-forced cross
entropy (label smoothing: `label_smoothing`), and the per-epoch greedy validation the best epoch
is chosen by. The epoch loop itself is the shared supervised one (`components.train.run_supervised`,
Adam with `clip_norm` gradient clipping).

- Validation is scored exactly as the evaluate stage scores (metrics.translations + score_texts on
  the val split's own target strings, the same decode batches): the best epoch is the best on the
  reported number. It greedy-decodes the whole val split (2,000 dates; en-es val_size pairs).
- The Transformer's learning rate follows a per-optimizer-step schedule (`lr_schedule`,
  `warmup_steps`). The shared loop sets a rate per epoch and has no per-step hook, so
  `StepSchedule` sets it before every `optimizer.step()` of this run's optimizer through torch's
  global step pre-hook, as a pure function of Adam's own step count (a resumed run continues the
  schedule from the restored optimizer state). A `SupervisedSpec.step_lr` hook in the shared loop
  would replace it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from components.session import LoopConfig, Session
from components.train import SupervisedSpec, run_supervised
from families.translator import chars, models
from families.translator.data import BOS, EOS, PAD, load_split
from families.translator.decode import pad
from families.translator.metrics import score_texts, translations


# ----------------------------------------------------------------------------- batches
class PairDataset(torch.utils.data.Dataset):
    """(src ids, tgt ids) pairs; `lengths` drive the bucketing."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]]) -> None:
        self.src, self.tgt = src, tgt
        self.lengths = [len(s) for s in src]

    def __len__(self) -> int:
        return len(self.src)

    def __getitem__(self, i: int) -> tuple[list[int], list[int]]:
        return self.src[i], self.tgt[i]


def collate(items: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> src (B, S), decoder input BOS+tgt (B, T), decoder target tgt+EOS (B, T); PAD-filled."""
    src = pad([s for s, _ in items])
    tgt_in = pad([[BOS] + t for _, t in items])
    tgt_out = pad([t + [EOS] for _, t in items])
    return src, tgt_in, tgt_out


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of similar source length (little padding); deterministic in (seed, epoch).

    Shuffled: indices are shuffled, sorted by length within chunks of 50 batches, cut into
    batches, and the batch order shuffled; `set_epoch` (called by the loop) reshuffles.
    Sharded by rank: each rank takes every world_size-th batch, all ranks the same count (DDP
    needs every rank to run as many steps, or the allreduce of the longer rank never returns).
    """

    def __init__(self, lengths: list[int], batch_size: int, shuffle: bool, seed: int, rank: int = 0,
                 world_size: int = 1) -> None:
        self.lengths, self.batch_size, self.shuffle = lengths, batch_size, shuffle
        self.seed, self.rank, self.world_size, self.epoch = seed, rank, world_size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        if not self.shuffle:
            idx.sort(key=lambda i: self.lengths[i])
            return [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        rng = random.Random(self.seed * 1_000_003 + self.epoch)
        rng.shuffle(idx)
        chunk = self.batch_size * 50
        batches = []
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c:c + chunk], key=lambda i: self.lengths[i])
            batches += [part[i:i + self.batch_size] for i in range(0, len(part), self.batch_size)]
        rng.shuffle(batches)
        return batches

    def __iter__(self):
        batches = self._batches()
        per_rank = len(batches) // self.world_size if self.world_size > 1 else len(batches)
        return iter(batches[self.rank::self.world_size][:per_rank])

    def __len__(self) -> int:
        n = -(-len(self.lengths) // self.batch_size)
        return n // self.world_size if self.world_size > 1 else n


def loader(dataset: PairDataset, batch_size: int, shuffle: bool, seed: int, rank: int, world_size: int):
    """Length-bucketed batches, sharded by rank here (so Ray adds no DistributedSampler)."""
    sampler = BucketBatchSampler(dataset.lengths, batch_size, shuffle, seed, rank, world_size)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=0)


def datasets(prepared_dir: Path, hp: dict[str, Any], info: dict[str, Any], max_train: int | None):
    train = load_split(prepared_dir, "train")
    val = load_split(prepared_dir, "val")
    n = max_train or len(train["src"])
    return PairDataset(train["src"][:n], train["tgt"][:n]), PairDataset(val["src"], val["tgt"])


# ----------------------------------------------------------------------------- loss and validation
def loss(model: torch.nn.Module, batch: Any, hp: dict[str, Any]) -> torch.Tensor:
    """Teacher forcing; pads carry no loss (ignore_index)."""
    src, tgt_in, tgt_out = batch
    logits = model(src, tgt_in)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
                                             label_smoothing=float(hp.get("label_smoothing", 0.0)))


def validate(model: torch.nn.Module, batches: Any, hp: dict[str, Any], info: dict[str, Any],
             val: dict[str, list] | None = None) -> dict[str, float]:
    """Greedy-decode the val split and score it against its target strings, as evaluate does.

    `val` is the split as `load_split` reads it (bound per run by `supervised_spec`); the loop's
    `batches` are not used: their order and padding are the loader's, not evaluate's."""
    if val is None:
        raise ValueError("translator validate needs the val split (use supervised_spec(config))")
    preds = translations(model, val["src"], info, 1, int(hp.get("val_batch_size", 500)))
    return score_texts(info["task"], preds, val["target"], "val")


# ----------------------------------------------------------------------------- learning-rate schedule
def step_lr(hp: dict[str, Any], step: int) -> float:
    """The learning rate of optimizer step `step` (1-based).

    - "constant": `lr`, after a linear warm-up over `warmup_steps` (none when 0);
    - "inverse_sqrt": "Attention is all you need" §5.3 with its peak at `lr`: a linear warm-up to
      `lr` over `warmup_steps`, then lr·sqrt(warmup_steps/step)."""
    lr, warmup, step = float(hp["lr"]), int(hp.get("warmup_steps", 0)), max(int(step), 1)
    ramp = min(1.0, step / warmup) if warmup else 1.0
    if hp.get("lr_schedule", "constant") == "inverse_sqrt":
        return lr * min(ramp, math.sqrt(warmup / step))
    return lr * ramp


def scheduled(hp: dict[str, Any]) -> bool:
    return hp.get("lr_schedule", "constant") != "constant" or int(hp.get("warmup_steps", 0)) > 0


class StepSchedule:
    """Sets `step_lr` on every param group before each step of the optimizer over the model built
    through `build` (and no other: the pre-hook torch offers is global)."""

    def __init__(self, hp: dict[str, Any]) -> None:
        self.hp = hp
        self.params: set[int] = set()

    def build(self, hp: dict[str, Any], info: dict[str, Any]) -> torch.nn.Module:
        model = models.build(hp, info)
        self.params = {id(p) for p in model.parameters()}
        return model

    def __call__(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        first = optimizer.param_groups[0]["params"][0]
        if id(first) not in self.params:
            return
        # Adam's own count of the steps taken, restored with its state when a run resumes
        done = max((int(s["step"]) for s in optimizer.state.values() if "step" in s), default=0)
        lr = step_lr(self.hp, done + 1)
        for group in optimizer.param_groups:
            group["lr"] = lr

    @contextlib.contextmanager
    def active(self) -> Iterator[StepSchedule]:
        handle = register_optimizer_step_pre_hook(self)
        try:
            yield self
        finally:
            handle.remove()


SPEC = SupervisedSpec(build=models.build, datasets=datasets, loss=loss, validate=validate, loader=loader)


def supervised_spec(config: LoopConfig, schedule: StepSchedule | None = None) -> SupervisedSpec:
    """SPEC for one run: validation bound to the run's val split; with a schedule, its build."""
    val = load_split(Path(config.prepared), "val")
    spec = dataclasses.replace(SPEC, validate=functools.partial(validate, val=val))
    return dataclasses.replace(spec, build=schedule.build) if schedule is not None else spec


def loop(config: LoopConfig, session: Session) -> list[dict[str, float]]:
    """The training loop (plain process, Tune trial or Ray Train worker: the session says which)."""
    if config.model == chars.MODEL:  # a language model: its own epochs (stateful streams)
        return chars.loop(config, session)
    if not scheduled(config.hparams):
        return run_supervised(config, session, supervised_spec(config))
    schedule = StepSchedule(config.hparams)
    with schedule.active():
        return run_supervised(config, session, supervised_spec(config, schedule))
