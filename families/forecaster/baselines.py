"""Forecasts that need no training: the yardsticks every forecaster is compared with.

Not modules of the zoo (nothing to fit or serve): `evaluate` scores the naive ones beside the
model, the benchmark adds SARIMA. x is normalised input of shape (batch, time, features) whose
feature 0 is the target.
"""

from __future__ import annotations

import numpy as np


def naive(x: np.ndarray, horizon: int) -> np.ndarray:
    """Repeat the last observed target value (book rows 1 and 7)."""
    return np.repeat(x[:, -1:, 0], horizon, axis=1)


def seasonal_naive(x: np.ndarray, horizon: int, period: int) -> np.ndarray:
    """Value one season earlier: y[T+h] = x[T+h-period*ceil((h+1)/period)]."""
    T = x.shape[1]
    idx = [T + h - period * ((h // period) + 1) for h in range(horizon)]
    return x[:, idx, 0]


def sarima_forecasts(
    history: np.ndarray, origins: list[int], horizon: int, order=(1, 0, 0), seasonal_order=(0, 1, 1, 7)
) -> np.ndarray:
    """SARIMA reference (statsmodels): fit once on the history before the first origin, then
    extend the state to each origin with fixed parameters and forecast `horizon` steps."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    first = origins[0]
    fit = SARIMAX(history[:first], order=order, seasonal_order=seasonal_order).fit(disp=False)
    out = np.empty((len(origins), horizon))
    for i, origin in enumerate(origins):
        res = fit.apply(history[:origin])
        out[i] = res.forecast(horizon)
    return out
