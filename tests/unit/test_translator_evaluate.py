"""Translator evaluate stage: greedy and beam scores on the best epoch's model, and its plots."""

from __future__ import annotations

from pathlib import Path

import pytest

from families.translator import data, evaluate
from quartet import api

EPOCHS = 2
HP = {"model": "attention", "emb_dim": 16, "hidden": 32, "batch_size": 32, "lr": 0.01}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[dict]]:
    raw = tmp_path_factory.mktemp("raw")
    dates = data.random_dates(600, 3)
    (raw / data.DATES_FILE).write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in dates))
    prepared = tmp_path_factory.mktemp("prepared")
    data.prepare("dates", {"split": [400, 100, 100]}, raw, prepared, 42)
    model_dir = tmp_path_factory.mktemp("model")
    history = api.train_plain("translator", "dates", HP, prepared, EPOCHS, seed=42, out_dir=model_dir).history
    return prepared, model_dir, history


def test_evaluate_reports_greedy_and_beam_and_writes_plots(trained, tmp_path: Path) -> None:
    prepared, model_dir, history = trained
    metrics = evaluate.evaluate(model_dir, prepared, tmp_path / "plots", {"beam_width": 3, "n_attention_plots": 2})
    for split in ("val", "test"):
        for key in ("exact_match", "char_accuracy", "exact_match_beam", "char_accuracy_beam"):
            assert 0 <= metrics[f"{split}_{key}"] <= 1
    assert metrics["val_char_accuracy"] > 0.2  # it learnt something (chance is ~1/11 per character)
    best = max(range(EPOCHS), key=lambda i: history[i]["val_exact_match"])  # first best kept on ties
    assert metrics["val_exact_match"] == pytest.approx(history[best]["val_exact_match"])
    assert metrics["val_char_accuracy"] == pytest.approx(history[best]["val_char_accuracy"])
    assert metrics["epochs_trained"] == EPOCHS and metrics["beam_width"] == 3
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "attention_0.png", "attention_1.png", "samples.tsv", "test_by_length.csv"]
    assert (tmp_path / "plots" / "attention_0.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "samples.tsv").read_text().startswith("source\treference\tgreedy\tbeam3")


def test_translate_ids_keeps_input_order_and_each_sources_own_attention_columns(trained) -> None:
    _, model_dir, _ = trained
    model, _ = evaluate.load_model(model_dir)
    src = [[5, 6, 7, 8, 9, 10, 11], [5, 6], [7, 8, 9]]
    # max_len 6 is under every batch's own limit (2 x its source width + 4), so batching changes no limit
    together = evaluate.translate_ids(model, src, 1, 6, attention=True, batch_size=2)
    for ids, hyps in zip(src, together):
        alone = evaluate.translate_ids(model, [ids], 1, 6, attention=True)[0]
        assert hyps[0].tokens == alone[0].tokens
        assert all(len(row) == len(ids) for row in hyps[0].attention)
