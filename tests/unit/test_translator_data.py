"""Translator data: date generation, OSIS parsing, the real diatheke ingest, prepare and codecs."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest

from components.config import ConfigError
from components.data import DataError, read_json
from families.translator import data

OSIS_SAMPLE = """\
Genesis 1:1: <w>In</w> <w>the</w> <w>beginning</w>, <w>God</w><w>created</w> <w>the</w> <w>heavens</w>.<milestone type="line"/>
A Psalm by David.  Psalms 3:1: <w>Yahweh</w>, how <w>my</w> adversaries <w>have</w> increased! <milestone type="line"/>
A Psalm by David.  Psalms 3:2: <w>Many</w> <w>there</w> <w>are</w>.<milestone type="line"/>
A praise psalm by David.  Tobit 1:1: <w>The</w> <w>book</w>.<milestone type="line"/>
<title canonical="true" type="psalm">A title.</title> I John 1:1: <w>That</w> <w>which</w> <w>was</w>.<milestone type="line"/>
(engWEB2015eb)
"""
OSIS_ES = """\
Genesis 1:1: <w lemma="H7225">EN el principio</w> <w lemma="H1254">crió</w> <w>Dios</w>.<milestone type="line"/>
Psalms 3:1: <w>Salmo</w> <w>de David</w>. ¡<w>OH</w> <w>Jehová</w>!<milestone type="line"/>
Psalms 3:2: <w>Muchos</w> <w>dicen</w>.<milestone type="line"/>
(spaRV1909eb)
"""


def test_dates_are_deterministic_valid_and_in_several_formats() -> None:
    pairs = data.random_dates(600, 7)
    assert pairs == data.random_dates(600, 7)
    assert pairs != data.random_dates(600, 8)
    patterns = [
        r"[A-Z][a-z]+ \d{2}, \d{4}", r"[A-Z][a-z]+ \d{1,2}, \d{4}", r"\d{1,2} [A-Z][a-z]+ \d{4}",
        r"[A-Z][a-z]{2} \d{2} \d{4}", r"[A-Z][a-z]{2} \d{1,2}, \d{4}", r"\d{2} [A-Z][a-z]{2} \d{4}",
    ]
    used = set()
    for human, iso in pairs:
        d = dt.date.fromisoformat(iso)
        assert dt.date(1000, 1, 1) <= d <= dt.date(9999, 12, 31)
        assert str(d.year) in human and data.MONTHS[d.month - 1][:3] in human and str(d.day) in human
        matches = [i for i, p in enumerate(patterns) if re.fullmatch(p, human)]
        assert matches, human
        used.update(matches)
    assert len(used) >= 5  # several formats actually occur


def test_osis_parsing_spaces_words_drops_tags_titles_and_other_books() -> None:
    en = data.parse_osis(OSIS_SAMPLE)
    assert en["Genesis 1:1"] == "In the beginning, God created the heavens."  # no "Godcreated"
    assert en["Psalms 3:1"] == "Yahweh, how my adversaries have increased!"  # sticky heading dropped
    assert en["I John 1:1"] == "That which was."
    assert not any(k.startswith("Tobit") for k in en)
    es = data.parse_osis(OSIS_ES)
    assert es["Genesis 1:1"] == "EN el principio crió Dios."  # Strong's numbers (lemma=) gone
    joined = data.join_verses(en, es)
    assert [r for r, _, _ in joined] == ["Genesis 1:1", "Psalms 3:2"]  # Psalm v1 (title inside) dropped


@pytest.mark.skipif(shutil.which("diatheke") is None, reason="Debian diatheke not installed")
def test_real_diatheke_output_parses() -> None:
    en = data.parse_osis(data.read_module(data.MODULES["en"], "Gen 1:1-3"))
    es = data.parse_osis(data.read_module(data.MODULES["es"], "Gen 1:1-3"))
    assert list(en) == list(es) == ["Genesis 1:1", "Genesis 1:2", "Genesis 1:3"]
    assert en["Genesis 1:1"].startswith("In the beginning, God created")
    assert es["Genesis 1:1"].startswith("EN el principio crió Dios")
    assert "<" not in "".join(en.values()) + "".join(es.values())


def test_missing_diatheke_names_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DataError, match="apt-get install diatheke sword-text-web sword-text-sparv"):
        data.ingest_bible()


@pytest.mark.skipif(shutil.which("diatheke") is None, reason="Debian diatheke not installed")
def test_missing_module_names_the_debian_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "MODULES", {"en": "noSuchModule", "es": "noSuchModule"})
    with pytest.raises(DataError, match="noSuchModule gave 0 verses.*sword-text-sparv"):
        data.ingest_bible()


def _write_raw(raw: Path, n_pairs: int = 400) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    dates = data.random_dates(1000, 3)
    (raw / data.DATES_FILE).write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in dates))
    words = ["cat", "dog", "house", "river", "king", "bread", "water", "light"]
    es = {"cat": "gato", "dog": "perro", "house": "casa", "river": "río", "king": "rey", "bread": "pan",
          "water": "agua", "light": "luz"}
    lines = []
    for i in range(n_pairs):
        a, b = words[i % 8], words[(i // 8) % 8]
        lines.append(f"Ref {i}:1\tthe {a} and the {b}.\tel {es[a]} y el {es[b]}.")
    lines.append("Ref long:1\t" + " ".join(["word"] * 30) + "\tpalabra")
    (raw / data.EN_ES_FILE).write_text("ref\ten\tes\n" + "\n".join(lines) + "\n")


def test_prepare_dates_splits_and_vocab(tmp_path: Path) -> None:
    _write_raw(tmp_path / "raw")
    info = data.prepare("dates", {"split": [600, 200, 200]}, tmp_path / "raw", tmp_path / "p", 42)
    assert info["counts"] == {"train": 600, "val": 200, "test": 200}
    assert read_json(tmp_path / "p" / "info.json") == info
    assert info["tgt_chars"] == "-0123456789" and info["max_tgt_len"] == 10
    codec = data.Codec(info)
    train = data.load_split(tmp_path / "p", "train")
    assert codec.decode_target(train["tgt"][0]) == train["target"][0]
    assert codec.unknown_chars("April 2, 2019?") == ["?"]
    sources = {s for split in data.SPLITS for s in data.load_split(tmp_path / "p", split)["source"]}
    assert len(sources) == 1000  # disjoint splits, nothing lost
    again = data.prepare("dates", {"split": [600, 200, 200]}, tmp_path / "raw", tmp_path / "q", 42)
    assert again == info and (tmp_path / "q" / "train.parquet").read_bytes() == (tmp_path / "p" / "train.parquet").read_bytes()


def test_prepare_en_es_filters_and_tokenizes_on_train_only(tmp_path: Path) -> None:
    _write_raw(tmp_path / "raw")
    # test_books []: the synthetic refs are no real book (the held-out books have their own test)
    params = {"val_size": 50, "test_size": 50, "vocab_size": 80, "max_words": 20, "test_books": []}
    info = data.prepare("en-es", params, tmp_path / "raw", tmp_path / "p", 42)
    assert sum(info["counts"].values()) == 400  # the 30-word pair is filtered out
    codec = data.Codec(info)  # rebuilt from info alone, as a served model dir does
    test = data.load_split(tmp_path / "p", "test")
    for text, ids in zip(test["target"][:5], test["tgt"][:5]):
        assert codec.decode_target(ids) == text
    assert codec.tgt_tok.token_to_id("<pad>") == data.PAD and codec.tgt_tok.token_to_id("</s>") == data.EOS
    # the tokenizer learns from the training split only: every learned token occurs in it
    rows = (tmp_path / "raw" / data.EN_ES_FILE).read_text().splitlines()
    rows[1:31] = [f"Ref z{i}\tthe zyzzyva.\tel zyzzyva." for i in range(30)]
    (tmp_path / "raw" / data.EN_ES_FILE).write_text("\n".join(rows) + "\n")
    info = data.prepare("en-es", {**params, "vocab_size": 200}, tmp_path / "raw", tmp_path / "p2", 42)
    train_text = " " + " ".join(data.load_split(tmp_path / "p2", "train")["source"])
    held_out = " ".join(t for s in ("val", "test") for t in data.load_split(tmp_path / "p2", s)["source"])
    assert "zyzzyva" in held_out
    vocab = data.Codec(info).src_tok.get_vocab()
    assert ("▁zyzzyva" in vocab) == ("zyzzyva" in train_text)
    assert all(tok.replace("▁", " ") in train_text for tok in vocab if tok not in data.SPECIALS)


def test_bad_params_and_bad_raw_files_name_the_problem(tmp_path: Path) -> None:
    _write_raw(tmp_path / "raw")
    with pytest.raises(ConfigError, match=r"families.translator.en-es.prepare: vocab_sizee"):
        data.prepare("en-es", {"vocab_sizee": 10}, tmp_path / "raw", tmp_path / "p", 42)
    with pytest.raises(ConfigError, match=r"prepare.split"):
        data.prepare("dates", {"split": [900, 200, 200]}, tmp_path / "raw", tmp_path / "p", 42)
    (tmp_path / "raw" / data.DATES_FILE).write_text("src\ttgt\nx\ty\n")
    with pytest.raises(DataError, match=r"dates.tsv: header"):
        data.prepare("dates", {}, tmp_path / "raw", tmp_path / "p", 42)
    (tmp_path / "raw" / data.DATES_FILE).write_text("source\ttarget\nApril 2, 2019\t\n")
    with pytest.raises(DataError, match=r"dates.tsv: line 2"):
        data.prepare("dates", {}, tmp_path / "raw", tmp_path / "p", 42)
    with pytest.raises(DataError, match="not found"):
        data.prepare("dates", {}, tmp_path / "nowhere", tmp_path / "p", 42)
