"""Translator loop (plain launcher, no Ray), evaluation, batching and the Predictor's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from components.data import read_json
from components.family import RequestError
from components.train import loop_config
from families.translator import FAMILY, data, models, task

EPOCHS = 3
HP = {"model": "attention", "emb_dim": 16, "hidden": 32, "batch_size": 32, "lr": 0.01}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    raw = tmp_path_factory.mktemp("raw")
    dates = data.random_dates(1000, 3)
    (raw / data.DATES_FILE).write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in dates))
    out = tmp_path_factory.mktemp("prepared")
    info = data.prepare("dates", {"split": [800, 100, 100]}, raw, out, 42)
    return out, info


def train(prepared: tuple[Path, dict], out_dir: Path, epochs: int = EPOCHS, **hp) -> list[dict]:
    path, info = prepared
    torch.set_num_threads(1)
    hparams = models.validate_hparams({**HP, **hp})
    config = loop_config("translator", "dates", hparams, info, path, epochs, 42, "plain", out_dir=str(out_dir))
    return task.train_loop(config)


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("model")
    return out, train(prepared, out)


def test_loop_learns_and_is_deterministic(prepared, trained, tmp_path: Path) -> None:
    _, history = trained
    again = train(prepared, tmp_path / "b")
    assert [h["val_char_accuracy"] for h in history] == [h["val_char_accuracy"] for h in again]
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in again]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    assert history[-1]["val_char_accuracy"] > 0.5  # chance is ~1/11 per character
    assert all(h["best_val_exact_match"] == max(x["val_exact_match"] for x in history[: i + 1])
               for i, h in enumerate(history))


def test_evaluate_reports_greedy_and_beam_and_writes_plots(prepared, trained, tmp_path: Path) -> None:
    model_dir, history = trained
    metrics = task.evaluate(model_dir, prepared[0], tmp_path / "plots", {"beam_width": 3, "n_attention_plots": 2})
    for split in ("val", "test"):
        for key in ("exact_match", "char_accuracy", "exact_match_beam", "char_accuracy_beam"):
            assert 0 <= metrics[f"{split}_{key}"] <= 1
    assert metrics["val_exact_match"] == pytest.approx(max(h["val_exact_match"] for h in history))  # best epoch kept
    assert metrics["epochs_trained"] == EPOCHS and metrics["beam_width"] == 3
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "attention_0.png", "attention_1.png", "samples.tsv", "test_by_length.csv"]
    assert (tmp_path / "plots" / "attention_0.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "samples.tsv").read_text().startswith("source\treference\tgreedy\tbeam3")


def test_bucket_batches_are_deterministic_sharded_and_reshuffled() -> None:
    lengths = [i % 17 + 1 for i in range(200)]
    sampler = task.BucketBatchSampler(lengths, 16, True, seed=5)
    first = list(sampler)
    assert first == list(task.BucketBatchSampler(lengths, 16, True, seed=5))
    assert sorted(i for b in first for i in b) == list(range(200))
    sampler.set_epoch(1)
    assert list(sampler) != first
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first]
    assert sum(spread) / len(spread) < 4  # similar lengths share a batch
    shards = [list(task.BucketBatchSampler(lengths, 16, True, 5, rank, 3)) for rank in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(task.BucketBatchSampler(lengths, 16, True, 5, 0, 3))
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == len(set(seen))  # ranks never share an example


def test_predictor_translates_with_nbest_and_attention(trained) -> None:
    model_dir, _ = trained
    predictor = FAMILY.predictor(model_dir, model_version="3")
    example = task.TranslateRequest(**task.input_example(model_dir))
    req = task.TranslateRequest(task="dates", texts=["April 22, 2019", "3 May 1999"], beam_width=4, n_best=3,
                                return_attention=True)
    out = predictor.translate_batch([example, req])
    assert out[0].model_version == "3" and len(out[0].translations) == 1
    t = out[1].translations[1]
    assert len(t.n_best) == 3 and t.text == t.n_best[0].text and t.score == t.n_best[0].score
    assert [h.score for h in t.n_best] == sorted((h.score for h in t.n_best), reverse=True)
    assert len(t.attention[0]) == len("3 May 1999")
    assert predictor.predict(req).translations[1].text == t.text  # alone == inside a batch
    plain = predictor.translate(task.TranslateRequest(task="dates", texts=["3 May 1999"]))
    assert plain.translations[0].attention is None and len(plain.translations[0].n_best) == 1


def test_predictor_rejects_bad_requests(trained) -> None:
    predictor = task.Predictor(trained[0])
    cases = {
        "is empty": ["  "],
        r"outside the dates vocabulary: '\?', 'é'": ["Apré 2, 2019?"],
        "too long: 40 tokens, the limit is 36": ["1" * 40],
    }
    for message, texts in cases.items():
        with pytest.raises(RequestError, match=message):
            predictor.translate(task.TranslateRequest(task="dates", texts=texts))
    with pytest.raises(RequestError, match="translates task 'dates', not 'en-es'"):
        predictor.translate(task.TranslateRequest(task="en-es", texts=["hello"]))


def test_request_limits_are_validation_errors() -> None:
    for bad, message in [
        ({"texts": []}, "at least 1"),
        ({"texts": ["x"] * 65}, "at most 64"),
        ({"texts": ["x"], "beam_width": 17}, "less than or equal to 16"),
        ({"texts": ["x"], "beam_width": 2, "n_best": 3}, r"n_best \(3\) must be <= beam_width \(2\)"),
        ({"texts": ["x"], "extra": 1}, "Extra inputs"),
    ]:
        with pytest.raises(ValidationError, match=message):
            task.TranslateRequest(task="dates", **bad)


def test_config_embeds_everything_the_predictor_needs(trained) -> None:
    config = read_json(trained[0] / "config.json")
    assert config["info"]["src_chars"] and config["hparams"]["model"] == "attention"
    assert sorted(p.name for p in trained[0].iterdir()) == ["config.json", "weights.pt"]
