"""The shared supervised loop through the forecaster (plain session, no Ray): learns, is
deterministic, stops a diverged run naming its metric, writes a loadable model dir that the
Predictor serves with clear errors for bad requests."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from components.config import ConfigError
from components.data import read_json, write_split
from components.family import RequestError
from components.session import PlainSession, TrainingDiverged
from components.train import epoch_lr, run_supervised, worker_threads
from families.forecaster import FAMILY, data, evaluate, serve, train
from quartet import api

EPOCHS = 3
HPARAMS = {"model": "gru", "hidden": 8, "layers": 1, "batch_size": 32, "lr": 0.01}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    data.ingest(raw, 42)
    out = tmp_path_factory.mktemp("prepared")
    data.prepare("synthetic", {"split": [400, 100, 100]}, raw, out, 42)
    return out


@pytest.fixture(scope="module")
def model_dir(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    train_model(prepared, out)
    return out


def train_model(prepared: Path, out_dir: Path | None, epochs: int = EPOCHS, **hp) -> list[dict]:
    return api.train_plain("forecaster", "synthetic", {**HPARAMS, **hp}, prepared, epochs, out_dir=out_dir).history


def ask(predictor: serve.Predictor, **request) -> serve.ForecastResponse:
    return predictor.predict_batch([serve.ForecastRequest(**request)])[0]


def test_loop_learns_and_is_deterministic(prepared: Path, model_dir: Path, tmp_path: Path) -> None:
    first = read_json(model_dir / "config.json")["history"]
    second = train_model(prepared, None)
    assert [h["val_mse"] for h in first] == [h["val_mse"] for h in second]
    assert [h["train_loss"] for h in first] == [h["train_loss"] for h in second]
    assert first[-1]["train_loss"] < first[0]["train_loss"]
    naive = evaluate.evaluate(model_dir, prepared, tmp_path / "plots", {})["val_mse_naive"]
    assert min(h["val_mse"] for h in first) < naive


def test_the_family_loop_is_run_supervised_with_the_forecaster_spec(prepared: Path) -> None:
    """FAMILY.loop is what Ray Train and Tune run; through the API or by hand it is the same run."""
    config = api.loop_config("forecaster", "synthetic", HPARAMS, prepared, 2)
    by_hand = run_supervised(config, PlainSession(config), train.SPEC)
    assert [h["val_mse"] for h in by_hand] == [h["val_mse"] for h in train_model(prepared, None, epochs=2)]
    assert FAMILY.loop is train.loop


def test_a_diverged_run_is_a_config_error_naming_the_metric(prepared: Path, tmp_path: Path) -> None:
    """A NaN reaching the weights makes every epoch's val metric NaN: the loop stops with a
    ConfigError (the user's data or learning rate), not a crash after all epochs."""
    broken = tmp_path / "broken"
    shutil.copytree(prepared, broken)
    info = read_json(broken / "info.json")
    x, y, origins = data.load_split(broken, "train", info)
    x[0, 0, 0] = np.nan
    write_split(broken / "train.parquet", data.to_table(x, y, origins))
    with pytest.raises(TrainingDiverged, match=r"training diverged: val_mse is nan after epoch 0") as e:
        train_model(broken, tmp_path / "m")
    assert isinstance(e.value, ConfigError)
    assert not (tmp_path / "m").exists()  # no model dir from a run that never had a finite epoch


def test_evaluate_writes_metrics_and_plots(prepared: Path, model_dir: Path, tmp_path: Path) -> None:
    metrics = evaluate.evaluate(model_dir, prepared, tmp_path / "plots", {})
    for key in ("val_mse", "val_mae", "test_mse", "test_mae", "test_mse_naive"):
        assert np.isfinite(metrics[key])
    history = read_json(model_dir / "config.json")["history"]
    assert metrics["val_mse"] == pytest.approx(min(h["val_mse"] for h in history), rel=1e-5)  # best epoch kept
    assert metrics["epochs_trained"] == EPOCHS
    assert (tmp_path / "plots" / "forecast_vs_actual.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "test_mae_by_horizon.csv").read_text().count("\n") == 11


def test_model_dir_holds_only_the_models_own_hparams(model_dir: Path) -> None:
    config = read_json(model_dir / "config.json")
    assert config["family"] == "forecaster" and config["model"] == "gru"
    assert config["hparams"] == FAMILY.validate_hparams(HPARAMS)
    assert "kernel_size" not in config["hparams"]


def test_predictor_batches_and_rejects_bad_requests(model_dir: Path) -> None:
    predictor = serve.Predictor(model_dir, model_version="7")
    example = serve.input_example(model_dir)
    reqs = [serve.ForecastRequest(**example),
            serve.ForecastRequest(task="synthetic", series=[[0.1] * 20] * 2, horizon=4)]
    out = predictor.predict_batch(reqs)
    assert [np.shape(o.forecast) for o in out] == [(1, 10), (2, 4)]
    assert out[0].model_version == "7"
    # one request alone gives the same answer as inside a batch
    assert ask(predictor, task="synthetic", series=[[0.1] * 20] * 2, horizon=4).forecast == out[1].forecast
    with pytest.raises(RequestError, match="exceeds the 10 steps"):
        ask(predictor, task="synthetic", series=[[0.1] * 20], horizon=11)
    with pytest.raises(RequestError, match=r"expects 1 value\(s\) per time step"):
        ask(predictor, task="synthetic", series=[[[0.1, 0.2]] * 20], horizon=2)
    with pytest.raises(RequestError, match="same length"):
        ask(predictor, task="synthetic", series=[[0.1] * 20, [0.1] * 21], horizon=2)
    with pytest.raises(RequestError, match="outside"):
        ask(predictor, task="synthetic", series=[[0.1] * 3], horizon=2)


def test_each_route_names_its_predictor_method(model_dir: Path) -> None:
    route, example = FAMILY.routes
    assert (route.name, route.method, route.request, route.response) == (
        "predict", "predict_batch", serve.ForecastRequest, serve.ForecastResponse)
    assert (example.name, example.method, example.request, example.response) == (
        "example", "example_batch", serve.ExampleRequest, serve.ExampleResponse)
    assert FAMILY.route_for("synthetic") is route  # what the registered pyfunc answers
    predictor = FAMILY.predictor(model_dir)
    answer = getattr(predictor, route.method)([route.request(**FAMILY.input_example(model_dir))])
    assert isinstance(answer[0], route.response)


def test_ragged_multivariate_series_is_a_request_error(model_dir: Path) -> None:
    predictor = serve.Predictor(model_dir)
    ragged = [[[0.1, 0.2]] * 19 + [[0.1]]]
    with pytest.raises(RequestError, match="same number of values"):
        ask(predictor, task="synthetic", series=ragged, horizon=2)


def test_request_model_rejects_nan_and_oversized_batches() -> None:
    with pytest.raises(ValueError, match="finite number"):
        serve.ForecastRequest(task="synthetic", series=[[0.1, float("nan")]], horizon=1)
    with pytest.raises(ValueError, match="at most 256"):
        serve.ForecastRequest(task="synthetic", series=[[0.1]] * 257, horizon=1)
    with pytest.raises(ValueError, match="greater than 0"):
        serve.ForecastRequest(task="synthetic", series=[[0.1]], horizon=0)
    with pytest.raises(ValueError, match="less than or equal to 1000"):
        serve.ForecastRequest(task="synthetic", series=[[0.1]], horizon=10**9)


def test_iterated_horizon_for_one_step_models(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    data.ingest(raw, 42)
    data.prepare("synthetic", {"horizon": 1, "split": [200, 50, 50]}, raw, tmp_path / "p", 42)
    api.train_plain("forecaster", "synthetic", {"model": "gru", "hidden": 4, "layers": 1}, tmp_path / "p", 1,
                    out_dir=tmp_path / "m")
    out = ask(serve.Predictor(tmp_path / "m"), task="synthetic", series=[[0.1] * 50], horizon=5)
    assert np.shape(out.forecast) == (1, 5)


def test_epoch_lr_is_constant_by_default_and_cosine_on_request() -> None:
    assert [epoch_lr({"lr": 0.01}, e, 4) for e in range(4)] == [0.01] * 4
    cos = [epoch_lr({"lr": 0.01, "lr_schedule": "cosine"}, e, 4) for e in range(4)]
    assert cos[0] == 0.01 and cos[-1] > 0
    assert all(a > b for a, b in zip(cos, cos[1:], strict=False))
    assert cos[2] == pytest.approx(0.005)


@pytest.mark.parametrize(("cpus", "threads"), [(0.25, 1), (1, 1), (1.5, 1), (2, 2), (4, 4)])
def test_a_worker_gets_the_whole_cpus_it_reserved_as_torch_threads(cpus: float, threads: int) -> None:
    assert worker_threads(cpus) == threads


def test_a_session_runs_with_the_configs_threads(prepared: Path) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        for n in (1, 2):
            PlainSession(api.loop_config("forecaster", "synthetic", HPARAMS, prepared, 1, threads=n))
            assert torch.get_num_threads() == n
    finally:
        torch.set_num_threads(before)
