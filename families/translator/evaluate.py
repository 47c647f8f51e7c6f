"""The evaluate stage: greedy and beam scores on val and the test sets, attention heat-maps,
samples and scores by source length; and the model-dir loading it shares with serving.

en-es has a second test set when prepare held out whole books: `test_books_bleu` / `test_books_chrf`
(+ `_beam`) beside `test_bleu` / `test_chrf` (shuffled verses, the ones the registry compares)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

import components.train
from families.translator import chars, models
from families.translator.data import TEST_BOOKS_SPLIT, Codec, load_split
from components.progress import Progress
from families.translator.decode import translate_ids
from families.translator.metrics import max_decode_len, score_texts, translations


def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return components.train.load_model(model_dir, models.build)


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
    """Greedy and beam scores on val and the test sets; attention heat-maps, samples.tsv and a CSV
    (the shuffled test split's) in plots_dir."""
    model, config = load_model(model_dir)
    if config["model"] == chars.MODEL:
        return chars.evaluate(model, config, prepared_dir, plots_dir, params)
    info = config["info"]
    task = info["task"]
    codec = Codec(info)
    beam = int(params.get("beam_width", 4))
    n_plots = int(params.get("n_attention_plots", 3))
    n_samples = int(params.get("n_samples", 10))
    max_len = max_decode_len(info)
    plots_dir.mkdir(parents=True, exist_ok=True)
    batch = int(config["hparams"].get("val_batch_size", 500))
    metrics: dict[str, float] = {}
    for split in ("val", "test", TEST_BOOKS_SPLIT):
        if split == TEST_BOOKS_SPLIT and not (prepared_dir / f"{split}.parquet").is_file():
            continue
        data = load_split(prepared_dir, split)
        with Progress(f"evaluate translator/{task} {split} greedy", len(data["src"]), "sentences") as p:
            g = translations(model, data["src"], info, 1, batch, progress=p)
        with Progress(f"evaluate translator/{task} {split} beam {beam}", len(data["src"]), "sentences") as p:
            b = translations(model, data["src"], info, beam, batch, progress=p)
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
