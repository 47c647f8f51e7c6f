"""Prediction intervals by split conformal prediction, for every forecaster.

Why conformal and not quantile heads: it needs no change to any model or loss, and its coverage
guarantee holds for any point forecaster when calibration and test windows are exchangeable.
After training, the absolute errors of the best weights on the validation windows, each divided
by its window's scale (the standard deviation of the target over the window's last `window`
steps: locally weighted conformal prediction, Lei et al. 2018), are kept per horizon step
(`calibration.json` in the model dir). The interval at level L of step h is the point forecast
+- scale(window) x the ceil((n+1) L)-th smallest of the n scaled calibration errors of step h.
Any scale computed from the input keeps the guarantee; this one widens the bands of volatile
windows and narrows calm ones, which matters when the test period is calmer or wilder than the
validation one (vic_elec: validation is summer and autumn, test winter and spring, where the
guarantee does not hold and the measured coverage says by how much). Serving answers any level
from the same file.

All arrays here are in data units; `evaluate` scores coverage, mean width and the Winkler score.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from components.data import read_json, write_text_atomic

CALIBRATION_FILE = "calibration.json"
MAX_LEVELS = 5


SCALE_WINDOW = 28


def window_scale(target: np.ndarray, window: int = SCALE_WINDOW) -> np.ndarray:
    """(n, 1): the std of each input window's target over its last `window` steps (data units),
    floored so a flat window does not give a zero-width band."""
    target = np.asarray(target, np.float64)[:, -window:]
    s = target.std(axis=1, keepdims=True)
    return np.maximum(s, 1e-6 * (np.abs(target).mean(axis=1, keepdims=True) + 1.0))


def calibration(pred: np.ndarray, y: np.ndarray, target: np.ndarray, window: int = SCALE_WINDOW) -> dict[str, Any]:
    """The calibration record of validation forecasts `pred` against `y`, both (n, horizon), whose
    input windows' target values are `target` (n, T), all in data units."""
    errors = np.abs(np.asarray(pred, np.float64) - np.asarray(y, np.float64)) / window_scale(target, window)
    return {"method": "locally weighted split-conformal", "split": "val", "n": int(errors.shape[0]),
            "scale": "std of the target over the window's last steps", "window": int(window),
            "scaled_abs_errors_by_step": np.sort(errors, axis=0).T.round(8).tolist()}


def max_level(n: int) -> float:
    """The highest level n calibration windows can give a finite interval for: ceil((n+1)L) <= n."""
    return n / (n + 1)


def halfwidths(record: dict[str, Any], level: float) -> np.ndarray:
    """(horizon,) half-widths at `level` for a window of scale 1; a ValueError when n windows cannot
    give it."""
    errors = np.asarray(record["scaled_abs_errors_by_step"], np.float64)  # (horizon, n), sorted per step
    n = errors.shape[1]
    if not 0 < level < 1:
        raise ValueError(f"interval level {level} must be between 0 and 1")
    rank = math.ceil((n + 1) * level)
    if rank > n:
        raise ValueError(f"interval level {level} needs more than the {n} calibration windows this model has "
                         f"(highest level: {max_level(n):.4f})")
    return errors[:, rank - 1]


def bounds(pred: np.ndarray, record: dict[str, Any], level: float, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) of point forecasts `pred` (n, h), h <= the calibrated horizon, from input
    windows whose target values are `target` (n, T)."""
    half = halfwidths(record, level)[None, : pred.shape[1]] * window_scale(target, int(record["window"]))
    return pred - half, pred + half


def coverage(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """The fraction of actual values inside their interval."""
    return float(np.mean((y >= lower) & (y <= upper)))


def winkler(y: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: float) -> float:
    """Mean Winkler score: the width, plus 2/alpha times how far an actual value falls outside."""
    alpha = 1 - level
    penalty = (2 / alpha) * (np.maximum(lower - y, 0) + np.maximum(y - upper, 0))
    return float(np.mean(upper - lower + penalty))


def level_key(level: float) -> str:
    """0.8 -> "80", 0.95 -> "95", 0.975 -> "97.5": the metric-name suffix of a level."""
    return f"{level * 100:.10g}"


def scores(y: np.ndarray, pred: np.ndarray, target: np.ndarray, record: dict[str, Any], levels: list[float],
           prefix: str) -> dict[str, float]:
    """coverage / mean width / Winkler per level, e.g. test_coverage_80."""
    out = {}
    for level in levels:
        lower, upper = bounds(pred, record, level, target)
        k = level_key(level)
        out[f"{prefix}_coverage_{k}"] = coverage(y, lower, upper)
        out[f"{prefix}_width_{k}"] = float(np.mean(upper - lower))
        out[f"{prefix}_winkler_{k}"] = winkler(y, lower, upper, level)
    return out


def write(model_dir: Path, record: dict[str, Any]) -> None:
    import json

    write_text_atomic(Path(model_dir) / CALIBRATION_FILE, json.dumps(record, sort_keys=True) + "\n")


def read(model_dir: Path) -> dict[str, Any] | None:
    """The model dir's calibration, or None for a model dir written before intervals existed."""
    path = Path(model_dir) / CALIBRATION_FILE
    return read_json(path) if path.is_file() else None
