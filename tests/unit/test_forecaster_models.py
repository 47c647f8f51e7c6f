"""The forecaster zoo: each model's own hparams, shapes for every model and head, causality,
iterated forecasts, baselines, and that every hparams key the params files use stays valid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components import config
from components.config import ConfigError
from components.tune import hparams_from_trial, representative_samples
from families.forecaster import FAMILY, baselines, models

INFO = {"features": ["value"], "horizon": 10, "seq_len": 50}
SEQUENCE_MODELS = [m for m in models.MODELS if m != "linear"]


def hp(**raw) -> dict:
    return FAMILY.validate_hparams(raw)


@pytest.mark.parametrize("name", SEQUENCE_MODELS)
@pytest.mark.parametrize("head", ["seq2seq", "seq2vec"])
def test_every_model_and_head_has_the_right_shape(name: str, head: str) -> None:
    torch.manual_seed(0)
    model = models.build(hp(model=name, head=head, hidden=8, layers=2), INFO)
    x = torch.randn(3, 50, 1)
    out = model(x)
    if head == "seq2vec":
        assert out.shape == (3, 10)
    else:
        assert out.shape == (3, len(model.step_index(50)), 10)
    assert models.forecast(model, x).shape == (3, 10)


def test_linear_is_seq2vec_by_construction_and_takes_no_head() -> None:
    """A sweep's shared `head: seq2seq` belongs to the sequence models: dropped for linear, so
    linear can compete in the same sweep (vic_elec)."""
    assert "head" not in hp(model="linear", head="seq2seq")
    assert models.build(hp(model="linear", head="seq2seq"), INFO)(torch.randn(2, 50, 1)).shape == (2, 10)


def test_each_model_keeps_only_its_own_keys() -> None:
    shared = {"head": "seq2seq", "layers": 2, "batch_size": 64, "hidden": 8, "kernel_size": 3}
    assert set(hp(model="wavenet", **shared)) == {"model", "head", "lr", "batch_size", "clip_norm", "hidden", "dropout",
                                                  "kernel_size", "dilations"}
    gru = hp(model="gru", **shared)
    assert "kernel_size" not in gru and "dilations" not in gru and gru["layers"] == 2 and gru["batch_size"] == 64
    assert set(hp(model="linear", hidden=8, dropout=0.1)) == {"model", "lr", "batch_size", "clip_norm"}


def test_build_reads_a_model_dir_written_with_the_old_shared_hparams() -> None:
    """Model dirs written when every forecaster validated one bag of knobs still build the same module."""
    old_bag = {"model": "wavenet", "head": "seq2seq", "hidden": 8, "layers": 2, "dropout": 0.0, "lr": 1e-3,
               "batch_size": 32, "clip_norm": None, "kernel_size": 2, "dilations": [1, 2, 4, 8, 1, 2, 4, 8]}
    torch.manual_seed(0)
    old = models.build(old_bag, INFO)
    torch.manual_seed(0)
    new = models.build(hp(model="wavenet", hidden=8), INFO)
    assert old.state_dict().keys() == new.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values()))


def test_conv_gru_targets_every_second_step_from_the_fourth() -> None:
    model = models.build(hp(model="conv_gru", hidden=4), INFO)
    idx = model.step_index(50)
    assert idx.tolist() == list(range(3, 50, 2))
    assert model(torch.randn(2, 50, 1)).shape[1] == len(idx)


def test_wavenet_is_causal() -> None:
    torch.manual_seed(0)
    model = models.build(hp(model="wavenet", hidden=8), INFO).eval()
    x = torch.randn(1, 50, 1)
    y = x.clone()
    y[:, 30:] += 5.0  # change only the future of step 29
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :30], model(y)[:, :30])
        assert not torch.allclose(model(x)[:, 30:], model(y)[:, 30:])


def test_iterated_forecast_feeds_predictions_back() -> None:
    torch.manual_seed(0)
    model = models.build(hp(model="gru", hidden=4), {**INFO, "horizon": 1}).eval()
    x = torch.randn(2, 50, 1)
    with torch.no_grad():
        out = models.forecast_iterative(model, x, 3)
        first = models.forecast(model, x)[:, :1]
        second = models.forecast(model, torch.cat([x, first[:, :, None]], dim=1))[:, :1]
    assert out.shape == (2, 3)
    assert torch.allclose(out[:, :2], torch.cat([first, second], dim=1))
    with pytest.raises(ValueError, match="univariate"):
        models.forecast_iterative(model, torch.randn(2, 50, 2), 3)


def test_baselines() -> None:
    x = np.arange(20, dtype=np.float32).reshape(1, 20, 1)
    assert baselines.naive(x, 3).tolist() == [[19, 19, 19]]
    # period 7: forecast day h repeats the value one week before it
    assert baselines.seasonal_naive(x, 9, 7).tolist() == [[13, 14, 15, 16, 17, 18, 19, 13, 14]]


def test_hparams_typos_and_ranges_are_named() -> None:
    with pytest.raises(ConfigError, match="hiden: no forecaster model takes this key"):
        hp(model="gru", hiden=3)
    with pytest.raises(ConfigError, match=r"\(gru\): dropout: Input should be less than 1"):
        hp(model="gru", dropout=1.5)
    with pytest.raises(ConfigError, match="model: unknown model 'transformer'"):
        hp(model="transformer")
    with pytest.raises(ConfigError, match="unknown model 'transformer'"):
        models.build({"model": "transformer"}, INFO)


@pytest.mark.parametrize("profile", [None, "tiny", "full", "gpu", "cluster"])
def test_params_hparams_and_search_spaces_stay_valid(profile: str | None) -> None:
    """Every forecaster task's tune and train hparams, with each candidate model at its search
    space's extremes (params.yaml and the profiles may not be edited to fit the zoo)."""
    params = config.load(profile=profile)
    for task in FAMILY.tasks:
        tp = params.task("forecaster", task)
        for sample in representative_samples(tp.tune.models, tp.tune.search_space):
            for base in (tp.tune.hparams, tp.train.hparams):  # a trial's base, the final training's
                validated = FAMILY.validate_hparams(hparams_from_trial(sample, dict(base)), task)
                models.build(validated, {"features": ["a", "b"], "horizon": 3, "seq_len": 20})


def test_every_default_search_space_validates() -> None:
    for name, spec in models.MODELS.items():
        space = {name: {k: config.SpaceSpec(**v) for k, v in spec.space.items()}}
        for sample in representative_samples([name], space):
            FAMILY.validate_hparams(hparams_from_trial(sample, {}))


# ----------------------------------------------------------------------------- recurrent dropout
RECURRENT_CELLS = ["rnn", "lstm", "gru"]
TORCH_RNN = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


@pytest.mark.parametrize("name", RECURRENT_CELLS)
def test_recurrent_dropout_zero_builds_todays_module_bit_for_bit(name: str) -> None:
    """Rate 0 (and a config without the key: model dirs written before it) builds what the code
    built before recurrent dropout: the same two modules, drawn in the same order from the same
    seed, so old weights.pt files load and forecast the same numbers."""
    torch.manual_seed(0)
    rnn = TORCH_RNN[name](1, 8, num_layers=2, batch_first=True, dropout=0.0)
    out = torch.nn.Linear(8, 10)
    old_keys = [f"rnn.{k}" for k in rnn.state_dict()] + [f"out.{k}" for k in out.state_dict()]
    x = torch.randn(3, 50, 1)
    with torch.no_grad():
        expected = out(rnn(x)[0])
    old_config = {"model": name, "head": "seq2seq", "hidden": 8, "layers": 2, "dropout": 0.0, "lr": 1e-3,
                  "batch_size": 32, "clip_norm": None}  # no recurrent_dropout key
    for hparams in (old_config, hp(model=name, hidden=8, layers=2), hp(model=name, hidden=8, recurrent_dropout=0.0)):
        torch.manual_seed(0)
        model = models.build(hparams, INFO)
        assert list(model.state_dict()) == old_keys
        assert all(torch.equal(model.state_dict()[f"rnn.{k}"], v) for k, v in rnn.state_dict().items())
        for mode in (model.eval(), model.train()):  # no dropout at rate 0 in either mode
            with torch.no_grad():
                assert torch.equal(mode(x), expected)


@pytest.mark.parametrize("name", RECURRENT_CELLS)
def test_recurrent_dropout_keeps_the_state_dict_and_eval_is_the_fused_module(name: str) -> None:
    """p > 0 adds no parameter: a rate-0.3 model loads a rate-0 model's weights, and in eval mode
    (no dropout) forecasts exactly what the rate-0 model does, every call."""
    torch.manual_seed(0)
    plain = models.build(hp(model=name, hidden=8, layers=2), INFO).eval()
    dropped = models.build(hp(model=name, hidden=8, layers=2, recurrent_dropout=0.3), INFO)
    dropped.load_state_dict(plain.state_dict())
    dropped.eval()
    x = torch.randn(4, 50, 1)
    with torch.no_grad():
        assert torch.equal(dropped(x), plain(x))
        assert torch.equal(dropped(x), dropped(x))


@pytest.mark.parametrize("name", RECURRENT_CELLS)
def test_the_step_loop_with_no_units_dropped_is_the_fused_module(name: str) -> None:
    """With all-ones masks the hand-written recurrence computes nn.RNN / nn.LSTM / nn.GRU's
    function (PyTorch's gate order and equations), so dropout is the only difference in training."""
    torch.manual_seed(0)
    rnn = TORCH_RNN[name](3, 6, num_layers=2, batch_first=True)
    x = torch.randn(4, 20, 3)
    with torch.no_grad():
        loop = models.variational_recurrence(rnn, x, torch.ones(2, 4, 6))
        assert loop.shape == (4, 20, 6)
        assert torch.allclose(loop, rnn(x)[0], atol=1e-6)


@pytest.mark.parametrize("name", RECURRENT_CELLS)
def test_a_dropped_unit_stays_dropped_at_every_step(name: str) -> None:
    """The mask is per sequence, not per step: if unit j of sequence 0 is dropped, h_{t-1}[j] never
    reaches W_hh, so changing W_hh's column j changes no step of that sequence's output (a mask
    drawn anew each step would let it through at some step); the other sequence, which keeps j,
    does change."""
    torch.manual_seed(0)
    rnn = TORCH_RNN[name](2, 5, num_layers=1, batch_first=True)
    x = torch.randn(2, 30, 2)
    masks = torch.ones(1, 2, 5)
    masks[0, 0, 3] = 0.0  # sequence 0 drops unit 3, sequence 1 keeps it
    with torch.no_grad():
        before = models.variational_recurrence(rnn, x, masks)
        rnn.weight_hh_l0[:, 3] += 1.0
        after = models.variational_recurrence(rnn, x, masks)
    assert torch.equal(before[0], after[0])
    assert not torch.allclose(before[1], after[1])


def test_the_gru_carry_sees_the_unmasked_state() -> None:
    """Keras masks h_{t-1} only inside the recurrent products; the GRU's carry z * h_{t-1} keeps the
    unmasked state. With W_hh = 0 the mask has nothing to act on, so the loop must equal the
    unmasked GRU (nn.GRUCell fed a masked h would shrink the carried state instead)."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(2, 4, batch_first=True)
    with torch.no_grad():
        gru.weight_hh_l0.zero_()
        x = torch.randn(3, 15, 2)
        masks = torch.zeros(1, 3, 4)  # every unit dropped
        assert torch.allclose(models.variational_recurrence(gru, x, masks), gru(x)[0], atol=1e-6)


def test_train_mode_draws_one_mask_per_sequence_and_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """In training, each forward draws the masks once (layers, batch, hidden) before the time loop;
    the same seed gives the same forecast, another seed another; eval draws none."""
    calls = []
    real = models.recurrent_masks

    def counting(x, layers, hidden, p):
        masks = real(x, layers, hidden, p)
        calls.append(tuple(masks.shape))
        return masks

    monkeypatch.setattr(models, "recurrent_masks", counting)
    torch.manual_seed(0)
    model = models.build(hp(model="lstm", hidden=8, layers=2, recurrent_dropout=0.5), INFO).train()
    x = torch.randn(4, 50, 1)
    outs = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            outs.append(model(x))
    assert calls == [(2, 4, 8)] * 3
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2])
    model.eval()
    with torch.no_grad():
        model(x)
    assert len(calls) == 3


def test_recurrent_masks_are_inverted_dropout() -> None:
    torch.manual_seed(0)
    masks = models.recurrent_masks(torch.zeros(2000, 5, 1), 2, 16, 0.25)
    assert masks.shape == (2, 2000, 16)
    assert masks.unique().tolist() == pytest.approx([0.0, 1 / 0.75])
    assert abs(float((masks == 0).float().mean()) - 0.25) < 0.01


@pytest.mark.parametrize("name", RECURRENT_CELLS)
@pytest.mark.parametrize("head", ["seq2seq", "seq2vec"])
def test_recurrent_dropout_shapes_and_it_trains(name: str, head: str) -> None:
    """Shapes of both heads in train and eval mode, and a few Adam steps on one tiny batch cut the
    loss (the gradient flows through the step loop to every weight)."""
    torch.manual_seed(0)
    model = models.build(hp(model=name, head=head, hidden=8, layers=2, recurrent_dropout=0.2, lr=1e-2), INFO)
    x = torch.randn(8, 50, 1)
    target = x[:, -10:, 0] if head == "seq2vec" else x[:, :, :1].repeat(1, 1, 10)
    shape = (8, 10) if head == "seq2vec" else (8, 50, 10)
    assert model.eval()(x).shape == shape
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        out = model(x)
        assert out.shape == shape
        loss = torch.nn.functional.mse_loss(out, target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.rnn.parameters())
    with torch.no_grad():
        assert torch.nn.functional.mse_loss(model.eval()(x), target).item() < 0.7 * losses[0]


@pytest.mark.parametrize("name", ["ln_rnn", "conv_gru"])
def test_recurrent_dropout_is_refused_where_there_is_no_step_loop(name: str) -> None:
    with pytest.raises(ConfigError, match="recurrent_dropout is supported by rnn, lstm and gru"):
        models.build(hp(model=name, hidden=8, recurrent_dropout=0.2), INFO)
    models.build(hp(model=name, hidden=8, recurrent_dropout=0.0), INFO)  # rate 0 is fine


def test_recurrent_dropout_range_is_validated() -> None:
    with pytest.raises(ConfigError, match="recurrent_dropout"):
        hp(model="gru", recurrent_dropout=1.0)
