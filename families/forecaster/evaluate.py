"""How a trained forecaster is judged: val and test metrics beside the baselines, and plots.

Metrics are in data units, computed exactly as during training (`train.error_metrics`), so the
evaluate stage's val metric is the best epoch's. Beside them: the naive and seasonal naive
forecasts of the same windows and, where prepare fitted it, the dynamic regression (`*_sarimax`);
`register` refuses to promote a model any of them beats. With a calibration (`calibrate`, run by
the train stage through `finish_model_dir`) the test metrics include the conformal intervals' coverage, width and Winkler
score per level. The plots are a PNG of a few test forecasts with their bands and two CSVs for
`dvc plots` (MAE by horizon, the first test window's forecast and interval).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components import modeldir
from components.config import ConfigError
from components.data import read_json, write_json
from families.forecaster import baselines, intervals, models
from families.forecaster.data import load_baseline, load_split_with_future
from families.forecaster.train import error_metrics

BASELINES = ("naive", "seasonal_naive", "sarimax")
DEFAULT_LEVELS = (0.8, 0.95)


def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model dir -> (the module in eval mode, its config.json)."""
    return modeldir.load_model(model_dir, models.build)


def predict_array(model: torch.nn.Module, x: np.ndarray, batch_size: int = 1024,
                  future: np.ndarray | None = None) -> np.ndarray:
    """All-at-once forecasts of normalised windows, (n, horizon), in batches."""
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            f = None if future is None else torch.from_numpy(future[i : i + batch_size])
            outs.append(models.forecast(model, torch.from_numpy(x[i : i + batch_size]), f).numpy())
    return np.concatenate(outs)


EXAMPLES_FILE = "examples.json"
N_EXAMPLES = 8


def finish_model_dir(model_dir: Path, prepared_dir: Path) -> None:
    """What the train stage adds to the model dir: the interval calibration and demo windows."""
    calibrate(model_dir, prepared_dir)
    write_examples(model_dir, prepared_dir)


def write_examples(model_dir: Path, prepared_dir: Path, n: int = N_EXAMPLES) -> dict[str, Any]:
    """A few test windows in data units (input, known-ahead features, what happened), spread
    over the test split: what `POST /forecaster/example` hands the demo page, so it can draw a
    real held-out series rather than noise."""
    info = read_json(Path(model_dir) / "config.json")["info"]
    x, y, origins, future = load_split_with_future(prepared_dir, "test", info)
    mean, std = np.asarray(info["mean"], np.float64), np.asarray(info["std"], np.float64)
    picks = np.unique(np.linspace(0, len(x) - 1, min(n, len(x))).astype(int))
    record = {"feature_names": list(info["features"]), "future_features": list(info.get("future_features") or []),
              "windows": [{
                  "origin": str(origins[i]),
                  "series": (x[i].astype(np.float64) * std + mean).round(6).tolist(),
                  "future": None if future is None else (future[i].astype(np.float64) * std[1:] + mean[1:]).round(6).tolist(),
                  "actual": (y[i].astype(np.float64) * std[0] + mean[0]).round(6).tolist(),
              } for i in picks]}
    write_json(Path(model_dir) / EXAMPLES_FILE, record)
    return record


def read_examples(model_dir: Path) -> dict[str, Any] | None:
    path = Path(model_dir) / EXAMPLES_FILE
    return read_json(path) if path.is_file() else None


def calibrate(model_dir: Path, prepared_dir: Path) -> dict[str, Any]:
    """Write the model dir's conformal calibration: its best weights' errors on the val windows."""
    model, config = load_model(model_dir)
    info = config["info"]
    x, y, _, future = load_split_with_future(prepared_dir, "val", info)
    std, mean = float(info["std"][0]), float(info["mean"][0])
    record = intervals.calibration(predict_array(model, x, future=future) * std + mean, y * std + mean,
                                   x[:, :, 0] * std + mean)
    intervals.write(model_dir, record)
    return record


def _plot_forecasts(
    path: Path, x: np.ndarray, y: np.ndarray, pred: np.ndarray, info: dict, origins: list[str], n: int,
    bands: dict[float, tuple[np.ndarray, np.ndarray]],
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
        for level, (lower, upper) in sorted(bands.items(), reverse=True):
            ax.fill_between(range(T, T + H), lower[i], upper[i], color="r", alpha=0.12 + 0.1 * (1 - level),
                            label=f"{level:.0%} interval")
        ax.plot(range(T, T + H), pred[i] * std + mean, "rx-", label="forecast")
        ax.set_title(f"origin {origins[i]}")
        ax.set_ylabel(info["target"])
    axes[0].legend()
    axes[-1].set_xlabel("time step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _write_test_csvs(plots_dir: Path, pred: np.ndarray, y: np.ndarray, info: dict[str, Any],
                     bands: dict[float, tuple[np.ndarray, np.ndarray]]) -> None:
    std, mean = float(info["std"][0]), info["mean"][0]
    per_h = np.mean(np.abs(pred - y), axis=0) * std
    with open(plots_dir / "test_mae_by_horizon.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["horizon", "mae"])
        w.writerows([[h + 1, f"{v:.6g}"] for h, v in enumerate(per_h)])
    with open(plots_dir / "test_forecast.csv", "w", newline="") as f:
        w = csv.writer(f)
        levels = sorted(bands)
        w.writerow(["step", "actual", "forecast",
                    *[f"{side}_{intervals.level_key(lv)}" for lv in levels for side in ("lower", "upper")]])
        for h in range(y.shape[1]):
            edges = [f"{bands[lv][j][0, h]:.6g}" for lv in levels for j in (0, 1)]
            w.writerow([h + 1, f"{y[0, h] * std + mean:.6g}", f"{pred[0, h] * std + mean:.6g}", *edges])


def baseline_forecasts(x: np.ndarray, horizon: int, info: dict[str, Any], prepared_dir: Path,
                       split: str) -> dict[str, np.ndarray]:
    """The baselines' normalised forecasts of a split's windows (those this task has)."""
    out = {"naive": baselines.naive(x, horizon)}
    if info.get("period"):
        out["seasonal_naive"] = baselines.seasonal_naive(x, horizon, int(info["period"]))
    sarimax = load_baseline(prepared_dir, split)
    if sarimax is not None:
        out["sarimax"] = sarimax
    return out


def evaluate(model_dir: Path, prepared_dir: Path, plots_dir: Path, params: dict[str, Any]) -> dict[str, float]:
    """Model vs the baselines on val and test, the intervals' scores on test; writes plots."""
    model, config = load_model(model_dir)
    info = read_json(prepared_dir / "info.json")
    std, mean = float(info["std"][0]), float(info["mean"][0])
    record = intervals.read(model_dir)
    levels = [float(v) for v in params.get("interval_levels", DEFAULT_LEVELS)] if record else []
    for level in levels:  # a level the calibration cannot give is a params mistake: say which
        try:
            intervals.halfwidths(record, level)
        except ValueError as e:
            raise ConfigError(f"params: forecaster evaluate.interval_levels: {e}") from None
    metrics: dict[str, float] = {}
    plots_dir.mkdir(parents=True, exist_ok=True)
    for split in ("val", "test"):
        x, y, origins, future = load_split_with_future(prepared_dir, split, info)
        pred = predict_array(model, x, future=future)
        metrics.update(error_metrics(pred, y, std, split))
        for name, forecast in baseline_forecasts(x, y.shape[1], info, prepared_dir, split).items():
            metrics.update({f"{k}_{name}": v for k, v in error_metrics(forecast, y, std, split).items()})
        if split == "test":
            target = x[:, :, 0] * std + mean
            bands = {lv: intervals.bounds(pred * std + mean, record, lv, target) for lv in levels}
            if record:
                metrics.update(intervals.scores(y * std + mean, pred * std + mean, target, record, levels, "test"))
            _write_test_csvs(plots_dir, pred, y, info, bands)
            n_plot = int(params.get("n_plot_series", 3))
            _plot_forecasts(plots_dir / "forecast_vs_actual.png", x, y, pred, info, origins, n_plot, bands)
    metrics["epochs_trained"] = float(len(config.get("history", [])))
    return metrics
