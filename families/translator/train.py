"""How the translator learns: (source, target) id pairs in length buckets, teacher-forced cross
entropy, and the per-epoch greedy validation the best epoch is chosen by. The epoch loop itself
is the shared supervised one (`components.train.run_supervised`).

The per-epoch val score greedy-decodes the whole val split (2,000 dates; en-es val_size pairs).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch

from components.session import LoopConfig, Session
from components.train import SupervisedSpec, run_supervised
from families.translator import chars, models
from families.translator.data import BOS, EOS, PAD, Codec, load_split
from families.translator.decode import greedy_decode
from families.translator.metrics import max_decode_len, score_texts


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


def pad(seqs: list[list[int]]) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [PAD] * (width - len(s)) for s in seqs], dtype=torch.long)


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


def validate(model: torch.nn.Module, batches: Any, hp: dict[str, Any], info: dict[str, Any]) -> dict[str, float]:
    """Greedy-decode the val split; references are the detokenised target ids."""
    codec = Codec(info)
    preds, refs = [], []
    for src, _, tgt_out in batches:
        for h in greedy_decode(model, src, max_decode_len(info, src.shape[1])):
            preds.append(codec.decode_target(h.tokens))
        refs += [codec.decode_target(row) for row in tgt_out.tolist()]
    return score_texts(info["task"], preds, refs, "val")


SPEC = SupervisedSpec(build=models.build, datasets=datasets, loss=loss, validate=validate, loader=loader)


def loop(config: LoopConfig, session: Session) -> list[dict[str, float]]:
    """The training loop (plain process, Tune trial or Ray Train worker: the session says which)."""
    if config.model == chars.MODEL:  # a language model: its own epochs (stateful streams)
        return chars.loop(config, session)
    return run_supervised(config, session, SPEC)
