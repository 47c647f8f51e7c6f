"""What the forecaster learns and how it is judged: datasets, loss, metrics, evaluation, Predictor.

Metrics are in data units (the vic_elec target is de-normalised): `*_mse` is the book's
"last time step MSE" (the forecast of the last window step against the next `horizon` values),
`*_mae` its mean absolute error. synthetic is judged on mse, vic_elec on mae.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components import train
from components.data import read_json
from components.family import Metric, RequestError
from components.train import SupervisedSpec, run_supervised
from families.forecaster import models
from families.forecaster.data import load_split

log = logging.getLogger(__name__)

METRICS = {"synthetic": Metric("mse"), "vic_elec": Metric("mae")}
MAX_SERIES_PER_REQUEST = 256
MAX_SERIES_LENGTH = 2000


# ----------------------------------------------------------------------------- datasets + loss
def seq2seq_targets(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Y[n, t, k] = target value at step t+1+k (book: Y[..., k-1] = series[..., k:k+T])."""
    full = np.concatenate([x[:, :, 0], y], axis=1)
    horizon, seq_len = y.shape[1], x.shape[1]
    return np.lib.stride_tricks.sliding_window_view(full, horizon, axis=1)[:, 1 : seq_len + 1].copy()


def tensor_dataset(x: np.ndarray, y: np.ndarray) -> torch.utils.data.TensorDataset:
    return torch.utils.data.TensorDataset(
        torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(seq2seq_targets(x, y))
    )


def datasets(prepared_dir: Path, hp: dict[str, Any], info: dict[str, Any], max_train: int | None):
    x, y, _ = load_split(prepared_dir, "train", info)
    if max_train:
        x, y = x[:max_train], y[:max_train]
    vx, vy, _ = load_split(prepared_dir, "val", info)
    return tensor_dataset(x, y), tensor_dataset(vx, vy)


def loss(model: torch.nn.Module, batch: Any, hp: dict[str, Any]) -> torch.Tensor:
    x, y, yseq = batch
    out = model(x)
    if out.dim() == 2:
        return torch.nn.functional.mse_loss(out, y)
    idx = models.unwrap_step_index(model, x.shape[1])
    return torch.nn.functional.mse_loss(out, yseq[:, idx])


def predict_array(model: torch.nn.Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(models.forecast(model, torch.from_numpy(x[i : i + batch_size])).numpy())
    return np.concatenate(outs)


def error_metrics(pred: np.ndarray, y: np.ndarray, std: float, prefix: str) -> dict[str, float]:
    """MSE and MAE in data units (pred, y normalised by std)."""
    err = (pred - y) * std
    return {f"{prefix}_mse": float(np.mean(err**2)), f"{prefix}_mae": float(np.mean(np.abs(err)))}


def validate(model: torch.nn.Module, loader: Any, hp: dict[str, Any], info: dict[str, Any]) -> dict[str, float]:
    preds, ys = [], []
    for x, y, _ in loader:
        preds.append(models.forecast(model, x).cpu().numpy())
        ys.append(y.cpu().numpy())
    return error_metrics(np.concatenate(preds), np.concatenate(ys), float(info["std"][0]), "val")


def spec(task: str) -> SupervisedSpec:
    return SupervisedSpec(
        build=models.build, datasets=datasets, loss=loss, validate=validate, val_metric=METRICS[task].val,
        mode=METRICS[task].mode,
    )


def train_loop(config: dict[str, Any]) -> list[dict[str, float]]:
    """The per-worker loop (Ray Train worker, Tune trial or plain process)."""
    return run_supervised(config, spec(config["task"]))


# ----------------------------------------------------------------------------- evaluation
def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return train.load_model(model_dir, models.build)


def _plot_forecasts(
    path: Path, x: np.ndarray, y: np.ndarray, pred: np.ndarray, info: dict, origins: list[str], n: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, std = info["mean"][0], info["std"][0]
    fig, axes = plt.subplots(n, 1, figsize=(9, 2.7 * n), sharex=True, squeeze=False)
    axes = axes[:, 0]
    T, H = x.shape[1], y.shape[1]
    for ax, i in zip(axes, np.linspace(0, len(x) - 1, n).astype(int)):
        ax.plot(range(T), x[i, :, 0] * std + mean, "b.-", label="input")
        ax.plot(range(T, T + H), y[i] * std + mean, "go-", label="actual")
        ax.plot(range(T, T + H), pred[i] * std + mean, "rx-", label="forecast")
        ax.set_title(f"origin {origins[i]}")
        ax.set_ylabel(info["target"])
    axes[0].legend()
    axes[-1].set_xlabel("time step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def evaluate(model_dir: Path, prepared_dir: Path, plots_dir: Path, params: dict[str, Any]) -> dict[str, float]:
    """Model vs naive baselines on val and test; writes plots (PNG + CSV for `dvc plots`)."""
    model, config = load_model(model_dir)
    info = read_json(prepared_dir / "info.json")
    std = float(info["std"][0])
    metrics: dict[str, float] = {}
    plots_dir.mkdir(parents=True, exist_ok=True)
    for split in ("val", "test"):
        x, y, origins = load_split(prepared_dir, split, info)
        pred = predict_array(model, x)
        metrics.update(error_metrics(pred, y, std, split))
        metrics.update({k + "_naive": v for k, v in error_metrics(models.naive(x, y.shape[1]), y, std, split).items()})
        if info.get("period"):
            sn = models.seasonal_naive(x, y.shape[1], int(info["period"]))
            metrics.update({k + "_seasonal_naive": v for k, v in error_metrics(sn, y, std, split).items()})
        if split == "test":
            per_h = np.mean(np.abs(pred - y), axis=0) * std
            with open(plots_dir / "test_mae_by_horizon.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["horizon", "mae"])
                w.writerows([[h + 1, f"{v:.6g}"] for h, v in enumerate(per_h)])
            with open(plots_dir / "test_forecast.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["step", "actual", "forecast"])
                mean = info["mean"][0]
                for h in range(y.shape[1]):
                    w.writerow([h + 1, f"{y[0, h] * std + mean:.6g}", f"{pred[0, h] * std + mean:.6g}"])
            n_plot = int(params.get("n_plot_series", 3))
            _plot_forecasts(plots_dir / "forecast_vs_actual.png", x, y, pred, info, origins, n_plot)
    metrics["epochs_trained"] = float(len(config.get("history", [])))
    return metrics


# ----------------------------------------------------------------------------- serving
# Finite and within float32 (the models' dtype): a larger value would become inf in the cast.
FLOAT32_MAX = float(np.finfo(np.float32).max)
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="forecaster task, e.g. 'synthetic' or 'vic_elec'")
    series: list[list[Finite]] | list[list[list[Finite]]] = Field(
        description="batch of univariate series [[v, ...], ...] or multivariate [[[f1, f2, ...], ...], ...]",
        min_length=1,
        max_length=MAX_SERIES_PER_REQUEST,
    )
    horizon: int = Field(gt=0, le=1000, description="number of future steps to forecast")


class ForecastResponse(BaseModel):
    task: str
    model_version: str | None = None
    forecast: list[list[float]]


class Predictor:
    """Loads a model dir; turns requests in data units into forecasts in data units."""

    request_model = ForecastRequest
    response_model = ForecastResponse

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.model, self.config = load_model(Path(model_dir))
        self.info = self.config["info"]
        self.task = self.config["task"]
        self.model_version = model_version
        self.n_features = len(self.info["features"])
        self.trained_horizon = int(self.info["horizon"])
        self.min_length = int(self.info["seq_len"]) if self.config["model"] == "linear" else 4

    def _as_array(self, req: ForecastRequest) -> np.ndarray:
        series = req.series
        lengths = {len(s) for s in series}
        if len(lengths) != 1:
            raise RequestError(f"all series in one request must have the same length, got lengths {sorted(lengths)}")
        length = lengths.pop()
        if not self.min_length <= length <= MAX_SERIES_LENGTH:
            raise RequestError(f"series length {length} is outside [{self.min_length}, {MAX_SERIES_LENGTH}]")
        widths = {len(step) if isinstance(step, list) else 0 for s in series for step in s}
        if len(widths) > 1:
            raise RequestError(f"every time step must have the same number of values, got {sorted(widths)}")
        arr = np.asarray(series, dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] != self.n_features:
            got = arr.shape[2] if arr.ndim == 3 else "ragged"
            raise RequestError(
                f"task {self.task!r} expects {self.n_features} value(s) per time step "
                f"({', '.join(self.info['features'])}), got {got}"
            )
        mean, std = np.asarray(self.info["mean"], np.float32), np.asarray(self.info["std"], np.float32)
        return (arr - mean) / std

    def _check_horizon(self, horizon: int) -> bool:
        """True when the forecast must be iterated one step at a time."""
        if horizon <= self.trained_horizon:
            return False
        if self.trained_horizon == 1 and self.n_features == 1:
            return True
        raise RequestError(f"horizon {horizon} exceeds the {self.trained_horizon} steps this model was trained for")

    def predict(self, req: ForecastRequest) -> ForecastResponse:
        return self.predict_batch([req])[0]

    def predict_batch(self, reqs: list[ForecastRequest]) -> list[ForecastResponse]:
        """Requests with the same length and mode share one forward pass (Serve batches them)."""
        mean, std = float(self.info["mean"][0]), float(self.info["std"][0])
        prepared = [(self._as_array(r), self._check_horizon(r.horizon)) for r in reqs]
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, (arr, iterate) in enumerate(prepared):
            groups.setdefault((arr.shape[1], iterate), []).append(i)
        out: list[np.ndarray | None] = [None] * len(reqs)
        with torch.no_grad():
            for (_, iterate), idx in groups.items():
                x = torch.from_numpy(np.concatenate([prepared[i][0] for i in idx]))
                steps = max(reqs[i].horizon for i in idx)
                y = (models.forecast_iterative(self.model, x, steps) if iterate else models.forecast(self.model, x)).numpy()
                start = 0
                for i in idx:
                    n = len(reqs[i].series)
                    out[i] = y[start : start + n, : reqs[i].horizon] * std + mean
                    start += n
        if not all(np.isfinite(o).all() for o in out):  # inputs far outside the training range
            raise RequestError("series values too large for this model: the forecast overflows (not finite)")
        return [
            ForecastResponse(task=r.task, model_version=self.model_version, forecast=o.astype(float).tolist())
            for r, o in zip(reqs, out)
        ]


def input_example(model_dir: Path) -> dict[str, Any]:
    """A valid request for this model dir: the first validation-length window of zeros-and-ones."""
    config = read_json(Path(model_dir) / "config.json")
    info = config["info"]
    t, f = int(info["seq_len"]), len(info["features"])
    rng = np.random.RandomState(0)
    mean, std = np.asarray(info["mean"]), np.asarray(info["std"])
    window = (rng.randn(t, f) * std + mean).round(3)
    series = window[:, 0].tolist() if f == 1 else window.tolist()
    return {"task": config["task"], "series": [series], "horizon": int(info["horizon"])}
