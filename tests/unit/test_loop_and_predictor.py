"""The shared loop (plain launcher, no Ray): learns, is deterministic, writes a loadable model dir
that the Predictor serves with clear errors for bad requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.data import read_json
from components.family import RequestError
from components.train import epoch_lr, loop_config
from families.forecaster import data, models, task

EPOCHS = 3


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    raw = tmp_path_factory.mktemp("raw")
    data.ingest(raw, 42)
    out = tmp_path_factory.mktemp("prepared")
    info = data.prepare("synthetic", {"split": [400, 100, 100]}, raw, out, 42)
    return out, info


def train(prepared: tuple[Path, dict], out_dir: Path, **hp) -> list[dict]:
    path, info = prepared
    hparams = models.validate_hparams({"model": "gru", "hidden": 8, "layers": 1, "batch_size": 32, "lr": 0.01, **hp})
    config = loop_config("forecaster", "synthetic", hparams, info, path, EPOCHS, 42, "plain", out_dir=str(out_dir))
    return task.train_loop(config)


def test_loop_learns_and_is_deterministic(prepared, tmp_path: Path) -> None:
    first = train(prepared, tmp_path / "a")
    second = train(prepared, tmp_path / "b")
    assert [h["val_mse"] for h in first] == [h["val_mse"] for h in second]
    assert first[-1]["train_loss"] < first[0]["train_loss"]
    naive = task.evaluate(tmp_path / "a", prepared[0], tmp_path / "plots", {})["val_mse_naive"]
    assert min(h["val_mse"] for h in first) < naive


def test_evaluate_writes_metrics_and_plots(prepared, tmp_path: Path) -> None:
    train(prepared, tmp_path / "m")
    metrics = task.evaluate(tmp_path / "m", prepared[0], tmp_path / "plots", {})
    for key in ("val_mse", "val_mae", "test_mse", "test_mae", "test_mse_naive"):
        assert np.isfinite(metrics[key])
    history = read_json(tmp_path / "m" / "config.json")["history"]
    assert metrics["val_mse"] == pytest.approx(min(h["val_mse"] for h in history), rel=1e-5)  # best epoch kept
    assert (tmp_path / "plots" / "forecast_vs_actual.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "test_mae_by_horizon.csv").read_text().count("\n") == 11


def test_predictor_batches_and_rejects_bad_requests(prepared, tmp_path: Path) -> None:
    train(prepared, tmp_path / "m")
    predictor = task.Predictor(tmp_path / "m", model_version="7")
    example = task.input_example(tmp_path / "m")
    reqs = [task.ForecastRequest(**example), task.ForecastRequest(task="synthetic", series=[[0.1] * 20] * 2, horizon=4)]
    out = predictor.predict_batch(reqs)
    assert [np.shape(o.forecast) for o in out] == [(1, 10), (2, 4)]
    assert out[0].model_version == "7"
    # one request alone gives the same answer as inside a batch
    assert predictor.predict(reqs[1]).forecast == out[1].forecast
    with pytest.raises(RequestError, match="exceeds the 10 steps"):
        predictor.predict(task.ForecastRequest(task="synthetic", series=[[0.1] * 20], horizon=11))
    with pytest.raises(RequestError, match=r"expects 1 value\(s\) per time step"):
        predictor.predict(task.ForecastRequest(task="synthetic", series=[[[0.1, 0.2]] * 20], horizon=2))
    with pytest.raises(RequestError, match="same length"):
        predictor.predict(task.ForecastRequest(task="synthetic", series=[[0.1] * 20, [0.1] * 21], horizon=2))
    with pytest.raises(RequestError, match="outside"):
        predictor.predict(task.ForecastRequest(task="synthetic", series=[[0.1] * 3], horizon=2))


def test_ragged_multivariate_series_is_a_request_error(prepared, tmp_path: Path) -> None:
    train(prepared, tmp_path / "m")
    predictor = task.Predictor(tmp_path / "m")
    ragged = [[[0.1, 0.2]] * 19 + [[0.1]]]
    with pytest.raises(RequestError, match="same number of values"):
        predictor.predict(task.ForecastRequest(task="synthetic", series=ragged, horizon=2))


def test_request_model_rejects_nan_and_oversized_batches() -> None:
    with pytest.raises(ValueError, match="finite number"):
        task.ForecastRequest(task="synthetic", series=[[0.1, float("nan")]], horizon=1)
    with pytest.raises(ValueError, match="at most 256"):
        task.ForecastRequest(task="synthetic", series=[[0.1]] * 257, horizon=1)
    with pytest.raises(ValueError, match="greater than 0"):
        task.ForecastRequest(task="synthetic", series=[[0.1]], horizon=0)
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        task.ForecastRequest(task="synthetic", series=[[0.1]], horizon=10**9)


def test_iterated_horizon_for_one_step_models(tmp_path: Path, prepared) -> None:
    raw = tmp_path / "raw"
    data.ingest(raw, 42)
    info = data.prepare("synthetic", {"horizon": 1, "split": [200, 50, 50]}, raw, tmp_path / "p", 42)
    hparams = models.validate_hparams({"model": "gru", "hidden": 4, "layers": 1})
    task.train_loop(loop_config("forecaster", "synthetic", hparams, info, tmp_path / "p", 1, 42, "plain", out_dir=str(tmp_path / "m")))
    out = task.Predictor(tmp_path / "m").predict(task.ForecastRequest(task="synthetic", series=[[0.1] * 50], horizon=5))
    assert np.shape(out.forecast) == (1, 5)


def test_epoch_lr_is_constant_by_default_and_cosine_on_request() -> None:
    assert [epoch_lr({"lr": 0.01}, e, 4) for e in range(4)] == [0.01] * 4
    cos = [epoch_lr({"lr": 0.01, "lr_schedule": "cosine"}, e, 4) for e in range(4)]
    assert cos[0] == 0.01 and cos[-1] > 0
    assert all(a > b for a, b in zip(cos, cos[1:], strict=False))
    assert cos[2] == pytest.approx(0.005)
