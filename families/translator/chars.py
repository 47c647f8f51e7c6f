"""The translator family's character-level task, `web-chars`: the char-RNN through the pipeline.

prepare cuts the World English Bible's English text (the `en` column of en-es.tsv, canonical
order, one verse per line) into contiguous train / val / test texts and takes the vocabulary
from train; the loop trains `charrnn.CharRNN` stateless or stateful through the same Session as
every loop (Ray Train, Tune, plain); evaluate reports bits per character on val and test and
writes seeded samples at three temperatures (samples.tsv); `CharGenerator` answers POST /translator/generate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components.config import validate_model
from components.data import read_json, write_json, write_text_atomic
from components.family import RequestError
from components.session import Best, LoopConfig, Session, unwrap
from families.translator import charrnn

TASK = "web-chars"
MODEL = "char_rnn"
MAX_PROMPT_CHARS = 2000
MAX_GENERATED_CHARS = 2000


# ----------------------------------------------------------------------------- prepare
class CharsPrepare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    val_frac: float = Field(0.05, gt=0, lt=0.5)
    test_frac: float = Field(0.05, gt=0, lt=0.5)
    max_train_chars: int | None = Field(None, gt=1000, description="keep the first N training characters (speed)")
    max_eval_chars: int | None = Field(None, gt=1000, description="keep the first N val and test characters (speed)")


def prepare(raw_params: dict[str, Any], rows: list[list[str]], out_dir: Path) -> dict[str, Any]:
    """en-es.tsv rows (ref, en, es) -> train.txt / val.txt / test.txt + info.json."""
    p = validate_model(CharsPrepare, raw_params, f"params: families.translator.{TASK}.prepare")
    text = "\n".join(row[1] for row in rows) + "\n"
    train, val, test = charrnn.split_text(text, p.val_frac, p.test_frac)
    if p.max_train_chars:
        train = train[: p.max_train_chars]
    if p.max_eval_chars:
        val, test = val[: p.max_eval_chars], test[: p.max_eval_chars]
    vocab = charrnn.CharVocab.of(train)
    for name, part in (("train", train), ("val", val), ("test", test)):
        (out_dir / f"{name}.txt").write_text(part, encoding="utf-8")
    info = {"task": TASK, "chars": list(vocab.chars), "counts": {"train": len(train), "val": len(val), "test": len(test)},
            "source": "World English Bible (en column of en-es.tsv), canonical order"}
    write_json(out_dir / "info.json", info)
    return info


def vocab_of(info: dict[str, Any]) -> charrnn.CharVocab:
    return charrnn.CharVocab(tuple(info["chars"]))


def load_ids(prepared_dir: Path, split: str, info: dict[str, Any]) -> np.ndarray:
    return vocab_of(info).encode((Path(prepared_dir) / f"{split}.txt").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- model
class CharHParams(BaseModel):
    """The book's Shakespeare model and how it is trained (stateless windows or stateful streams)."""

    model_config = ConfigDict(extra="forbid")
    stateful: bool = True
    emb_dim: int = Field(16, gt=0, le=512)
    hidden: int = Field(128, gt=0, le=2048)
    layers: int = Field(2, gt=0, le=6)
    dropout: float = Field(0.0, ge=0, lt=1)
    lr: float = Field(0.003, gt=0, lt=1)
    batch_size: int = Field(32, gt=0, le=1024)
    seq_len: int = Field(100, gt=1, le=2000)
    stride: int | None = Field(None, gt=0, description="stateless window starts (default seq_len: each character once per epoch)")
    clip_norm: float | None = Field(1.0, gt=0)


def build(hp: dict[str, Any], info: dict[str, Any]) -> charrnn.CharRNN:
    return charrnn.CharRNN(len(info["chars"]), int(hp["emb_dim"]), int(hp["hidden"]), int(hp["layers"]),
                           float(hp["dropout"]))


# ----------------------------------------------------------------------------- the loop
def shard(ids: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """Rank r's contiguous part, all parts equally long (equal batch counts: DDP needs them)."""
    per = len(ids) // world_size
    return ids[rank * per : (rank + 1) * per]


def loop(config: LoopConfig, session: Session) -> list[dict[str, float]]:
    """Epochs of charrnn.train_epoch, validation bits per character scored as the model is used
    (statefully for a stateful model), the best epoch kept."""
    hp, info = config.hparams, config.info
    train_ids = load_ids(config.prepared, "train", info)
    if config.max_train_samples:
        train_ids = train_ids[: config.max_train_samples]
    train_ids = shard(train_ids, session.rank, session.world_size)
    val_ids = load_ids(config.prepared, "val", info)
    model = session.prepare(build(hp, info))
    optimizer = torch.optim.Adam(model.parameters(), lr=float(hp["lr"]))
    start, history, best = 0, [], Best(config.metric)
    restored = session.restore()
    if restored is not None:
        unwrap(model).load_state_dict(restored.state["model"])
        optimizer.load_state_dict(restored.state["optimizer"])
        start, history = restored.next_epoch, restored.history
        best = Best(config.metric, history, restored.best_weights)
    seq_len, stateful = int(hp["seq_len"]), bool(hp["stateful"])
    for epoch in range(start, config.epochs):
        rng = np.random.RandomState(config.seed + epoch)
        batches = (charrnn.stateful_batches(train_ids, seq_len, int(hp["batch_size"])) if stateful else
                   charrnn.stateless_batches(train_ids, seq_len, int(hp["batch_size"]), int(hp["stride"] or seq_len), rng))
        t0 = time.perf_counter()
        loss = charrnn.train_epoch(model, batches, optimizer, stateful, hp.get("clip_norm"))
        train_time = time.perf_counter() - t0
        val_bpc = charrnn.bits_per_char(unwrap(model), val_ids, seq_len, stateful=stateful)
        metrics = {"epoch": epoch, "train_loss": loss, "train_bpc": loss / np.log(2), "val_bpc": val_bpc,
                   "epoch_time_s": train_time, "resumed_at_epoch": start, "world_size": session.world_size}
        history.append(metrics)
        best.update(metrics, model)
        session.report(metrics, history, best, lambda epoch=epoch: {
            "epoch": epoch, "model": unwrap(model).state_dict(), "optimizer": optimizer.state_dict()})
    return session.finish(history, best)


# ----------------------------------------------------------------------------- evaluate
SAMPLE_PROMPT = "And God said"
SAMPLE_TEMPERATURES = (0.2, 0.5, 1.0)


def evaluate(model: charrnn.CharRNN, config: dict[str, Any], prepared_dir: Path, plots_dir: Path,
             params: dict[str, Any]) -> dict[str, float]:
    """Bits per character on val and test, both ways; samples.tsv at three temperatures."""
    info = config["info"]
    seq_len, stateful = int(config["hparams"]["seq_len"]), bool(config["hparams"]["stateful"])
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        ids = load_ids(prepared_dir, split, info)
        metrics[f"{split}_bpc"] = charrnn.bits_per_char(model, ids, seq_len, stateful=stateful)
        metrics[f"{split}_bpc_{'zero_state' if stateful else 'carried_state'}"] = charrnn.bits_per_char(
            model, ids, seq_len, stateful=not stateful)
    n_chars, seed = int(params.get("n_sample_chars", 300)), int(params.get("seed", 0))
    vocab = vocab_of(info)
    # A TSV (DVC reads every file of a plots dir as a table); a line break in a sample is "\n".
    rows = ["temperature\tseed\tprompt\tcontinuation"]
    for t in SAMPLE_TEMPERATURES:
        text = charrnn.generate(model, vocab, SAMPLE_PROMPT, n_chars, t, seed)
        rows.append(f"{t}\t{seed}\t{SAMPLE_PROMPT}\t{text.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n').replace(chr(9), ' ')}")
    write_text_atomic(plots_dir / "samples.tsv", "\n".join(rows) + "\n")
    metrics["epochs_trained"] = float(len(config.get("history", [])))
    return metrics


# ----------------------------------------------------------------------------- serving
class GenerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description=f"a character-level task, e.g. {TASK!r}")
    prompt: str = Field("", max_length=MAX_PROMPT_CHARS, description="text the generation continues")
    n_chars: int = Field(200, gt=0, le=MAX_GENERATED_CHARS, description="characters to generate")
    temperature: float = Field(0.5, ge=0, le=5, description="0: greedy; higher: more surprising")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="same seed, same text")


class GenerateResponse(BaseModel):
    task: str
    model_version: str | None = None
    text: str
    unknown_chars: int = Field(description="prompt characters the model never saw (read as one unknown symbol)")


class CharGenerator:
    """Answers generate requests with one char-RNN model dir's model."""

    def __init__(self, model: charrnn.CharRNN, config: dict[str, Any], model_version: str | None) -> None:
        self.model, self.config, self.model_version = model.eval(), config, model_version
        self.vocab = vocab_of(config["info"])

    def generate_batch(self, reqs: list[GenerateRequest]) -> list[GenerateResponse]:
        """One request at a time: a seeded sample must not depend on its batch-mates."""
        out = []
        for r in reqs:
            unknown = int((self.vocab.encode(r.prompt) == 0).sum())
            text = charrnn.generate(self.model, self.vocab, r.prompt, r.n_chars, r.temperature, r.seed)
            out.append(GenerateResponse(task=r.task, model_version=self.model_version, text=text, unknown_chars=unknown))
        return out


def not_a_char_model(task: str) -> RequestError:
    return RequestError(f"task {task!r} is not a character-level model: POST /translator/generate answers {TASK!r}")


def input_example(model_dir: Path) -> dict[str, Any]:
    config = read_json(Path(model_dir) / "config.json")
    return {"task": config["task"], "prompt": SAMPLE_PROMPT, "n_chars": 20, "temperature": 0.5, "seed": 0}
