"""Chapter 16's sequence exercises beside the translator (issue 13): the char-RNN, stateless vs
stateful, and the Reber / embedded Reber classifiers.

Char-RNN: the book's model (2 GRU layers of 128 units) on the World English Bible's English
verses (the text of data/translator/en-es.tsv, canonical order; the book's tiny-Shakespeare is
not shipped by any package this machine can install), trained either way for the same number of
character steps per epoch (stateless windows start every `seq_len` characters), scored by
validation bits per character both ways, with a seeded sample at temperature 0.5.

Reber: 10,000 training strings (half grammatical, half one-character corruptions the recogniser
rejects), the book's Embedding(5) + GRU(30) + Dense(1); test accuracy on 2,000 fresh strings.

    python -m bench.sequences [--only char|reber] [--char-train-chars N] [--char-epochs N] [--seed 42]

Writes bench/results/sequences.json and prints Markdown; it never writes BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from components import cluster
from components.config import REPO_ROOT
from families.translator import charrnn, reber

RESULTS = REPO_ROOT / "bench" / "results" / "sequences.json"
TEXT = REPO_ROOT / "data" / "translator" / "en-es.tsv"


def bible_text() -> str:
    with open(TEXT, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    return "\n".join(r[1] for r in rows) + "\n"


def char_section(train_chars: int, val_chars: int, epochs: int, seed: int) -> dict[str, Any]:
    train, val, _ = charrnn.split_text(bible_text(), 0.05, 0.05)
    vocab = charrnn.CharVocab.of(train)
    train_ids, val_ids = vocab.encode(train[:train_chars]), vocab.encode(val[:val_chars])
    runs = {}
    for stateful in (False, True):
        torch.manual_seed(seed)
        model = charrnn.CharRNN(len(vocab), emb_dim=16, hidden=128, layers=2)
        run = charrnn.fit(model, train_ids, val_ids, stateful=stateful, epochs=epochs, seq_len=100, batch_size=32,
                          lr=0.003, stride=100, seed=seed)
        sample = charrnn.generate(model, vocab, "And God said", 200, 0.5, seed)
        runs["stateful" if stateful else "stateless"] = {**run.__dict__, "sample": sample}
        print(f"char-rnn {'stateful' if stateful else 'stateless'}: val bpc {run.val_bpc_stateless:.3f} (zero state) / "
              f"{run.val_bpc_stateful:.3f} (carried), {run.wall_s:.0f} s", flush=True)
    return {"train_chars": len(train_ids), "val_chars": len(val_ids), "vocab": len(vocab), "epochs": epochs,
            "runs": runs}


def reber_section(seed: int) -> dict[str, Any]:
    out = {}
    for name in ("reber", "embedded"):
        _, run = reber.fit(name, 10_000, 2_000, 2_000, epochs=20, seed=seed)
        out[name] = run.__dict__
        print(f"{name}: test accuracy {run.test_accuracy:.4f} ({run.wall_s:.0f} s)", flush=True)
    return out


def markdown(results: dict[str, Any]) -> str:
    lines = []
    if "char" in results:
        c = results["char"]
        lines += [f"Char-RNN, 2 x GRU(128), {c['train_chars']:,} training characters, {c['epochs']} epochs, "
                  f"vocabulary {c['vocab']}, validation {c['val_chars']:,} characters:", "",
                  "| training | val bits/char, zero state per 100-char window | val bits/char, state carried | train bits/char, last epoch | wall s |",
                  "|---|---|---|---|---|"]
        for name, r in c["runs"].items():
            lines.append(f"| {name} | {r['val_bpc_stateless']:.3f} | {r['val_bpc_stateful']:.3f} | "
                         f"{r['train_loss'][-1] / np.log(2):.3f} | {r['wall_s']:.0f} |")
        lines += [""] + [f"- {name} sample (temperature 0.5, prompt \"And God said\"): `{r['sample'][:160]!r}`"
                         for name, r in c["runs"].items()] + [""]
    if "reber" in results:
        lines += ["| grammar | test accuracy (2,000 strings) | val accuracy by epoch (last 5) | wall s |", "|---|---|---|---|"]
        for name, r in results["reber"].items():
            lines.append(f"| {name} | {r['test_accuracy']:.4f} | {', '.join(f'{a:.4f}' for a in r['val_accuracy'][-5:])} | "
                         f"{r['wall_s']:.0f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.sequences", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=("char", "reber"))
    p.add_argument("--char-train-chars", type=int, default=1_000_000)
    p.add_argument("--char-val-chars", type=int, default=100_000)
    p.add_argument("--char-epochs", type=int, default=5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    cluster.apply_env()
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    results: dict[str, Any] = {"command": "python -m bench.sequences " + " ".join(sys.argv[1:] if argv is None else argv),
                               "machine": platform.processor() or platform.machine(), "torch": torch.__version__}
    if args.only in (None, "char"):
        results["char"] = char_section(args.char_train_chars, args.char_val_chars, args.char_epochs, args.seed)
    if args.only in (None, "reber"):
        results["reber"] = reber_section(args.seed)
    results["wall_s"] = time.perf_counter() - t0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=float) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
