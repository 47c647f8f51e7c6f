"""Translator models and decoders: masks, attention, beam search vs greedy; the zoo: per-model
hparams, their errors, and that every params/profiles key is known."""

from __future__ import annotations

import glob
from pathlib import Path

import pytest
import torch
import yaml

from components.config import ConfigError
from families.translator import FAMILY, models
from families.translator.data import EOS, PAD
from families.translator.decode import beam_search, greedy_decode

REPO = Path(__file__).resolve().parents[2]
INFO = {"src_vocab": 20, "tgt_vocab": 15, "max_src_len": 10, "max_tgt_len": 8}
VARIANTS = {
    "seq2seq-gru": {"model": "seq2seq"},
    "seq2seq-bilstm": {"model": "seq2seq", "cell": "lstm", "bidirectional": True, "layers": 2},
    "luong": {"model": "attention", "attention": "luong", "bidirectional": True},
    "bahdanau-lstm": {"model": "attention", "attention": "bahdanau", "cell": "lstm"},
    "transformer": {"model": "transformer", "heads": 2, "layers": 2, "ff_dim": 32},
}


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    hp = FAMILY.validate_hparams({"emb_dim": 8, "hidden": 16, **VARIANTS[name]})
    return models.build(hp, INFO).eval()


def batch() -> torch.Tensor:
    """Two sources: a short one (padded) and a long one."""
    return torch.tensor([[5, 6, 7, PAD, PAD, PAD], [5, 6, 8, 9, 10, 11]])


@pytest.mark.parametrize("name", VARIANTS)
def test_pads_change_nothing(name: str) -> None:
    model = build(name)
    src = batch()
    tgt = torch.tensor([[1, 5, 6, PAD], [1, 7, 8, 9]])
    with torch.no_grad():
        both = model(src, tgt)
        alone = model(src[:1, :3], tgt[:1, :3])
    assert torch.allclose(both[0, :3], alone[0], atol=1e-5)
    with torch.no_grad():
        g_both = greedy_decode(model, src, 6)[0]
        g_alone = greedy_decode(model, src[:1, :3], 6)[0]
    assert g_both.tokens == g_alone.tokens and g_both.logprob == pytest.approx(g_alone.logprob, abs=1e-4)


@pytest.mark.parametrize("name", [n for n in VARIANTS if n.startswith(("luong", "bahdanau", "transformer"))])
def test_attention_rows_are_distributions_over_real_tokens(name: str) -> None:
    model = build(name)
    hyps = greedy_decode(model, batch(), 5, attention=True)
    for hyp, n_real in zip(hyps, (3, 6)):
        att = torch.tensor(hyp.attention)
        steps = len(hyp.tokens) + (1 if len(att) > len(hyp.tokens) else 0)
        assert att.shape == (steps, 6)
        assert torch.allclose(att.sum(1), torch.ones(steps), atol=1e-5)
        assert (att[:, n_real:] == 0).all()


def test_models_without_attention_return_none() -> None:
    assert greedy_decode(build("seq2seq-gru"), batch(), 4, attention=True)[0].attention is None


@pytest.mark.parametrize("name", VARIANTS)
def test_beam_of_one_is_greedy(name: str) -> None:
    model = build(name, seed=3)
    src = batch()
    greedy = greedy_decode(model, src, 7)
    beam = beam_search(model, src, 1, 7)
    for g, b in zip(greedy, beam):
        assert len(b) == 1
        assert b[0].tokens == g.tokens
        assert b[0].logprob == pytest.approx(g.logprob, abs=1e-4)


@pytest.mark.parametrize("name", ["luong", "transformer"])
def test_beam_n_best_is_sorted_distinct_and_scored(name: str) -> None:
    model = build(name, seed=1)
    src = batch()
    nbest = beam_search(model, src, 4, 7, attention=True)
    greedy = greedy_decode(model, src, 7)
    for hyps, g in zip(nbest, greedy):
        assert len(hyps) == 4
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h.tokens) for h in hyps}) == 4
        for h in hyps:
            assert EOS not in h.tokens and h.logprob <= 0
            assert h.score == pytest.approx(h.logprob / (len(h.tokens) + (len(h.attention) > len(h.tokens))), rel=1e-5)
            # the reported log-prob is the model's: re-score the hypothesis with teacher forcing
            tgt = torch.tensor([[1] + h.tokens])
            out = torch.tensor(h.tokens + ([EOS] if len(h.attention) > len(h.tokens) else []))
            row = 0 if g is greedy[0] else 1
            length = int((src[row] != PAD).sum())
            with torch.no_grad():
                lp = model(src[row : row + 1, :length], tgt[:, : len(out)]).log_softmax(-1)[0]
            assert float(lp.gather(1, out[:, None]).sum()) == pytest.approx(h.logprob, abs=1e-4)


def test_sinusoidal_encoding() -> None:
    pe = models.sinusoidal_encoding(50, 16)
    assert pe.shape == (50, 16)
    assert torch.allclose(pe[0, 0::2], torch.zeros(8)) and torch.allclose(pe[0, 1::2], torch.ones(8))
    assert pe.abs().max() <= 1


def test_bad_hparams_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"translator hparams: model: unknown model 'rnn'"):
        FAMILY.validate_hparams({"model": "rnn"})
    with pytest.raises(ConfigError, match=r"translator hparams: hiden: no translator model takes this key"):
        FAMILY.validate_hparams({"model": "seq2seq", "hiden": 3})
    with pytest.raises(ConfigError, match=r"translator hparams \(transformer\): heads: .*hidden \(30\) must be "
                                          r"divisible by heads \(4\)"):
        FAMILY.validate_hparams({"model": "transformer", "hidden": 30, "heads": 4})
    with pytest.raises(ConfigError, match=r"heads: .*hidden \(128\) must be divisible by heads \(3\)"):
        FAMILY.validate_hparams({"model": "transformer", "heads": 3})  # against the default hidden
    with pytest.raises(ConfigError, match=r"translator hparams \(attention\): dropout"):
        FAMILY.validate_hparams({"model": "attention", "dropout": 1.5})
    with pytest.raises(ConfigError, match=r"attention: Input should be 'luong' or 'bahdanau'"):
        FAMILY.validate_hparams({"model": "attention", "attention": "dot"})


def test_each_model_keeps_only_its_own_hparams() -> None:
    shared = {"attention": "bahdanau", "cell": "lstm", "emb_dim": 8, "heads": 2, "ff_dim": 32, "hidden": 16}
    s2s = FAMILY.validate_hparams({"model": "seq2seq", **shared})
    att = FAMILY.validate_hparams({"model": "attention", **shared})
    tr = FAMILY.validate_hparams({"model": "transformer", **shared})
    assert "attention" not in s2s and "heads" not in s2s and s2s["cell"] == "lstm"
    assert att["attention"] == "bahdanau" and "ff_dim" not in att
    assert "cell" not in tr and "emb_dim" not in tr and tr["heads"] == 2
    for hp in (s2s, att, tr):  # the training knobs every model takes, with the defaults they always had
        assert {k: hp[k] for k in ("lr", "batch_size", "clip_norm", "label_smoothing", "val_batch_size")} == {
            "lr": 1e-3, "batch_size": 32, "clip_norm": 1.0, "label_smoothing": 0.0, "val_batch_size": 500}
    kinds = {name: type(models.build(hp, INFO)).__name__ for name, hp in (("s", s2s), ("a", att), ("t", tr))}
    assert kinds == {"s": "RNNSeq2Seq", "a": "RNNSeq2Seq", "t": "TransformerSeq2Seq"}
    assert models.build(s2s, INFO).attn is None and type(models.build(att, INFO).attn).__name__ == "BahdanauAttention"


def test_build_ignores_other_models_keys_of_an_old_config() -> None:
    """A model dir written before the per-model zoo holds every translator key: it still builds the same module."""
    new = FAMILY.validate_hparams({"model": "seq2seq", "hidden": 16, "emb_dim": 8})
    old = {**new, "attention": "luong", "heads": 4, "ff_dim": 256}
    torch.manual_seed(0)
    a = models.build(new, INFO).state_dict()
    torch.manual_seed(0)
    b = models.build(old, INFO).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_params_and_profiles_key_is_known() -> None:
    """The zoo must accept every translator key params.yaml and the profiles set (hparams and search spaces)."""
    for path in [REPO / "params.yaml", *sorted(glob.glob(str(REPO / "profiles" / "*.yaml")))]:
        tasks = (yaml.safe_load(Path(path).read_text()) or {}).get("families") or {}
        for task, tp in (tasks.get("translator") or {}).items():
            hparams = (tp.get("train") or {}).get("hparams") or {}
            tune = tp.get("tune") or {}
            able = [m for m, spec in FAMILY.models.items() if not spec.tasks or task in spec.tasks]
            for model in tune.get("models", []) or able:
                base = FAMILY.validate_hparams({**hparams, "model": model}, task)
                for key, spec in (tune.get("search_space") or {}).get(model, {}).items():
                    assert key in FAMILY.models[model].hparams.model_fields, (path, task, model, key)
                    ((_, values),) = spec.items()
                    for value in values:
                        FAMILY.validate_hparams({**base, key: value}, task)


def test_default_search_spaces_are_valid() -> None:
    for name, spec in FAMILY.models.items():
        assert spec.space, name
        for key, dist in spec.space.items():
            ((_, values),) = dist.items()
            for value in values:
                FAMILY.validate_hparams({"model": name, key: value})
