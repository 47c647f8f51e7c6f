"""The forecaster zoo: shapes for every model and head, causality, iterated forecasts, baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.config import ConfigError
from families.forecaster import models

INFO = {"features": ["value"], "horizon": 10, "seq_len": 50}


@pytest.mark.parametrize("name", [m for m in models.ZOO if m != "linear"])
@pytest.mark.parametrize("head", ["seq2seq", "seq2vec"])
def test_every_model_and_head_has_the_right_shape(name: str, head: str) -> None:
    torch.manual_seed(0)
    hp = models.validate_hparams({"model": name, "head": head, "hidden": 8, "layers": 2})
    model = models.build(hp, INFO)
    x = torch.randn(3, 50, 1)
    out = model(x)
    if head == "seq2vec":
        assert out.shape == (3, 10)
    else:
        assert out.shape == (3, len(model.step_index(50)), 10)
    assert models.forecast(model, x).shape == (3, 10)


def test_linear_is_seq2vec_only() -> None:
    assert models.build(models.validate_hparams({"model": "linear", "head": "seq2vec"}), INFO)(torch.randn(2, 50, 1)).shape == (2, 10)
    with pytest.raises(ConfigError, match="linear model only has a seq2vec head"):
        models.validate_hparams({"model": "linear"})


def test_conv_gru_targets_every_second_step_from_the_fourth() -> None:
    model = models.build(models.validate_hparams({"model": "conv_gru", "hidden": 4}), INFO)
    idx = model.step_index(50)
    assert idx.tolist() == list(range(3, 50, 2))
    assert model(torch.randn(2, 50, 1)).shape[1] == len(idx)


def test_wavenet_is_causal() -> None:
    torch.manual_seed(0)
    model = models.build(models.validate_hparams({"model": "wavenet", "hidden": 8}), INFO).eval()
    x = torch.randn(1, 50, 1)
    y = x.clone()
    y[:, 30:] += 5.0  # change only the future of step 29
    with torch.no_grad():
        assert torch.allclose(model(x)[:, :30], model(y)[:, :30])
        assert not torch.allclose(model(x)[:, 30:], model(y)[:, 30:])


def test_iterated_forecast_feeds_predictions_back() -> None:
    torch.manual_seed(0)
    model = models.build(models.validate_hparams({"model": "gru", "hidden": 4}), {**INFO, "horizon": 1}).eval()
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
    assert models.naive(x, 3).tolist() == [[19, 19, 19]]
    # period 7: forecast day h repeats the value one week before it
    assert models.seasonal_naive(x, 9, 7).tolist() == [[13, 14, 15, 16, 17, 18, 19, 13, 14]]


def test_hparams_typos_and_ranges_are_named() -> None:
    with pytest.raises(ConfigError, match="hiden: Extra inputs are not permitted"):
        models.validate_hparams({"model": "gru", "hiden": 3})
    with pytest.raises(ConfigError, match="dropout: Input should be less than 1"):
        models.validate_hparams({"model": "gru", "dropout": 1.5})
    with pytest.raises(ConfigError, match="model: Input should be"):
        models.validate_hparams({"model": "transformer"})
