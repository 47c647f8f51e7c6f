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


def test_linear_is_seq2vec_only() -> None:
    assert hp(model="linear")["head"] == "seq2vec"  # its own default, unlike the sequence models'
    assert models.build(hp(model="linear"), INFO)(torch.randn(2, 50, 1)).shape == (2, 10)
    with pytest.raises(ConfigError, match=r"\(linear\): head: .*the linear model only has a seq2vec head"):
        hp(model="linear", head="seq2seq")


def test_each_model_keeps_only_its_own_keys() -> None:
    shared = {"head": "seq2seq", "layers": 2, "batch_size": 64, "hidden": 8, "kernel_size": 3}
    assert set(hp(model="wavenet", **shared)) == {"model", "head", "lr", "batch_size", "clip_norm", "hidden", "dropout",
                                                  "kernel_size", "dilations"}
    gru = hp(model="gru", **shared)
    assert "kernel_size" not in gru and "dilations" not in gru and gru["layers"] == 2 and gru["batch_size"] == 64
    assert set(hp(model="linear", hidden=8, dropout=0.1)) == {"model", "head", "lr", "batch_size", "clip_norm"}


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
