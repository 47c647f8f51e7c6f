"""The char-RNN as a pipeline task (`web-chars`): prepare, the Session loop, evaluate, generate."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from components.family import Metric
from components.session import LoopConfig, PlainSession
from components.modeldir import load_model
from families.translator import chars

WORDS = "and the earth was without form and void and darkness was upon the face of the deep".split()


def verse_rows(n: int) -> list[list[str]]:
    """en-es.tsv-like rows (ref, en, es) of English-like verses, deterministic."""
    rng = np.random.RandomState(0)
    return [[f"Genesis 1:{i + 1}", "In the beginning, " + " ".join(rng.choice(WORDS, 12)) + ".", "es"] for i in range(n)]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("chars")
    return out, chars.prepare({"val_frac": 0.1, "test_frac": 0.1}, verse_rows(600), out)


def test_prepare_cuts_contiguous_texts_with_the_train_vocabulary(prepared: tuple[Path, dict]) -> None:
    out, info = prepared
    texts = {s: (out / f"{s}.txt").read_text(encoding="utf-8") for s in ("train", "val", "test")}
    assert texts["train"].startswith("In the beginning, ") and texts["train"] + texts["val"] + texts["test"] == (
        "\n".join(r[1] for r in verse_rows(600)) + "\n")
    assert {k: len(v) for k, v in texts.items()} == info["counts"]
    assert set(info["chars"][1:]) == set(texts["train"])  # index 0 is the unknown symbol
    assert abs(len(texts["test"]) / sum(info["counts"].values()) - 0.1) < 0.001


def test_shards_are_contiguous_and_equally_long() -> None:
    ids = np.arange(103)
    parts = [chars.shard(ids, r, 4) for r in range(4)]
    assert {len(p) for p in parts} == {25} and np.array_equal(np.concatenate(parts), ids[:100])


@pytest.mark.parametrize("stateful", [True, False])
def test_the_loop_trains_through_a_session_and_writes_a_model_dir(prepared: tuple[Path, dict], tmp_path: Path,
                                                                   stateful: bool) -> None:
    out, info = prepared
    hp = {"model": "char_rnn", **chars.CharHParams(stateful=stateful, hidden=32, layers=1, seq_len=50, lr=0.01).model_dump()}
    config = LoopConfig(family="translator", task=chars.TASK, hparams=hp, info=info, prepared_dir=str(out), epochs=2,
                        seed=0, metric=Metric("bpc"))
    history = chars.loop(config, PlainSession(config, tmp_path / "model"))
    assert [h["epoch"] for h in history] == [0, 1]
    assert history[-1]["val_bpc"] < history[0]["val_bpc"] < math.log2(len(info["chars"]))
    model, cfg = load_model(tmp_path / "model", chars.build)
    metrics = chars.evaluate(model, cfg, out, tmp_path, {"n_sample_chars": 40, "seed": 3})
    other = "zero_state" if stateful else "carried_state"
    assert set(metrics) == {"val_bpc", "test_bpc", f"val_bpc_{other}", f"test_bpc_{other}", "epochs_trained"}
    assert math.isclose(metrics["val_bpc"], min(h["val_bpc"] for h in history), rel_tol=1e-6)  # best epoch kept
    with open(tmp_path / "samples.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    assert [r["temperature"] for r in rows] == ["0.2", "0.5", "1.0"] and all(len(r["continuation"]) >= 40 for r in rows)

    generator = chars.CharGenerator(model, cfg, "7")
    req = chars.GenerateRequest(task=chars.TASK, prompt="In the beginning \u2603", n_chars=30, temperature=0.8, seed=5)
    a, b = generator.generate_batch([req, req])
    assert a.text == b.text and len(a.text) == 30 and a.unknown_chars == 1 and a.model_version == "7"
    (c,) = generator.generate_batch([req.model_copy(update={"seed": 6})])
    assert c.text != a.text


def test_generate_requests_are_bounded() -> None:
    from pydantic import ValidationError

    for bad in ({"n_chars": 0}, {"n_chars": chars.MAX_GENERATED_CHARS + 1}, {"temperature": -1},
                {"prompt": "x" * (chars.MAX_PROMPT_CHARS + 1)}, {"seed": -1}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            chars.GenerateRequest(task=chars.TASK, **bad)
