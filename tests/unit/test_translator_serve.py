"""Translator serving: the translate route's Predictor method (n-best, attention, batching) and
its errors; request limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from components.family import RequestError
from families.translator import FAMILY, data, serve
from quartet import api

HP = {"model": "attention", "emb_dim": 16, "hidden": 32, "batch_size": 32, "lr": 0.01}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    dates = data.random_dates(1000, 3)
    (raw / data.DATES_FILE).write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in dates))
    prepared = tmp_path_factory.mktemp("prepared")
    data.prepare("dates", {"split": [800, 100, 100]}, raw, prepared, 42)
    out = tmp_path_factory.mktemp("model")
    api.train_plain("translator", "dates", HP, prepared, 1, seed=42, out_dir=out)
    return out


def translate(predictor: serve.Predictor, **request) -> serve.TranslateResponse:
    return predictor.translate_batch([serve.TranslateRequest(**request)])[0]


def test_the_routes_name_the_predictor_methods_and_their_schemas() -> None:
    from families.translator import chars

    route, generate = FAMILY.routes
    assert (route.name, route.method, route.request, route.response) == (
        "translate", "translate_batch", serve.TranslateRequest, serve.TranslateResponse)
    assert (generate.name, generate.method, generate.request, generate.response) == (
        "generate", "generate_batch", chars.GenerateRequest, chars.GenerateResponse)
    assert FAMILY.predictor is serve.Predictor
    assert callable(getattr(serve.Predictor, route.method)) and callable(getattr(serve.Predictor, generate.method))
    assert FAMILY.route_for("dates") is route and FAMILY.route_for("en-es") is route
    assert FAMILY.route_for(chars.TASK) is generate


def test_a_translator_refuses_to_generate(model_dir) -> None:
    from families.translator import chars

    with pytest.raises(RequestError, match="not a character-level model"):
        FAMILY.predictor(model_dir).generate_batch([chars.GenerateRequest(task="dates", prompt="x")])


def test_predictor_translates_with_nbest_and_attention(model_dir) -> None:
    predictor = FAMILY.predictor(model_dir, model_version="3")
    example = serve.TranslateRequest(**serve.input_example(model_dir))
    req = serve.TranslateRequest(task="dates", texts=["April 22, 2019", "3 May 1999"], beam_width=4, n_best=3,
                                 return_attention=True)
    out = predictor.translate_batch([example, req])
    assert out[0].model_version == "3" and len(out[0].translations) == 1 and len(out[0].translations[0].n_best) == 2
    t = out[1].translations[1]
    assert len(t.n_best) == 3 and t.text == t.n_best[0].text and t.score == t.n_best[0].score
    assert [h.score for h in t.n_best] == sorted((h.score for h in t.n_best), reverse=True)
    assert len(t.attention[0]) == len("3 May 1999")
    # the heat-map's labels: one per column (the source characters) and one per row (what was emitted)
    assert t.source_tokens == list("3 May 1999") and len(t.output_tokens) == len(t.attention)
    assert "".join(tok for tok in t.output_tokens if tok not in ("</s>", "<eos>")).startswith(t.text)
    assert predictor.translate_batch([req])[0].translations[1].text == t.text  # alone == inside a batch
    plain = translate(predictor, task="dates", texts=["3 May 1999"])
    assert plain.translations[0].attention is None and len(plain.translations[0].n_best) == 1
    assert plain.translations[0].source_tokens is None and plain.translations[0].output_tokens is None


def test_predictor_rejects_bad_requests(model_dir) -> None:
    predictor = serve.Predictor(model_dir)
    cases = {
        "is empty": ["  "],
        r"outside the dates vocabulary: '\?', 'é'": ["Apré 2, 2019?"],
        "too long: 40 tokens, the limit is 36": ["1" * 40],
    }
    for message, texts in cases.items():
        with pytest.raises(RequestError, match=message):
            translate(predictor, task="dates", texts=texts)
    with pytest.raises(RequestError, match="translates task 'dates', not 'en-es'"):
        translate(predictor, task="en-es", texts=["hello"])


def test_request_limits_are_validation_errors() -> None:
    for bad, message in [
        ({"texts": []}, "at least 1"),
        ({"texts": ["x"] * 65}, "at most 64"),
        ({"texts": ["x"], "beam_width": 17}, "less than or equal to 16"),
        ({"texts": ["x"], "beam_width": 2, "n_best": 3}, r"n_best \(3\) must be <= beam_width \(2\)"),
        ({"texts": ["x"], "extra": 1}, "Extra inputs"),
        ({"texts": ["ok", "\ud800"]}, r"texts\[1\] is not valid Unicode"),
    ]:
        with pytest.raises(ValidationError, match=message):
            serve.TranslateRequest(task="dates", **bad)
