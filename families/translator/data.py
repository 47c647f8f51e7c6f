"""Translator data: raw ingest (dates generator, Bible verse pairs) and prepare (splits + codecs).

Raw files under data/translator/ (byte-identical on every run):
- dates.tsv: `source<TAB>target`, 14,000 random dates 1000-01-01..9999-12-31 in several human
  formats ("April 22, 2019", "22 Apr 2019", ...) -> ISO "2019-04-22" (book ch. 16, exercise 9).
- en-es.tsv: `ref<TAB>en<TAB>es`, every verse present in both the World English Bible
  (SWORD module engWEB2015eb) and the Reina-Valera 1909 (spaRV1909eb), read with Debian's
  `diatheke`. Psalm verse 1 is dropped: the Spanish module prints the psalm title inside it.

Prepared splits (`train|val|test.parquet`): `source`, `target` (strings) and `src`, `tgt`
(token ids, int32, no BOS/EOS). en-es has two test sets: `test`, verses drawn at random from the
pool (what published Bible-only numbers are comparable to; a neighbouring verse of the same passage
may be in train), and `test_books.parquet`, every short verse of the whole books named by the
prepare param `test_books`, which no other split holds (no passage leaks into training). The
optional `shared_vocab` trains one tokenizer on both sides. `info.json` carries everything needed
to tokenise and detokenise (char vocabularies, or the tokenizers as `Tokenizer.to_str()`),
because a served model dir holds only config.json (which embeds info) + weights.pt.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import re
import shutil
import subprocess
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator

from components.config import ConfigError, validate_model
from components.data import SPLITS, DataError, read_split, write_json, write_split
from families.translator import chars

log = logging.getLogger(__name__)

DATES_FILE = "dates.tsv"
EN_ES_FILE = "en-es.tsv"
N_DATES = 14_000
PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
# Each format renders (year, month, day); month names are hard-coded (strftime's %B follows the locale).
DATE_FORMATS = (
    lambda y, m, d: f"{MONTHS[m - 1]} {d:02d}, {y}",   # April 22, 2019 (the book's format)
    lambda y, m, d: f"{MONTHS[m - 1]} {d}, {y}",       # April 2, 2019
    lambda y, m, d: f"{d} {MONTHS[m - 1]} {y}",        # 2 April 2019
    lambda y, m, d: f"{MONTHS[m - 1][:3]} {d:02d} {y}",  # Apr 22 2019
    lambda y, m, d: f"{MONTHS[m - 1][:3]} {d}, {y}",   # Apr 2, 2019
    lambda y, m, d: f"{d:02d} {MONTHS[m - 1][:3]} {y}",  # 02 Apr 2019
)
DEBIAN_PACKAGES = "diatheke sword-text-web sword-text-sparv"
MODULES = {"en": "engWEB2015eb", "es": "spaRV1909eb"}
BIBLE_RANGE = "Gen 1:1-Rev 22:21"
CANON = (
    "Genesis|Exodus|Leviticus|Numbers|Deuteronomy|Joshua|Judges|Ruth|I Samuel|II Samuel|I Kings|II Kings|"
    "I Chronicles|II Chronicles|Ezra|Nehemiah|Esther|Job|Psalms|Proverbs|Ecclesiastes|Song of Solomon|Isaiah|"
    "Jeremiah|Lamentations|Ezekiel|Daniel|Hosea|Joel|Amos|Obadiah|Jonah|Micah|Nahum|Habakkuk|Zephaniah|Haggai|"
    "Zechariah|Malachi|Matthew|Mark|Luke|John|Acts|Romans|I Corinthians|II Corinthians|Galatians|Ephesians|"
    "Philippians|Colossians|I Thessalonians|II Thessalonians|I Timothy|II Timothy|Titus|Philemon|Hebrews|James|"
    "I Peter|II Peter|I John|II John|III John|Jude|Revelation of John"
).split("|")
# The held-out books of en-es: one of each kind of text (history, prophecy, gospel, letter), 1,050
# verses of <= 20 words; John rather than a synoptic gospel, whose passages recur nearly word for
# word in the other two (a leak back into train).
TEST_BOOKS = ("Joshua", "Ezekiel", "John", "Romans")
TEST_BOOKS_SPLIT = "test_books"
# diatheke prints "<sticky heading text>Book C:V: <osis>"; the heading of the last section is
# repeated before every later verse, so the reference is searched for, not anchored.
_REF = re.compile(r"(?:^|\s|>)(" + "|".join(sorted(map(re.escape, CANON), key=len, reverse=True)) + r") (\d+):(\d+): ")


# ----------------------------------------------------------------------------- dates
def random_dates(n: int, seed: int) -> list[tuple[str, str]]:
    """n (human date, ISO date) pairs: uniform over 1000-01-01..9999-12-31, a random format each."""
    rng = random.Random(seed)
    lo, hi = dt.date(1000, 1, 1).toordinal(), dt.date(9999, 12, 31).toordinal()
    pairs = []
    for _ in range(n):
        d = dt.date.fromordinal(rng.randint(lo, hi))
        fmt = DATE_FORMATS[rng.randrange(len(DATE_FORMATS))]
        pairs.append((fmt(d.year, d.month, d.day), d.isoformat()))
    return pairs


# ----------------------------------------------------------------------------- bible
def osis_to_text(osis: str) -> str:
    """One verse of diatheke OSIS output -> plain text.

    A space goes between adjacent <w> elements before tags are stripped (else "Godcreated");
    Strong's numbers live in attributes (lemma="H0430") and vanish with the tags; titles
    (<title>...</title>) are dropped with their content.
    """
    osis = re.sub(r"<title\b[^>]*>.*?</title>", " ", osis)
    osis = osis.replace("</w><w", "</w> <w")
    text = re.sub(r"<[^>]+>", "", osis)
    text = unicodedata.normalize("NFC", text)
    return " ".join(text.split())


def parse_osis(output: str) -> dict[str, str]:
    """diatheke `-f OSIS` output -> {"Genesis 1:1": text}; verses of non-canonical books are skipped."""
    verses: dict[str, str] = {}
    for line in output.splitlines():
        m = _REF.search(line)
        if m is None:
            continue
        ref = f"{m.group(1)} {m.group(2)}:{m.group(3)}"
        text = osis_to_text(line[m.end():])
        if text:
            verses[ref] = text
    return verses


def join_verses(en: dict[str, str], es: dict[str, str]) -> list[tuple[str, str, str]]:
    """(ref, en, es) for every verse in both, in English canonical order; Psalm verse 1 dropped
    (the Spanish module prints the psalm's title inside it, the English one does not)."""
    out = []
    for ref, text in en.items():
        if ref in es and not re.fullmatch(r"Psalms \d+:1", ref):
            out.append((ref, text, es[ref]))
    return out


def read_module(module: str, key: str = BIBLE_RANGE) -> str:
    """Verses `key` (default: the whole canonical Bible) of one SWORD module as diatheke OSIS text."""
    if shutil.which("diatheke") is None:
        raise DataError(
            f"translator en-es: the `diatheke` command is not installed; install the Debian packages "
            f"({DEBIAN_PACKAGES}): `sudo apt-get install {DEBIAN_PACKAGES}` (or `make apt` as root)"
        )
    out = subprocess.run(["diatheke", "-b", module, "-f", "OSIS", "-k", key],
                         capture_output=True, text=True, check=False, timeout=300).stdout
    return out


def ingest_bible() -> list[tuple[str, str, str]]:
    texts = {}
    for lang, module in MODULES.items():
        verses = parse_osis(read_module(module))
        if len(verses) < 1000:
            raise DataError(
                f"translator en-es: SWORD module {module} gave {len(verses)} verses (is it installed?); install the "
                f"Debian packages ({DEBIAN_PACKAGES}): `sudo apt-get install {DEBIAN_PACKAGES}` (or `make apt` as root)"
            )
        texts[lang] = verses
    return join_verses(texts["en"], texts["es"])


def _clean_field(s: str) -> str:
    return " ".join(s.replace("\t", " ").split())


def ingest(raw_dir: Path, seed: int) -> None:
    """Write dates.tsv and en-es.tsv (deterministic bytes: fixed seed, sorted canonical order)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    dates = random_dates(N_DATES, seed)
    (raw_dir / DATES_FILE).write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in dates), encoding="utf-8")
    pairs = ingest_bible()
    lines = "".join(f"{ref}\t{_clean_field(en)}\t{_clean_field(es)}\n" for ref, en, es in pairs)
    (raw_dir / EN_ES_FILE).write_text("ref\ten\tes\n" + lines, encoding="utf-8")
    log.info("translator raw data: %d dates, %d verse pairs in %s", len(dates), len(pairs), raw_dir)


def read_tsv(path: Path, columns: tuple[str, ...]) -> list[list[str]]:
    """Rows of a raw TSV, checked against its header."""
    if not path.is_file():
        raise DataError(f"{path}: not found (run `make data`)")
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != columns:
        raise DataError(f"{path}: header must be {'<TAB>'.join(columns)!r}, got {lines[0] if lines else ''!r}")
    rows = []
    for i, line in enumerate(lines[1:], start=2):
        row = line.split("\t")
        if len(row) != len(columns) or not all(row):
            raise DataError(f"{path}: line {i}: expected {len(columns)} non-empty columns {columns}")
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


# ----------------------------------------------------------------------------- prepare params
class DatesPrepare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    split: tuple[int, int, int] = (10_000, 2_000, 2_000)


class EnEsPrepare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_words: int = Field(20, gt=0, le=200)
    val_size: int = Field(600, gt=0)
    test_size: int = Field(1000, gt=0)
    max_pairs: int | None = Field(None, gt=0, description="keep at most this many pairs after filtering (tiny runs)")
    vocab_size: int = Field(2000, ge=64, le=50_000)
    tokenizer: str = Field("bpe", pattern="^(bpe|unigram)$")
    shared_vocab: bool = Field(False, description="one subword vocabulary trained on the English and Spanish training "
                                                  "text together (lets a Transformer share its embeddings)")
    test_books: list[str] = Field(list(TEST_BOOKS), description="whole books held out as the second test set "
                                                                "(test_books.parquet); [] for none")

    @field_validator("test_books")
    @classmethod
    def _canonical_books(cls, books: list[str]) -> list[str]:
        unknown = [b for b in books if b not in CANON]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not a book name of the canon (one of {', '.join(CANON)})")
        return books


PREPARE_PARAMS = {"dates": DatesPrepare, "en-es": EnEsPrepare}


def _prepare_params(task: str, raw: dict[str, Any]) -> BaseModel:
    if task not in PREPARE_PARAMS:
        raise ConfigError(f"translator: unknown task {task!r} (known: {sorted(PREPARE_PARAMS)})")
    return validate_model(PREPARE_PARAMS[task], raw, f"params: families.translator.{task}.prepare")


# ----------------------------------------------------------------------------- codecs
class Codec:
    """Text <-> ids for one task, rebuilt from `info` alone (what a served model dir carries)."""

    def __init__(self, info: dict[str, Any]) -> None:
        self.kind = info["codec"]
        if self.kind == "chars":
            self.src_chars: str = info["src_chars"]
            self.tgt_chars: str = info["tgt_chars"]
            self._src = {c: i + len(SPECIALS) for i, c in enumerate(self.src_chars)}
            self._tgt = {c: i + len(SPECIALS) for i, c in enumerate(self.tgt_chars)}
            self.src_vocab = len(SPECIALS) + len(self.src_chars)
            self.tgt_vocab = len(SPECIALS) + len(self.tgt_chars)
        else:
            self.src_tok = _tokenizer(info["src_tokenizer"])
            self.tgt_tok = _tokenizer(info["tgt_tokenizer"])
            self.src_vocab = self.src_tok.get_vocab_size()
            self.tgt_vocab = self.tgt_tok.get_vocab_size()

    def unknown_chars(self, text: str) -> list[str]:
        """Characters of `text` the source vocabulary cannot represent (a subword tokenizer would
        turn them into <unk>: the model has never seen them)."""
        if self.kind == "chars":
            return sorted({c for c in text if c not in self._src})
        return sorted({c for c in set(text) if not c.isspace() and UNK in self.src_tok.encode(c).ids})

    def encode_source(self, text: str) -> list[int]:
        if self.kind == "chars":
            return [self._src.get(c, UNK) for c in text]
        return self.src_tok.encode(text).ids

    def source_tokens(self, text: str) -> list[str]:
        """The source as the model sees it (attention heat-map labels)."""
        if self.kind == "chars":
            return list(text)
        return self.src_tok.encode(text).tokens

    def encode_target(self, text: str) -> list[int]:
        if self.kind == "chars":
            return [self._tgt.get(c, UNK) for c in text]
        return self.tgt_tok.encode(text).ids

    def target_tokens(self, ids: list[int]) -> list[str]:
        if self.kind == "chars":
            return [self.tgt_chars[i - len(SPECIALS)] if i >= len(SPECIALS) else SPECIALS[i] for i in ids]
        return [self.tgt_tok.id_to_token(i) for i in ids]

    def decode_target(self, ids: list[int]) -> str:
        ids = [i for i in ids if i >= len(SPECIALS)]
        if self.kind == "chars":
            return "".join(self.tgt_chars[i - len(SPECIALS)] for i in ids)
        return self.tgt_tok.decode(ids, skip_special_tokens=True)


@lru_cache(maxsize=8)
def _tokenizer(serialised: str) -> Any:
    from tokenizers import Tokenizer

    return Tokenizer.from_str(serialised)


def train_tokenizer(texts: list[str], vocab_size: int, kind: str) -> Any:
    """A subword tokenizer (HF `tokenizers`) trained on `texts` only; Metaspace so decode() restores spaces."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False)
    else:
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), unk_token="<unk>",
                                          show_progress=False)
    tok.normalizer = normalizers.NFC()
    # Metaspace marks word starts (so decode() restores the spaces); punctuation becomes its own token.
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(texts, trainer=trainer)
    for i, s in enumerate(SPECIALS):
        if tok.token_to_id(s) != i:
            raise RuntimeError(f"tokenizer put special token {s} at {tok.token_to_id(s)}, expected {i}")
    return tok


# ----------------------------------------------------------------------------- split tables
SCHEMA = pa.schema([("source", pa.string()), ("target", pa.string()),
                    ("src", pa.list_(pa.int32())), ("tgt", pa.list_(pa.int32()))])


def to_table(pairs: list[tuple[str, str]], codec: Codec) -> pa.Table:
    src = [codec.encode_source(s) for s, _ in pairs]
    tgt = [codec.encode_target(t) for _, t in pairs]
    return pa.Table.from_pydict({"source": [s for s, _ in pairs], "target": [t for _, t in pairs], "src": src, "tgt": tgt},
                                schema=SCHEMA)


def load_split(prepared_dir: Path, split: str) -> dict[str, list]:
    """{"source", "target", "src", "tgt"} columns of one split, schema-checked."""
    table = read_split(prepared_dir / f"{split}.parquet", SCHEMA)
    return {name: table.column(name).to_pylist() for name in SCHEMA.names}


# ----------------------------------------------------------------------------- prepare
def _shuffled(rows: list, seed: int) -> list:
    rows = list(rows)
    random.Random(seed).shuffle(rows)
    return rows


def prepare_dates(p: DatesPrepare, raw_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    rows = [(s, t) for s, t in read_tsv(raw_dir / DATES_FILE, ("source", "target"))]
    if sum(p.split) > len(rows) or min(p.split) <= 0:
        raise ConfigError(f"params: families.translator.dates.prepare.split: {list(p.split)} must be > 0 and sum to "
                          f"at most the {len(rows)} dates in {raw_dir / DATES_FILE}")
    rows = _shuffled(rows, seed)
    bounds = [0, p.split[0], p.split[0] + p.split[1], sum(p.split)]
    parts = {s: rows[bounds[i]:bounds[i + 1]] for i, s in enumerate(SPLITS)}
    info = {
        "task": "dates",
        "codec": "chars",
        "src_chars": "".join(sorted({c for s, _ in parts["train"] for c in s})),
        "tgt_chars": "".join(sorted({c for _, t in parts["train"] for c in t})),
    }
    return _write_splits(info, parts, out_dir)


def book_of(ref: str) -> str:
    """"I John 1:9" -> "I John"."""
    return ref.rsplit(" ", 1)[0]


def prepare_en_es(p: EnEsPrepare, raw_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    rows = read_tsv(raw_dir / EN_ES_FILE, ("ref", "en", "es"))
    kept = [(ref, en, es) for ref, en, es in rows if len(en.split()) <= p.max_words and len(es.split()) <= p.max_words]
    held_out = set(p.test_books)
    books = [(en, es) for ref, en, es in kept if book_of(ref) in held_out]
    pool = _shuffled([(en, es) for ref, en, es in kept if book_of(ref) not in held_out], seed)
    if held_out and not books:
        raise ConfigError(f"params: families.translator.en-es.prepare.test_books: no verse of <= {p.max_words} words "
                          f"in {sorted(held_out)}")
    if p.max_pairs:
        pool = pool[:p.max_pairs]
    n_train = len(pool) - p.val_size - p.test_size
    if n_train < max(p.val_size, 100):
        raise ConfigError(f"params: families.translator.en-es.prepare: val_size + test_size = {p.val_size + p.test_size} "
                          f"leave only {n_train} of {len(pool)} pairs (<= {p.max_words} words, outside test_books) "
                          f"to train on")
    parts = {"test": pool[:p.test_size], "val": pool[p.test_size:p.test_size + p.val_size],
             "train": pool[p.test_size + p.val_size:]}
    if held_out:
        parts[TEST_BOOKS_SPLIT] = books
    train_src, train_tgt = [s for s, _ in parts["train"]], [t for _, t in parts["train"]]
    if p.shared_vocab:
        src_tok = tgt_tok = train_tokenizer(train_src + train_tgt, p.vocab_size, p.tokenizer)
    else:
        src_tok = train_tokenizer(train_src, p.vocab_size, p.tokenizer)
        tgt_tok = train_tokenizer(train_tgt, p.vocab_size, p.tokenizer)
    info = {"task": "en-es", "codec": "subword", "tokenizer": p.tokenizer, "max_words": p.max_words,
            "shared_vocab": p.shared_vocab, "test_books": list(p.test_books),
            "src_tokenizer": src_tok.to_str(), "tgt_tokenizer": tgt_tok.to_str()}
    return _write_splits(info, parts, out_dir)


def _write_splits(info: dict[str, Any], parts: dict[str, list], out_dir: Path) -> dict[str, Any]:
    codec = Codec(info)
    counts, max_src, max_tgt = {}, 0, 0
    for split in parts:
        table = to_table(parts[split], codec)
        write_split(out_dir / f"{split}.parquet", table)
        counts[split] = table.num_rows
        max_src = max(max_src, max(len(x) for x in table.column("src").to_pylist()))
        max_tgt = max(max_tgt, max(len(x) for x in table.column("tgt").to_pylist()))
    info = {**info, "counts": counts, "src_vocab": codec.src_vocab, "tgt_vocab": codec.tgt_vocab,
            "max_src_len": max_src, "max_tgt_len": max_tgt}
    return info


def prepare(task: str, raw_params: dict[str, Any], raw_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    """Raw -> train/val/test Parquet + info.json in out_dir (the caller makes out_dir atomic)."""
    if task == chars.TASK:  # the char-RNN's text: the English side of the Bible pairs
        return chars.prepare(raw_params, read_tsv(raw_dir / EN_ES_FILE, ("ref", "en", "es")), out_dir)
    p = _prepare_params(task, raw_params)
    info = prepare_dates(p, raw_dir, out_dir, seed) if task == "dates" else prepare_en_es(p, raw_dir, out_dir, seed)
    write_json(out_dir / "info.json", info)
    return info
