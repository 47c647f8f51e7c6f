"""Forecaster prediction intervals, known-ahead covariates and the baselines a champion must beat.

Intervals: conformal coverage on synthetic data with known noise, the rank rule, the Winkler
score by hand, and the Predictor's request errors. Covariates: which forecast days a step reads,
that a model trained with them needs them (and one without refuses them), and prepare's `future`
column. Baselines: the register veto names the baseline and the margin.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from components.family import RequestError
from components.stages import baseline_veto
from families.forecaster import FAMILY, data, intervals, models, serve
from quartet import api

VIC_INFO = {"features": ["demand", "temperature", "holiday", "weekend"],
            "future_features": ["temperature", "holiday", "weekend"], "horizon": 14, "seq_len": 56}


# ----------------------------------------------------------------------------- conformal intervals
def test_conformal_intervals_cover_at_the_nominal_level_on_data_with_known_noise() -> None:
    """y = a known signal + Gaussian noise whose scale varies by window; the point forecast is the
    signal, so the errors are the noise. Calibrated on 1,000 windows, checked on 20,000."""
    rng = np.random.RandomState(0)

    def windows(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        sigma = rng.uniform(0.5, 3.0, size=(n, 1))
        target = rng.randn(n, 40) * sigma  # the window's own volatility tells the noise scale
        pred = rng.randn(n, 5)
        return target, pred, pred + rng.randn(n, 5) * sigma

    target, pred, y = windows(1000)
    record = intervals.calibration(pred, y, target)
    t_target, t_pred, t_y = windows(20_000)
    for level in (0.8, 0.95):
        lower, upper = intervals.bounds(t_pred, record, level, t_target)
        assert abs(intervals.coverage(t_y, lower, upper) - level) < 0.02, level
    # scaling by the window's volatility gives narrower bands on calm windows than on wild ones
    lower, upper = intervals.bounds(t_pred, record, 0.8, t_target)
    calm = t_target[:, -intervals.SCALE_WINDOW:].std(axis=1) < 1.0
    assert (upper - lower)[calm].mean() < 0.5 * (upper - lower)[~calm].mean()


def test_halfwidth_is_the_ceil_n_plus_one_rank_and_refuses_levels_n_cannot_give() -> None:
    errors = np.arange(1, 10, dtype=float)[:, None]  # 9 windows, errors 1..9, scale 1
    record = intervals.calibration(np.zeros((9, 1)), errors, np.array([[0.0, 2.0]] * 9))  # std of [0, 2] is 1
    assert intervals.halfwidths(record, 0.5)[0] == 5  # ceil(10 * 0.5) = 5th smallest
    assert intervals.halfwidths(record, 0.85)[0] == 9  # ceil(8.5) = 9
    with pytest.raises(ValueError, match="more than the 9 calibration windows"):
        intervals.halfwidths(record, 0.95)  # ceil(9.5) = 10 > 9
    assert math.isclose(intervals.max_level(9), 0.9)


def test_winkler_score_is_width_plus_the_miss_penalty() -> None:
    y = np.array([0.0, 5.0, -3.0])
    lower, upper = np.full(3, -1.0), np.full(3, 1.0)
    # width 2 each; misses by 4 above and 2 below, penalty 2/alpha = 10 at level 0.8
    assert math.isclose(intervals.winkler(y, lower, upper, 0.8), (2 + (2 + 40) + (2 + 20)) / 3)
    assert math.isclose(intervals.coverage(y, lower, upper), 1 / 3)
    assert intervals.level_key(0.8) == "80" and intervals.level_key(0.975) == "97.5"


# ----------------------------------------------------------------------------- known-ahead covariates
def test_each_step_reads_the_covariates_of_the_days_it_forecasts() -> None:
    x = torch.zeros(1, 4, 2)
    x[0, :, 1] = torch.arange(4.0)  # the known feature's value = its day
    future = torch.tensor([[[4.0], [5.0]]])  # days 4 and 5
    cov = models.step_covariates(x, future, 2, torch.arange(4))[0]
    # step t forecasts days t+1, t+2: [value, value²] of each
    assert cov.tolist() == [[1, 1, 2, 4], [2, 4, 3, 9], [3, 9, 4, 16], [4, 16, 5, 25]]


@pytest.mark.parametrize("name", ["linear", "gru", "conv_gru", "wavenet"])
def test_models_with_covariates_need_them_and_use_them(name: str) -> None:
    torch.manual_seed(0)
    model = models.build(FAMILY.validate_hparams({"model": name, "hidden": 8, "layers": 1}), VIC_INFO).eval()
    x, future = torch.randn(3, 56, 4), torch.randn(3, 14, 3)
    assert models.forecast(model, x, future).shape == (3, 14)
    changed = future.clone()
    changed[:, 5, 0] += 3.0  # a hotter 6th forecast day
    assert not torch.allclose(models.forecast(model, x, future), models.forecast(model, x, changed))
    with pytest.raises(ValueError, match="needs the 3 known-ahead feature"):
        model(x)
    with pytest.raises(ValueError, match=r"future must have shape \(batch, 14, 3\)"):
        model(x, future[:, :7])
    plain = models.build(FAMILY.validate_hparams({"model": name, "hidden": 8, "layers": 1}),
                         {**VIC_INFO, "future_features": []})
    with pytest.raises(ValueError, match="trained without known-ahead features"):
        plain(x, future)


def test_future_features_must_be_the_windows_non_target_features() -> None:
    from components.config import ConfigError

    with pytest.raises(ConfigError, match="must be the non-target features"):
        models.build(FAMILY.validate_hparams({"model": "linear"}), {**VIC_INFO, "future_features": ["holiday"]})


@pytest.fixture(scope="module")
def vic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("vic")
    data.ingest(root / "raw", 42)
    info = data.prepare("vic_elec", {}, root / "raw", root / "prepared", 42)
    return root / "prepared", info


def test_prepare_writes_the_forecast_days_known_features_and_the_sarimax_forecasts(vic: tuple[Path, dict]) -> None:
    prepared, info = vic
    assert info["future_features"] == ["temperature", "holiday", "weekend"]
    x, y, origins, future = data.load_split_with_future(prepared, "val", info)
    assert future.shape == (len(x), 14, 3)
    # window i+1 starts a day later: its last input day is window i's first forecast day
    np.testing.assert_array_equal(x[1, -1, 1:], future[0, 0])
    np.testing.assert_array_equal(x[1, -1, 0], y[0, 0])
    for split in ("val", "test"):
        sarimax = data.load_baseline(prepared, split)
        assert sarimax.shape == (len(data.load_split(prepared, split, info)[0]), 14) and np.isfinite(sarimax).all()


def test_prepare_without_future_covariates_has_no_future_column(vic: tuple[Path, dict], tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # what this test is about is the schema; the (seconds-long) SARIMAX fit is tested above
    monkeypatch.setattr(data.baselines, "sarimax_forecasts", lambda h, x, origins, horizon: np.zeros((len(origins), horizon)))
    info = data.prepare("vic_elec", {"future_covariates": False}, vic[0].parent / "raw", tmp_path, 42)
    assert info["future_features"] == []
    assert data.load_split_with_future(tmp_path, "test", info)[3] is None


# ----------------------------------------------------------------------------- serving
@pytest.fixture(scope="module")
def vic_model(vic: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    api.train_plain("forecaster", "vic_elec", {"model": "linear", "lr": 0.01}, vic[0], 3, out_dir=out)
    return out


def test_train_plain_writes_the_calibration_and_evaluate_scores_it(vic: tuple[Path, dict], vic_model: Path,
                                                                    tmp_path: Path) -> None:
    record = intervals.read(vic_model)
    assert record["n"] == vic[1]["counts"]["val"] and len(record["scaled_abs_errors_by_step"]) == 14
    metrics = api.evaluate("forecaster", vic_model, vic[0], tmp_path, {"interval_levels": [0.8, 0.95]})
    assert metrics["test_width_95"] > metrics["test_width_80"] > 0
    assert 0 <= metrics["test_coverage_80"] <= metrics["test_coverage_95"] <= 1
    assert {"test_mae_sarimax", "test_mae_seasonal_naive", "test_mae_naive"} <= set(metrics)
    header = (tmp_path / "test_forecast.csv").read_text().splitlines()[0]
    assert header == "step,actual,forecast,lower_80,upper_80,lower_95,upper_95"


def test_an_interval_level_the_calibration_cannot_give_is_a_params_error(vic: tuple[Path, dict], vic_model: Path,
                                                                          tmp_path: Path) -> None:
    from components.config import ConfigError

    with pytest.raises(ConfigError, match="interval_levels: interval level 0.999 needs more than the 168"):
        api.evaluate("forecaster", vic_model, vic[0], tmp_path, {"interval_levels": [0.8, 0.999]})


def _request(model_dir: Path, **changes) -> serve.ForecastRequest:
    return serve.ForecastRequest(**{**serve.input_example(model_dir), **changes})


def test_predictor_returns_nested_intervals_around_the_forecast(vic_model: Path) -> None:
    predictor = serve.Predictor(vic_model)
    req = _request(vic_model, intervals=[0.8, 0.95])
    (res,) = predictor.predict_batch([req])
    point = np.asarray(res.forecast)
    (i80, i95) = res.intervals
    assert (i80.level, i95.level) == (0.8, 0.95)
    assert (np.asarray(i95.lower) < np.asarray(i80.lower)).all() and (np.asarray(i80.lower) < point).all()
    assert (point < np.asarray(i80.upper)).all() and (np.asarray(i80.upper) < np.asarray(i95.upper)).all()
    (plain,) = predictor.predict_batch([_request(vic_model, intervals=None)])
    assert plain.intervals is None and plain.forecast == res.forecast


def test_predictor_request_errors_say_what_is_missing(vic_model: Path, tmp_path: Path) -> None:
    predictor = serve.Predictor(vic_model)
    example = serve.input_example(vic_model)
    with pytest.raises(RequestError, match="needs `future`"):
        predictor.predict_batch([_request(vic_model, future=None)])
    with pytest.raises(RequestError, match="14 days of"):
        predictor.predict_batch([_request(vic_model, future=[example["future"][0][:7]])])
    with pytest.raises(RequestError, match="more than the 168 calibration windows"):
        predictor.predict_batch([_request(vic_model, intervals=[0.999])])
    uncalibrated = tmp_path / "old"
    uncalibrated.mkdir()
    for f in ("config.json", "weights.pt"):
        (uncalibrated / f).write_bytes((vic_model / f).read_bytes())
    with pytest.raises(RequestError, match="no interval calibration"):
        serve.Predictor(uncalibrated).predict_batch([_request(vic_model, intervals=[0.8])])


# ----------------------------------------------------------------------------- the baselines a champion must beat
def test_register_veto_names_the_best_beating_baseline_and_the_margin() -> None:
    metrics = {"test_mae": 9000.0, "test_mae_naive": 19000.0, "test_mae_seasonal_naive": 8500.0,
               "test_mae_sarimax": 6000.0}
    assert FAMILY.beaten_by("vic_elec", metrics) == ("sarimax", 6000.0)
    veto = baseline_veto(FAMILY, "vic_elec", metrics)
    assert "beaten by the sarimax baseline (6000" in veto and "the model is 50.0% worse" in veto and "not promoted" in veto
    assert baseline_veto(FAMILY, "vic_elec", {**metrics, "test_mae": 5000.0}) is None
    # synthetic is judged on mse; its only baseline is naive
    assert baseline_veto(FAMILY, "synthetic", {"test_mse": 0.01, "test_mse_naive": 0.2}) is None


def test_the_model_dir_carries_test_windows_the_example_route_hands_out(vic: tuple[Path, dict], vic_model: Path) -> None:
    prepared, info = vic
    x, y, origins, future = data.load_split_with_future(prepared, "test", info)
    predictor = serve.Predictor(vic_model, model_version="4")
    first, last = predictor.example_batch([serve.ExampleRequest(task="vic_elec", index=0),
                                           serve.ExampleRequest(task="vic_elec", index=7)])
    assert first.count == 8 and first.horizon == 14 and first.interval_levels == [0.8, 0.95]
    mean, std = np.asarray(info["mean"]), np.asarray(info["std"])
    np.testing.assert_allclose(first.series, x[0] * std + mean, rtol=1e-5)  # data units, the first test window
    np.testing.assert_allclose(last.actual, y[-1] * std[0] + mean[0], rtol=1e-5)  # ... to the last one
    np.testing.assert_allclose(last.future, future[-1] * std[1:] + mean[1:], rtol=1e-5, atol=1e-5)
    assert (first.origin, last.origin) == (str(origins[0]), str(origins[-1]))
    # what the demo page does with it: forecast the window, with its intervals
    (forecast,) = predictor.predict_batch([serve.ForecastRequest(task="vic_elec", series=[last.series], horizon=14,
                                                                 future=[last.future], intervals=last.interval_levels)])
    assert np.shape(forecast.forecast) == (1, 14) and len(forecast.intervals) == 2
    with pytest.raises(RequestError, match="index 8 is out of range: this model carries 8 test windows"):
        predictor.example_batch([serve.ExampleRequest(task="vic_elec", index=8)])
