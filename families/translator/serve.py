"""Serving: the translate route's request/response schemas, the Predictor that answers it, and
the input example MLflow records as the model's signature."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from components.data import read_json
from components.family import RequestError
from families.translator import chars
from families.translator.data import Codec
from families.translator.decode import Hypothesis
from families.translator.evaluate import load_model, translate_ids
from families.translator.metrics import max_decode_len

MAX_TEXTS = 64
MAX_BEAM = 16


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
    def _n_best(self) -> TranslateRequest:
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
    source_tokens: list[str] | None = Field(None, description="the attention's columns: the source as the model reads it")
    output_tokens: list[str] | None = Field(None, description="the attention's rows: the tokens the model emitted")


class TranslateResponse(BaseModel):
    task: str
    model_version: str | None = None
    translations: list[Translation]


class Predictor:
    """Loads a model dir: a translator (texts in, translations with n-best, scores, attention out) or
    a char-level language model (a prompt in, its continuation out)."""

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.model, self.config = load_model(Path(model_dir))
        self.info = self.config["info"]
        self.task = self.config["task"]
        self.model_version = model_version
        # A character-level language model answers /generate; the translators /translate.
        self.generator = (chars.CharGenerator(self.model, self.config, model_version)
                          if self.config["model"] == chars.MODEL else None)
        if self.generator is not None:
            return
        self.codec = Codec(self.info)
        self.max_src = 2 * int(self.info["max_src_len"])
        self.max_len = max_decode_len(self.info)

    def generate_batch(self, reqs: list[chars.GenerateRequest]) -> list[chars.GenerateResponse]:
        """The generate route (a char-level model's): text continued from a prompt."""
        if self.generator is None:
            raise chars.not_a_char_model(self.task)
        return self.generator.generate_batch(reqs)

    def translate_batch(self, reqs: list[TranslateRequest]) -> list[TranslateResponse]:
        """The translate route. Texts of requests with the same beam width share one decoding pass."""
        if self.generator is not None:
            raise RequestError(f"task {self.task!r} is a character-level language model: POST /translator/generate")
        encoded = [self._encode(r) for r in reqs]
        groups: dict[int, list[int]] = {}
        for i, r in enumerate(reqs):
            groups.setdefault(r.beam_width, []).append(i)
        results: list[list[list[Hypothesis]] | None] = [None] * len(reqs)
        for width, idx in groups.items():
            flat = [ids for i in idx for ids in encoded[i]]
            attention = any(reqs[i].return_attention for i in idx)
            hyps = translate_ids(self.model, flat, width, self.max_len, attention)
            start = 0
            for i in idx:
                results[i] = hyps[start:start + len(encoded[i])]
                start += len(encoded[i])
        return [self._response(r, res) for r, res in zip(reqs, results)]

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

    def _response(self, req: TranslateRequest, res: list[list[Hypothesis]]) -> TranslateResponse:
        out = []
        for text, hyps in zip(req.texts, res):
            best = hyps[0]
            nbest = [NBest(text=self.codec.decode_target(h.tokens), score=h.score, logprob=h.logprob)
                     for h in hyps[:req.n_best]]
            labels = self._attention_labels(text, best) if req.return_attention and best.attention else {}
            out.append(Translation(text=nbest[0].text, score=best.score, n_best=nbest,
                                   attention=best.attention if req.return_attention else None, **labels))
        return TranslateResponse(task=req.task, model_version=self.model_version, translations=out)


    def _attention_labels(self, text: str, best: Hypothesis) -> dict[str, list[str]]:
        """Row and column labels of the attention matrix, each as long as its axis."""
        rows, cols = len(best.attention), len(best.attention[0]) if best.attention else 0
        source = self.codec.source_tokens(text.strip())[:cols]
        output = self.codec.target_tokens(best.tokens)[:rows]
        return {"source_tokens": source + ["</s>"] * (cols - len(source)),
                "output_tokens": output + ["</s>"] * (rows - len(output))}


def input_example(model_dir: Path) -> dict[str, Any]:
    """A valid request for this model dir (MLflow signature + smoke test)."""
    config = read_json(Path(model_dir) / "config.json")
    if config["model"] == chars.MODEL:
        return chars.input_example(model_dir)
    text = "April 22, 2019" if config["task"] == "dates" else "In the beginning God created the heavens and the earth."
    return {"task": config["task"], "texts": [text], "beam_width": 2, "n_best": 2, "return_attention": False}
