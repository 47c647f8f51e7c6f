"""How a trained forecaster is judged: val and test metrics beside the naive baselines, and plots.

Metrics are in data units, computed exactly as during training (`train.error_metrics`), so the
evaluate stage's val metric is the best epoch's. The plots are a PNG of a few test forecasts and
two CSVs for `dvc plots` (MAE by horizon, the first test window's forecast).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components import modeldir
from components.data import read_json
from families.forecaster import baselines, models
from families.forecaster.data import load_split
from families.forecaster.train import error_metrics


def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model dir -> (the module in eval mode, its config.json)."""
    return modeldir.load_model(model_dir, models.build)


def predict_array(model: torch.nn.Module, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """All-at-once forecasts of normalised windows, (n, horizon), in batches."""
    model.eval()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(models.forecast(model, torch.from_numpy(x[i : i + batch_size])).numpy())
    return np.concatenate(outs)


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


def _write_test_csvs(plots_dir: Path, pred: np.ndarray, y: np.ndarray, info: dict[str, Any]) -> None:
    std, mean = float(info["std"][0]), info["mean"][0]
    per_h = np.mean(np.abs(pred - y), axis=0) * std
    with open(plots_dir / "test_mae_by_horizon.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["horizon", "mae"])
        w.writerows([[h + 1, f"{v:.6g}"] for h, v in enumerate(per_h)])
    with open(plots_dir / "test_forecast.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "actual", "forecast"])
        for h in range(y.shape[1]):
            w.writerow([h + 1, f"{y[0, h] * std + mean:.6g}", f"{pred[0, h] * std + mean:.6g}"])


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
        naive = baselines.naive(x, y.shape[1])
        metrics.update({k + "_naive": v for k, v in error_metrics(naive, y, std, split).items()})
        if info.get("period"):
            sn = baselines.seasonal_naive(x, y.shape[1], int(info["period"]))
            metrics.update({k + "_seasonal_naive": v for k, v in error_metrics(sn, y, std, split).items()})
        if split == "test":
            _write_test_csvs(plots_dir, pred, y, info)
            n_plot = int(params.get("n_plot_series", 3))
            _plot_forecasts(plots_dir / "forecast_vs_actual.png", x, y, pred, info, origins, n_plot)
    metrics["epochs_trained"] = float(len(config.get("history", [])))
    return metrics
