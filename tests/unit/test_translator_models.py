"""Translator models and decoders: masks, attention, beam search vs greedy, hparam errors."""

from __future__ import annotations

import pytest
import torch

from components.config import ConfigError
from families.translator import models
from families.translator.data import EOS, PAD

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
    hp = models.validate_hparams({"emb_dim": 8, "hidden": 16, **VARIANTS[name]})
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
        g_both = models.greedy_decode(model, src, 6)[0]
        g_alone = models.greedy_decode(model, src[:1, :3], 6)[0]
    assert g_both.tokens == g_alone.tokens and g_both.logprob == pytest.approx(g_alone.logprob, abs=1e-4)


@pytest.mark.parametrize("name", [n for n in VARIANTS if n.startswith(("luong", "bahdanau", "transformer"))])
def test_attention_rows_are_distributions_over_real_tokens(name: str) -> None:
    model = build(name)
    hyps = models.greedy_decode(model, batch(), 5, attention=True)
    for hyp, n_real in zip(hyps, (3, 6)):
        att = torch.tensor(hyp.attention)
        steps = len(hyp.tokens) + (1 if len(att) > len(hyp.tokens) else 0)
        assert att.shape == (steps, 6)
        assert torch.allclose(att.sum(1), torch.ones(steps), atol=1e-5)
        assert (att[:, n_real:] == 0).all()


def test_models_without_attention_return_none() -> None:
    assert models.greedy_decode(build("seq2seq-gru"), batch(), 4, attention=True)[0].attention is None


@pytest.mark.parametrize("name", VARIANTS)
def test_beam_of_one_is_greedy(name: str) -> None:
    model = build(name, seed=3)
    src = batch()
    greedy = models.greedy_decode(model, src, 7)
    beam = models.beam_search(model, src, 1, 7)
    for g, b in zip(greedy, beam):
        assert len(b) == 1
        assert b[0].tokens == g.tokens
        assert b[0].logprob == pytest.approx(g.logprob, abs=1e-4)


@pytest.mark.parametrize("name", ["luong", "transformer"])
def test_beam_n_best_is_sorted_distinct_and_scored(name: str) -> None:
    model = build(name, seed=1)
    src = batch()
    nbest = models.beam_search(model, src, 4, 7, attention=True)
    greedy = models.greedy_decode(model, src, 7)
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
    with pytest.raises(ConfigError, match=r"translator hparams: model"):
        models.validate_hparams({"model": "rnn"})
    with pytest.raises(ConfigError, match=r"translator hparams: hiden"):
        models.validate_hparams({"model": "seq2seq", "hiden": 3})
    with pytest.raises(ConfigError, match=r"translator hparams: heads"):
        models.validate_hparams({"model": "transformer", "hidden": 30, "heads": 4})
    with pytest.raises(ConfigError, match=r"translator hparams: dropout"):
        models.validate_hparams({"model": "attention", "dropout": 1.5})
