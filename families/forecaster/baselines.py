"""Forecasts that need no training: the yardsticks every forecaster is compared with.

Not modules of the zoo (nothing to fit or serve): `evaluate` scores them beside the model and
`register` refuses to promote a model one of them beats. The naive ones read only the window;
the dynamic regression (SARIMAX with weather and calendar regressors, Hyndman & Athanasopoulos'
model of this series) needs the whole history, so `prepare` fits it and stores its forecasts of
the val and test windows. x is normalised input of shape (batch, time, features) whose feature 0
is the target.
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


def dynamic_regressors(temperature: np.ndarray, holiday: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """(days, 3): temperature, temperature squared (demand rises on hot *and* cold days) and a
    working-day flag, the regressors of Hyndman & Athanasopoulos' dynamic regression of vic_elec."""
    temperature = np.asarray(temperature, np.float64)
    working = (1 - np.asarray(holiday, np.float64)) * (1 - np.asarray(weekend, np.float64))
    return np.stack([temperature, temperature**2, working], axis=1)


def sarima_forecasts(
    history: np.ndarray, origins: list[int], horizon: int, order=(1, 0, 0), seasonal_order=(0, 1, 1, 7)
) -> np.ndarray:
    """SARIMA reference (statsmodels): fit once on the history before the first origin, then
    extend the state to each origin with fixed parameters and forecast `horizon` steps."""
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    return sarimax_forecasts(history, None, origins, horizon, order, seasonal_order)


def sarimax_forecasts(
    history: np.ndarray, exog: np.ndarray | None, origins: list[int], horizon: int, order=(1, 0, 0),
    seasonal_order=(0, 1, 1, 7),
) -> np.ndarray:
    """(len(origins), horizon) forecasts: fit once on the history before the first origin, then
    extend the state to each origin with the parameters fixed and forecast `horizon` steps, with
    the regressors' observed values over the horizon (`exog` rows aligned with `history`; an
    ex-post forecast, as the textbook evaluates it: in use they would be a weather forecast).
    Origins ascending. `extend` filters only the new days (re-`apply`ing the whole history per
    origin gave the same forecasts to 1e-15 relative, 30x slower)."""
    import warnings

    from statsmodels.tsa.statespace.sarimax import SARIMAX

    def rows(a: np.ndarray | None, s: slice) -> np.ndarray | None:
        return None if a is None else a[s]

    first = origins[0]
    with warnings.catch_warnings():  # convergence chatter on a fit that is only a yardstick
        warnings.simplefilter("ignore")
        fit = SARIMAX(history[:first], exog=rows(exog, slice(0, first)), order=order,
                      seasonal_order=seasonal_order).fit(disp=False, maxiter=200)
        out = np.empty((len(origins), horizon))
        res, seen = fit, first
        for i, origin in enumerate(origins):
            if origin < seen:
                raise ValueError("sarimax_forecasts needs ascending origins")
            if origin > seen:
                res = res.extend(history[seen:origin], exog=rows(exog, slice(seen, origin)))
                seen = origin
            out[i] = res.forecast(horizon, exog=rows(exog, slice(origin, origin + horizon)))
    return out
