"""Reber and embedded Reber grammars (the book's ch. 16 exercise 8): strings a small RNN must tell
from near-misses.

The grammars are the book's transition tables: state -> [(symbol or sub-grammar, next state)].
Negative examples are the book's "corrupted" strings (one character swapped for another of the
alphabet), resampled until the recogniser rejects them, so no label is wrong. The embedded
grammar is the hard one: whether the second symbol (T or P) matches the second-to-last needs a
memory across the whole inner string, which is what the exercise tests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

Grammar = list[list[tuple[Any, int | None]]]

REBER: Grammar = [
    [("B", 1)],
    [("T", 2), ("P", 3)],
    [("S", 2), ("X", 4)],
    [("T", 3), ("V", 5)],
    [("X", 3), ("S", 6)],
    [("P", 4), ("V", 6)],
    [("E", None)],
]
EMBEDDED_REBER: Grammar = [
    [("B", 1)],
    [("T", 2), ("P", 3)],
    [(REBER, 4)],
    [(REBER, 5)],
    [("T", 6)],
    [("P", 6)],
    [("E", None)],
]
GRAMMARS = {"reber": REBER, "embedded": EMBEDDED_REBER}
ALPHABET = "BEPSTVX"


def generate(grammar: Grammar, rng: np.random.RandomState) -> str:
    """A random string of the grammar: walk the transitions from state 0 to the end."""
    state: int | None = 0
    out = []
    while state is not None:
        production, state = grammar[state][rng.randint(len(grammar[state]))]
        out.append(generate(production, rng) if isinstance(production, list) else production)
    return "".join(out)


def is_reber(s: str) -> bool:
    """Does the plain Reber automaton accept s? (It is deterministic: one symbol, one move.)"""
    state: int | None = 0
    for ch in s:
        if state is None:
            return False
        moves = {sym: nxt for sym, nxt in REBER[state]}
        if ch not in moves:
            return False
        state = moves[ch]
    return state is None


def is_embedded_reber(s: str) -> bool:
    """B, then T or P, a Reber string, the same T or P, E."""
    return len(s) >= 4 and s[0] == "B" and s[1] in "TP" and s[-2] == s[1] and s[-1] == "E" and is_reber(s[2:-2])


RECOGNISERS = {"reber": is_reber, "embedded": is_embedded_reber}


def corrupt(grammar_name: str, rng: np.random.RandomState) -> str:
    """A grammatical string with one character replaced, resampled until it is ungrammatical."""
    while True:
        good = generate(GRAMMARS[grammar_name], rng)
        i = rng.randint(len(good))
        bad = good[:i] + rng.choice([c for c in ALPHABET if c != good[i]]) + good[i + 1 :]
        if not RECOGNISERS[grammar_name](bad):
            return bad


def dataset(grammar_name: str, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """n strings, half grammatical (label 1) and half corrupted (label 0), shuffled."""
    rng = np.random.RandomState(seed)
    good = [generate(GRAMMARS[grammar_name], rng) for _ in range(n // 2)]
    bad = [corrupt(grammar_name, rng) for _ in range(n - n // 2)]
    strings, labels = good + bad, np.array([1] * len(good) + [0] * len(bad), np.float32)
    order = rng.permutation(n)
    return [strings[i] for i in order], labels[order]


def encode(strings: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids padded with 0 on the right, lengths); symbol i of ALPHABET is id i + 1."""
    lengths = torch.tensor([len(s) for s in strings])
    ids = torch.zeros(len(strings), int(lengths.max()), dtype=torch.long)
    for row, s in enumerate(strings):
        ids[row, : len(s)] = torch.tensor([ALPHABET.index(c) + 1 for c in s])
    return ids, lengths


class ReberClassifier(nn.Module):
    """The book's solution: Embedding(5) -> GRU(30) -> Dense(1, sigmoid), over packed sequences
    (padding never enters the state)."""

    def __init__(self, emb_dim: int = 5, hidden: int = 30) -> None:
        super().__init__()
        self.embed = nn.Embedding(len(ALPHABET) + 1, emb_dim, padding_idx=0)
        self.gru = nn.GRU(emb_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, h = self.gru(packed)
        return self.out(h[-1]).squeeze(-1)  # logits


@torch.no_grad()
def accuracy(model: ReberClassifier, strings: list[str], labels: np.ndarray) -> float:
    model.eval()
    ids, lengths = encode(strings)
    return float(((model(ids, lengths) > 0).float().numpy() == labels).mean())


@dataclass
class ReberRun:
    grammar: str
    epochs: int
    val_accuracy: list[float]
    test_accuracy: float
    wall_s: float


def fit(grammar_name: str, n_train: int, n_val: int, n_test: int, epochs: int, seed: int,
        lr: float = 0.02, batch_size: int = 32) -> tuple[ReberClassifier, ReberRun]:
    """Train the classifier (Adam; the book used Nadam lr 0.02) and score it on fresh strings."""
    torch.manual_seed(seed)
    train_s, train_y = dataset(grammar_name, n_train, seed)
    val_s, val_y = dataset(grammar_name, n_val, seed + 1)
    test_s, test_y = dataset(grammar_name, n_test, seed + 2)
    model = ReberClassifier()
    optimizer = torch.optim.NAdam(model.parameters(), lr=lr)
    rng = np.random.RandomState(seed)
    t0, val_acc = time.perf_counter(), []
    for _ in range(epochs):
        model.train()
        order = rng.permutation(n_train)
        for i in range(0, n_train, batch_size):
            idx = order[i : i + batch_size]
            ids, lengths = encode([train_s[j] for j in idx])
            loss = nn.functional.binary_cross_entropy_with_logits(model(ids, lengths), torch.from_numpy(train_y[idx]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        val_acc.append(accuracy(model, val_s, val_y))
    wall = time.perf_counter() - t0
    return model, ReberRun(grammar_name, epochs, val_acc, accuracy(model, test_s, test_y), wall)
