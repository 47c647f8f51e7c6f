"""Translator training: the loop (plain session, no Ray) learns, is deterministic and keeps the
best epoch; the length-bucketing sampler; what a model dir holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.data import read_json
from families.translator import data, train
from quartet import api

EPOCHS = 3
HP = {"model": "attention", "emb_dim": 16, "hidden": 32, "batch_size": 32, "lr": 0.01}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    dates = data.random_dates(1000, 3)
    (raw / data.DATES_FILE).write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in dates))
    out = tmp_path_factory.mktemp("prepared")
    data.prepare("dates", {"split": [800, 100, 100]}, raw, out, 42)
    return out


def fit(prepared: Path, out_dir: Path | None, epochs: int = EPOCHS, **hp) -> list[dict]:
    return api.train_plain("translator", "dates", {**HP, **hp}, prepared, epochs, seed=42, out_dir=out_dir).history


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict]]:
    out = tmp_path_factory.mktemp("model")
    return out, fit(prepared, out)


def test_loop_learns_and_is_deterministic(prepared, trained) -> None:
    _, history = trained
    again = fit(prepared, None)
    assert [h["val_char_accuracy"] for h in history] == [h["val_char_accuracy"] for h in again]
    assert [h["train_loss"] for h in history] == [h["train_loss"] for h in again]
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 2
    assert history[-1]["val_char_accuracy"] > 0.5  # chance is ~1/11 per character
    assert all(h["best_val_exact_match"] == max(x["val_exact_match"] for x in history[: i + 1])
               for i, h in enumerate(history))
    assert [h["epoch"] for h in history] == list(range(EPOCHS)) and {h["world_size"] for h in history} == {1}


def test_model_dir_holds_the_best_epoch_and_everything_the_predictor_needs(trained) -> None:
    model_dir, history = trained
    config = read_json(model_dir / "config.json")
    assert config["info"]["src_chars"] and config["model"] == config["hparams"]["model"] == "attention"
    assert "heads" not in config["hparams"]  # the transformer's knobs are not the attention model's
    assert config["history"] == history
    assert sorted(p.name for p in model_dir.iterdir()) == ["config.json", "weights.pt"]


def test_bucket_batches_are_deterministic_sharded_and_reshuffled() -> None:
    lengths = [i % 17 + 1 for i in range(200)]
    sampler = train.BucketBatchSampler(lengths, 16, True, seed=5)
    first = list(sampler)
    assert first == list(train.BucketBatchSampler(lengths, 16, True, seed=5))
    assert sorted(i for b in first for i in b) == list(range(200))
    sampler.set_epoch(1)
    assert list(sampler) != first
    spread = [max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in first]
    assert sum(spread) / len(spread) < 4  # similar lengths share a batch
    shards = [list(train.BucketBatchSampler(lengths, 16, True, 5, rank, 3)) for rank in range(3)]
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == len(train.BucketBatchSampler(lengths, 16, True, 5, 0, 3))
    seen = [i for s in shards for b in s for i in b]
    assert len(seen) == len(set(seen))  # ranks never share an example


@pytest.mark.parametrize("n", [1, 31, 32, 33, 95, 1601, 1650])
def test_two_ranks_always_run_the_same_number_of_batches(n: int) -> None:
    """DDP hangs when one rank takes a step the other does not: every epoch, both ranks' loaders
    must yield as many batches as each other and as their len() says."""
    lengths = [(i * 7) % 23 + 1 for i in range(n)]
    ds = train.PairDataset([[4] * k for k in lengths], [[4]] * n)
    for epoch in range(3):
        counts = []
        for rank in range(2):
            loader = train.loader(ds, 32, True, 42, rank, 2)
            loader.batch_sampler.set_epoch(epoch)
            counts.append((len(list(loader)), len(loader)))
        assert counts[0] == counts[1] and counts[0][0] == counts[0][1], (n, epoch, counts)
