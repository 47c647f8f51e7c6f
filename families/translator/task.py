"""What the translator learns and how it is judged: batches, loss, metrics, evaluation, Predictor.

- dates: tuned and promoted on whole-string exact match (greedy); also per-character accuracy.
- en-es: tuned and promoted on chrF (sacreBLEU's corpus chrF, greedy). chrF rather than BLEU
  because on ~11k training pairs BLEU sits in the low single digits early in training, where
  4-gram precision is mostly zero and one epoch's ranking is noise; chrF moves smoothly with
  partial (character n-gram) progress and suits Spanish morphology. BLEU is reported beside it.
The per-epoch val score greedy-decodes the whole val split (2,000 dates; en-es val_size pairs).
"""

from __future__ import annotations

import csv
import logging
import random
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components import train
from components.data import read_json
from components.family import Metric, RequestError
from components.train import SupervisedSpec, run_supervised
from families.translator import models
from families.translator.data import BOS, EOS, PAD, Codec, load_split

log = logging.getLogger(__name__)

METRICS = {"dates": Metric("exact_match", "max"), "en-es": Metric("chrf", "max")}
MAX_TEXTS = 64
MAX_BEAM = 16


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
    Sharded by rank: each rank takes every world_size-th batch, all ranks the same count.
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
    sampler = BucketBatchSampler(dataset.lengths, batch_size, shuffle, seed, rank, world_size)
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=0)


def datasets(prepared_dir: Path, hp: dict[str, Any], info: dict[str, Any], max_train: int | None):
    train = load_split(prepared_dir, "train")
    val = load_split(prepared_dir, "val")
    n = max_train or len(train["src"])
    return PairDataset(train["src"][:n], train["tgt"][:n]), PairDataset(val["src"], val["tgt"])


def loss(model: torch.nn.Module, batch: Any, hp: dict[str, Any]) -> torch.Tensor:
    """Teacher forcing; pads carry no loss (ignore_index)."""
    src, tgt_in, tgt_out = batch
    logits = model(src, tgt_in)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD,
                                             label_smoothing=float(hp.get("label_smoothing", 0.0)))


# ----------------------------------------------------------------------------- metrics
def max_decode_len(info: dict[str, Any], src_width: int | None = None) -> int:
    """Output length limit: 1.5x the longest training target, and at most 2x the (batch's) source
    length + 4, so a model that never says EOS does not decode 77 steps for a 5-token input."""
    limit = int(info["max_tgt_len"] * 1.5) + 2
    return limit if src_width is None else min(limit, 2 * src_width + 4)


def char_accuracy(preds: list[str], refs: list[str]) -> float:
    """Reference characters matched at the same position (micro-averaged over all characters)."""
    hits = sum(sum(a == b for a, b in zip(p, r)) for p, r in zip(preds, refs))
    return hits / max(sum(len(r) for r in refs), 1)


def score_texts(task: str, preds: list[str], refs: list[str], prefix: str) -> dict[str, float]:
    """dates: exact_match, char_accuracy; en-es: bleu, chrf (sacreBLEU, 0..100)."""
    if task == "dates":
        return {f"{prefix}_exact_match": sum(p == r for p, r in zip(preds, refs)) / max(len(refs), 1),
                f"{prefix}_char_accuracy": char_accuracy(preds, refs)}
    import sacrebleu

    return {f"{prefix}_bleu": float(sacrebleu.corpus_bleu(preds, [refs]).score),
            f"{prefix}_chrf": float(sacrebleu.corpus_chrf(preds, [refs]).score)}


def validate(model: torch.nn.Module, batches: Any, hp: dict[str, Any], info: dict[str, Any]) -> dict[str, float]:
    """Greedy-decode the val split; references are the detokenised target ids."""
    codec = Codec(info)
    preds, refs = [], []
    for src, _, tgt_out in batches:
        for h in models.greedy_decode(model, src, max_decode_len(info, src.shape[1])):
            preds.append(codec.decode_target(h.tokens))
        refs += [codec.decode_target(row) for row in tgt_out.tolist()]
    return score_texts(info["task"], preds, refs, "val")


def spec(task: str) -> SupervisedSpec:
    return SupervisedSpec(build=models.build, datasets=datasets, loss=loss, validate=validate,
                          val_metric=METRICS[task].val, mode=METRICS[task].mode, loader=loader)


def train_loop(config: dict[str, Any]) -> list[dict[str, float]]:
    """The per-worker loop (Ray Train worker, Tune trial or plain process)."""
    return run_supervised(config, spec(config["task"]))


# ----------------------------------------------------------------------------- translating
def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return train.load_model(model_dir, models.build)


def translate_ids(model: torch.nn.Module, src: list[list[int]], beam_width: int, max_len: int, attention: bool = False,
                  batch_size: int = 256) -> list[list[models.Hypothesis]]:
    """n-best lists (greedy: one hypothesis) for id sequences, batched by similar length."""
    order = sorted(range(len(src)), key=lambda i: len(src[i]))
    out: list[list[models.Hypothesis]] = [[] for _ in src]
    with torch.no_grad():
        for c in range(0, len(order), batch_size):
            idx = order[c:c + batch_size]
            x = pad([src[i] for i in idx])
            limit = min(max_len, 2 * x.shape[1] + 4)
            if beam_width == 1:
                res = [[h] for h in models.greedy_decode(model, x, limit, attention)]
            else:
                res = models.beam_search(model, x, beam_width, limit, attention)
            for i, r in zip(idx, res):
                for h in r:  # the batch pads sources to one width: keep this source's own columns
                    if h.attention is not None:
                        h.attention = [row[: len(src[i])] for row in h.attention]
                out[i] = r
    return out


# ----------------------------------------------------------------------------- evaluation
def _plot_attention(path: Path, weights: list[list[float]], src_tokens: list[str], out_tokens: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(src_tokens) + 2), max(3, 0.3 * len(out_tokens) + 1.5)))
    ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(src_tokens)), src_tokens, rotation=90, fontsize=7)
    ax.set_yticks(range(len(out_tokens)), out_tokens, fontsize=7)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate(model_dir: Path, prepared_dir: Path, plots_dir: Path, params: dict[str, Any]) -> dict[str, float]:
    """Greedy and beam scores on val and test; attention heat-maps, samples.tsv and a CSV in plots_dir."""
    model, config = load_model(model_dir)
    info = config["info"]
    task = info["task"]
    codec = Codec(info)
    beam = int(params.get("beam_width", 4))
    n_plots = int(params.get("n_attention_plots", 3))
    n_samples = int(params.get("n_samples", 10))
    max_len = max_decode_len(info)
    plots_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {}
    for split in ("val", "test"):
        data = load_split(prepared_dir, split)
        greedy = translate_ids(model, data["src"], 1, max_len)
        beamed = translate_ids(model, data["src"], beam, max_len)
        g = [codec.decode_target(h[0].tokens) for h in greedy]
        b = [codec.decode_target(h[0].tokens) for h in beamed]
        metrics.update(score_texts(task, g, data["target"], split))
        metrics.update({k + "_beam": v for k, v in score_texts(task, b, data["target"], split).items()})
        if split != "test":
            continue
        # A TSV, not free text: DVC reads every file of the plots dir and accepts only tables.
        with open(plots_dir / "samples.tsv", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t")
            writer.writerow(["source", "reference", "greedy", f"beam{beam}"])
            writer.writerows([data["source"][i], data["target"][i], g[i], b[i]] for i in range(min(n_samples, len(g))))
        _length_csv(plots_dir / "test_by_length.csv", task, data, g)
        shown = translate_ids(model, data["src"][:n_plots], 1, max_len, attention=True)
        for i, hyps in enumerate(shown):
            h = hyps[0]
            if h.attention:
                out_tokens = codec.target_tokens(h.tokens) + (["</s>"] if len(h.attention) > len(h.tokens) else [])
                _plot_attention(plots_dir / f"attention_{i}.png", h.attention, codec.source_tokens(data["source"][i]),
                                out_tokens)
    metrics["beam_width"] = float(beam)
    metrics["epochs_trained"] = float(len(config.get("history", [])))
    return metrics


def _length_csv(path: Path, task: str, data: dict[str, list], preds: list[str]) -> None:
    """Greedy score by source length (tokens), for `dvc plots`."""
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(data["src"]):
        groups.setdefault(len(s) // 5 * 5, []).append(i)
    metric = "exact_match" if task == "dates" else "chrf"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["src_len", "n", metric])
        for length in sorted(groups):
            idx = groups[length]
            s = score_texts(task, [preds[i] for i in idx], [data["target"][i] for i in idx], "x")[f"x_{metric}"]
            w.writerow([length, len(idx), f"{s:.6g}"])


# ----------------------------------------------------------------------------- serving
class TranslateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="translator task: 'dates' or 'en-es'")
    texts: list[str] = Field(min_length=1, max_length=MAX_TEXTS, description="texts to translate")
    beam_width: int = Field(1, ge=1, le=MAX_BEAM, description="1: greedy decoding; k > 1: beam search")
    n_best: int = Field(1, ge=1, le=MAX_BEAM, description="hypotheses returned per text (<= beam_width)")
    return_attention: bool = Field(False, description="return the alignment matrix (output steps x source tokens)")

    @field_validator("texts")
    @classmethod
    def _valid_unicode(cls, texts: list[str]) -> list[str]:
        # JSON lets a client send a lone surrogate ("\ud800"): not text, and the tokenizer chokes on it
        for i, t in enumerate(texts):
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"texts[{i}] is not valid Unicode (a lone surrogate)") from None
        return texts

    @model_validator(mode="after")
    def _n_best(self) -> "TranslateRequest":
        if self.n_best > self.beam_width:
            raise ValueError(f"n_best ({self.n_best}) must be <= beam_width ({self.beam_width})")
        return self


class NBest(BaseModel):
    text: str
    score: float = Field(description="length-normalised log-probability (log-prob per output token incl. EOS)")
    logprob: float = Field(description="total log-probability of the output")


class Translation(BaseModel):
    text: str
    score: float
    n_best: list[NBest]
    attention: list[list[float]] | None = None


class TranslateResponse(BaseModel):
    task: str
    model_version: str | None = None
    translations: list[Translation]


class Predictor:
    """Loads a model dir; texts in, translations (n-best, scores, attention) out."""

    request_model = TranslateRequest
    response_model = TranslateResponse

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.model, self.config = load_model(Path(model_dir))
        self.info = self.config["info"]
        self.task = self.config["task"]
        self.codec = Codec(self.info)
        self.model_version = model_version
        self.max_src = 2 * int(self.info["max_src_len"])
        self.max_len = max_decode_len(self.info)

    def _encode(self, req: TranslateRequest) -> list[list[int]]:
        if req.task != self.task:
            raise RequestError(f"this model translates task {self.task!r}, not {req.task!r}")
        out = []
        for i, text in enumerate(req.texts):
            text = text.strip()
            if not text:
                raise RequestError(f"texts[{i}] is empty")
            bad = self.codec.unknown_chars(text)
            if bad:
                allowed = f" (allowed: {self.codec.src_chars!r})" if self.codec.kind == "chars" else ""
                raise RequestError(f"texts[{i}] has characters outside the {self.task} vocabulary: "
                                   f"{', '.join(map(repr, bad))}{allowed}")
            ids = self.codec.encode_source(text)
            if len(ids) > self.max_src:
                raise RequestError(f"texts[{i}] is too long: {len(ids)} tokens, the limit is {self.max_src}")
            out.append(ids)
        return out

    def translate(self, req: TranslateRequest) -> TranslateResponse:
        return self.translate_batch([req])[0]

    def translate_batch(self, reqs: list[TranslateRequest]) -> list[TranslateResponse]:
        """Texts of requests with the same beam width share one decoding pass."""
        encoded = [self._encode(r) for r in reqs]
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(reqs):
            groups.setdefault(r.beam_width, []).append(i)
        results: list[list[list[models.Hypothesis]] | None] = [None] * len(reqs)
        for width, idx in groups.items():
            flat = [ids for i in idx for ids in encoded[i]]
            attention = any(reqs[i].return_attention for i in idx)
            hyps = translate_ids(self.model, flat, width, self.max_len, attention)
            start = 0
            for i in idx:
                results[i] = hyps[start:start + len(encoded[i])]
                start += len(encoded[i])
        return [self._response(r, res) for r, res in zip(reqs, results)]

    def _response(self, req: TranslateRequest, res: list[list[models.Hypothesis]]) -> TranslateResponse:
        out = []
        for hyps in res:
            best = hyps[0]
            nbest = [NBest(text=self.codec.decode_target(h.tokens), score=h.score, logprob=h.logprob)
                     for h in hyps[:req.n_best]]
            out.append(Translation(text=nbest[0].text, score=best.score, n_best=nbest,
                                   attention=best.attention if req.return_attention else None))
        return TranslateResponse(task=req.task, model_version=self.model_version, translations=out)

    predict = translate
    predict_batch = translate_batch


def input_example(model_dir: Path) -> dict[str, Any]:
    """A valid request for this model dir (MLflow signature + smoke test)."""
    config = read_json(Path(model_dir) / "config.json")
    text = "April 22, 2019" if config["task"] == "dates" else "In the beginning God created the heavens and the earth."
    return {"task": config["task"], "texts": [text], "beam_width": 2, "n_best": 2, "return_attention": False}
