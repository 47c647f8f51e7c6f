"""The Transformer recipe and the two en-es test sets: the per-step warm-up/inverse-sqrt rate,
label smoothing, weight tying, the held-out books split, the shared vocabulary, and validation
scored exactly as the evaluate stage scores."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from components.config import ConfigError
from families.translator import FAMILY, data, evaluate, models, train
from quartet import api

INFO = {"src_vocab": 20, "tgt_vocab": 20, "max_src_len": 10, "max_tgt_len": 8, "shared_vocab": True}
TINY = {"model": "transformer", "hidden": 16, "heads": 2, "ff_dim": 32, "layers": 1}
BOOKS = ("Genesis", "Joshua", "Psalms", "John", "Acts", "Romans")
WORDS = {"cat": "gato", "dog": "perro", "house": "casa", "river": "río", "king": "rey", "bread": "pan",
         "water": "agua", "light": "luz"}


def hparams(**kw) -> dict:
    return FAMILY.validate_hparams({**TINY, **kw})


# ----------------------------------------------------------------------------- learning rate
def test_step_lr_warms_up_linearly_then_decays_as_inverse_sqrt() -> None:
    hp = hparams(lr=0.002, lr_schedule="inverse_sqrt", warmup_steps=100)
    assert train.step_lr(hp, 1) == pytest.approx(0.002 / 100)
    assert train.step_lr(hp, 50) == pytest.approx(0.001)
    assert train.step_lr(hp, 100) == pytest.approx(0.002)  # the peak is `lr`, at the last warm-up step
    assert train.step_lr(hp, 400) == pytest.approx(0.001)  # sqrt(100/400) = 1/2
    assert train.step_lr(hp, 10_000) == pytest.approx(0.0002)
    rates = [train.step_lr(hp, s) for s in range(1, 1000)]
    assert rates.index(max(rates)) == 99
    constant = hparams(lr=0.002, warmup_steps=10)
    assert [train.step_lr(constant, s) for s in (5, 10, 11, 5000)] == pytest.approx([0.001, 0.002, 0.002, 0.002])
    assert train.step_lr(hparams(lr=0.002), 7) == 0.002
    assert not train.scheduled(hparams()) and train.scheduled(constant)


def test_inverse_sqrt_without_warmup_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\(transformer\).*inverse_sqrt needs warmup_steps > 0"):
        hparams(lr_schedule="inverse_sqrt")


def test_step_schedule_sets_the_rate_of_every_step_of_its_own_optimizer_only() -> None:
    hp = hparams(lr=0.01, lr_schedule="inverse_sqrt", warmup_steps=4)
    schedule = train.StepSchedule(hp)
    torch.manual_seed(0)
    model = schedule.build(hp, INFO)
    other = torch.nn.Linear(2, 2)
    opt, other_opt = torch.optim.Adam(model.parameters(), lr=1.0), torch.optim.Adam(other.parameters(), lr=0.5)
    src, tgt = torch.tensor([[5, 6, 7]]), torch.tensor([[1, 8, 9]])
    seen = []
    with schedule.active():
        for _ in range(6):
            opt.zero_grad()
            model(src, tgt).sum().backward()
            opt.step()
            seen.append(opt.param_groups[0]["lr"])
            other(torch.ones(1, 2)).sum().backward()
            other_opt.step()
        assert other_opt.param_groups[0]["lr"] == 0.5
        # a resumed run: a fresh optimizer with the restored state continues the schedule
        resumed = torch.optim.Adam(model.parameters(), lr=1.0)
        resumed.load_state_dict(opt.state_dict())
        model(src, tgt).sum().backward()
        resumed.step()
        assert resumed.param_groups[0]["lr"] == pytest.approx(train.step_lr(hp, 7))
    assert seen == pytest.approx([train.step_lr(hp, s) for s in range(1, 7)])
    model(src, tgt).sum().backward()
    opt.step()  # the hook is gone after the run
    assert opt.param_groups[0]["lr"] == seen[-1]


# ----------------------------------------------------------------------------- loss and tying
def test_label_smoothing_spreads_epsilon_over_the_vocabulary_and_pads_carry_no_loss() -> None:
    torch.manual_seed(0)
    model = models.build(hparams(), INFO)
    src = torch.tensor([[5, 6, 7], [8, 9, 0]])
    tgt_in, tgt_out = torch.tensor([[1, 5, 6], [1, 7, 0]]), torch.tensor([[5, 6, 2], [7, 2, 0]])
    eps = 0.1
    with torch.no_grad():  # values only
        logp = model(src, tgt_in).log_softmax(-1)
        real = tgt_out != data.PAD
        nll = -logp.gather(-1, tgt_out[..., None])[..., 0][real].mean()
        uniform = -logp.mean(-1)[real].mean()
        smoothed = train.loss(model, (src, tgt_in, tgt_out), {"label_smoothing": eps})
        unsmoothed = train.loss(model, (src, tgt_in, tgt_out), {})
    assert float(smoothed) == pytest.approx(float((1 - eps) * nll + eps * uniform), rel=1e-5)
    assert float(unsmoothed) == pytest.approx(float(nll), rel=1e-5)
    assert float(smoothed) != pytest.approx(float(unsmoothed), rel=1e-3)


def test_tied_and_shared_embeddings_are_one_parameter() -> None:
    torch.manual_seed(0)
    untied = models.build(hparams(), INFO)
    tied = models.build(hparams(tie_output=True), INFO)
    shared = models.build(hparams(tie_output=True, share_embeddings=True), INFO)
    assert tied.out.weight is tied.tgt_embed.weight and tied.src_embed is not tied.tgt_embed
    assert shared.src_embed.weight is shared.tgt_embed.weight is shared.out.weight
    n = {k: sum(p.numel() for p in m.parameters()) for k, m in (("u", untied), ("t", tied), ("s", shared))}
    assert n["u"] - n["t"] == n["t"] - n["s"] == 20 * 16  # one (vocab x hidden) matrix fewer each
    assert float(shared.tgt_embed.weight.detach()[data.PAD].abs().sum()) == 0
    opt = torch.optim.Adam(shared.parameters(), lr=0.01)
    shared(torch.tensor([[5, 6]]), torch.tensor([[1, 7]])).sum().backward()
    opt.step()  # still one matrix after an update
    assert shared.src_embed.weight is shared.out.weight
    assert "out.weight" in shared.state_dict() and "src_embed.weight" in shared.state_dict()  # loads like untied


def test_shared_embeddings_need_a_shared_vocabulary() -> None:
    with pytest.raises(ConfigError, match="share_embeddings needs one source/target vocabulary.*shared_vocab: true"):
        models.build(hparams(share_embeddings=True), {**INFO, "shared_vocab": False})


# ----------------------------------------------------------------------------- the two test sets
def write_bible(raw: Path, per_book: int = 60, rare: bool = False) -> None:
    """A toy en-es.tsv whose English names its book, so a split's books can be read back; `rare`
    ends every 5th Spanish verse with a character of its own, which a tokenizer trained without
    that verse cannot encode (its detokenised ids then differ from its text)."""
    raw.mkdir(parents=True, exist_ok=True)
    words = list(WORDS)
    lines = []
    for b, book in enumerate(BOOKS):
        for v in range(1, per_book + 1):
            a, c = words[(v + b) % 8], words[(v // 8 + b) % 8]
            tail = chr(0x4E00 + b * per_book + v) if rare and v % 5 == 0 else ""
            en, es = f"{book.lower()} {v}: the {a} and the {c}.", f"{v}: el {WORDS[a]} y el {WORDS[c]}.{tail}"
            lines.append(f"{book} 1:{v}\t{en}\t{es}")
    (raw / data.EN_ES_FILE).write_text("ref\ten\tes\n" + "\n".join(lines) + "\n")


def books_in(prepared: Path, split: str) -> set[str]:
    return {s.split(" ")[0] for s in data.load_split(prepared, split)["source"]}


def test_held_out_books_are_in_no_other_split_and_the_vocabulary_can_be_shared(tmp_path: Path) -> None:
    write_bible(tmp_path / "raw")
    params = {"val_size": 40, "test_size": 40, "vocab_size": 120, "test_books": ["Joshua", "John"],
              "shared_vocab": True}
    info = data.prepare("en-es", params, tmp_path / "raw", tmp_path / "p", 42)
    assert info["counts"] == {"test": 40, "val": 40, "train": 4 * 60 - 80, "test_books": 120}
    assert books_in(tmp_path / "p", "test_books") == {"joshua", "john"}
    for split in data.SPLITS:
        assert not books_in(tmp_path / "p", split) & {"joshua", "john"}
    assert books_in(tmp_path / "p", "test") & books_in(tmp_path / "p", "train")  # the shuffled split mixes books
    assert info["shared_vocab"] and info["src_tokenizer"] == info["tgt_tokenizer"] and info["src_vocab"] == 120
    codec = data.Codec(info)
    books = data.load_split(tmp_path / "p", "test_books")
    assert [codec.decode_target(ids) for ids in books["tgt"][:5]] == books["target"][:5]
    # no held-out books: no second file, and the shuffled splits are what they were before books existed
    none = data.prepare("en-es", {**params, "test_books": [], "shared_vocab": False}, tmp_path / "raw",
                        tmp_path / "q", 42)
    assert "test_books" not in none["counts"] and not (tmp_path / "q" / "test_books.parquet").exists()
    assert not none["shared_vocab"] and none["src_tokenizer"] != none["tgt_tokenizer"]


def test_unknown_or_absent_held_out_books_are_refused(tmp_path: Path) -> None:
    write_bible(tmp_path / "raw")
    with pytest.raises(ConfigError, match=r"test_books.*'Jon' is not a book name of the canon"):
        data.prepare("en-es", {"test_books": ["Jon"]}, tmp_path / "raw", tmp_path / "p", 42)
    with pytest.raises(ConfigError, match=r"test_books: no verse of <= 20 words in \['Ruth'\]"):
        data.prepare("en-es", {"test_books": ["Ruth"]}, tmp_path / "raw", tmp_path / "p", 42)


# ----------------------------------------------------------------------------- validation == evaluate
def test_validation_scores_exactly_what_evaluate_reports(tmp_path: Path) -> None:
    """The best epoch is chosen on the reported metric: the model dir's val_bleu/val_chrf from
    evaluate equal, bit for bit, the ones the loop logged for its best epoch (recipe on)."""
    write_bible(tmp_path / "raw", rare=True)
    prepared = tmp_path / "p"
    info = data.prepare("en-es", {"val_size": 40, "test_size": 40, "vocab_size": 120, "test_books": ["John"],
                                  "shared_vocab": True}, tmp_path / "raw", prepared, 42)
    val = data.load_split(prepared, "val")
    codec = data.Codec(info)  # scoring against detokenised ids (the old validation) would differ from evaluate:
    assert any(codec.decode_target(ids) != text for ids, text in zip(val["tgt"], val["target"]))
    hp = {**TINY, "hidden": 32, "batch_size": 16, "lr": 0.01, "lr_schedule": "inverse_sqrt", "warmup_steps": 10,
          "label_smoothing": 0.1, "tie_output": True, "share_embeddings": True, "val_batch_size": 7}
    history = api.train_plain("translator", "en-es", hp, prepared, 3, seed=42, out_dir=tmp_path / "m").history
    assert history[-1]["lr"] == pytest.approx(train.step_lr(FAMILY.validate_hparams(hp), 3 * math.ceil(220 / 16)))
    metrics = evaluate.evaluate(tmp_path / "m", prepared, tmp_path / "plots", {"beam_width": 2})
    best = max(range(3), key=lambda i: history[i]["val_chrf"])
    assert history[best]["val_chrf"] > 0
    assert metrics["val_chrf"] == history[best]["val_chrf"] and metrics["val_bleu"] == history[best]["val_bleu"]
    for key in ("test_books_bleu", "test_books_chrf", "test_books_bleu_beam", "test_books_chrf_beam"):
        assert 0 <= metrics[key] <= 100
