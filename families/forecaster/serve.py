"""Serving a forecaster: the request/response schemas of POST /forecaster/predict and the Predictor.

Requests and responses are in data units; the Predictor normalises with the training split's
mean/std (info.json) and de-normalises the forecast. A model trained with known-ahead features
(vic_elec: temperature, holiday, weekend of each forecast day) needs them in `future`, for every
day of its trained horizon. `intervals: [0.8, 0.95]` adds the conformal prediction intervals
(lower/upper per level) beside the point forecast. A horizon beyond the trained one is served
only by univariate one-step models (iterated forecasts, without intervals); anything else the
model cannot answer is a RequestError (HTTP 422) saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components.data import read_json
from components.family import RequestError
from families.forecaster import intervals, models
from families.forecaster.evaluate import DEFAULT_LEVELS, load_model, read_examples

MAX_SERIES_PER_REQUEST = 256
MAX_SERIES_LENGTH = 2000
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
    future: list[list[list[Finite]]] | None = Field(
        None, max_length=MAX_SERIES_PER_REQUEST,
        description="per series, the known-ahead features of each forecast day of the model's trained horizon "
                    "(vic_elec: [[[temperature, holiday, weekend], ...14 days], ...]); only for models trained with them",
    )
    intervals: list[Annotated[float, Field(gt=0, lt=1)]] | None = Field(
        None, min_length=1, max_length=intervals.MAX_LEVELS,
        description="prediction-interval levels, e.g. [0.8, 0.95]: conformal lower/upper bounds per level",
    )


class Interval(BaseModel):
    level: float
    lower: list[list[float]]
    upper: list[list[float]]


class ForecastResponse(BaseModel):
    task: str
    model_version: str | None = None
    forecast: list[list[float]]
    intervals: list[Interval] | None = None


class ExampleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="forecaster task, e.g. 'synthetic' or 'vic_elec'")
    index: int = Field(0, ge=0, le=1000, description="which of the model's held-out test windows")


class ExampleResponse(BaseModel):
    task: str
    model_version: str | None = None
    index: int
    count: int = Field(description="how many test windows this model carries")
    origin: str = Field(description="the window's forecast origin (a date, or a step number)")
    feature_names: list[str]
    series: list[list[float]] = Field(description="the input window, one row of feature values per step")
    future: list[list[float]] | None = Field(None, description="the known-ahead features of each forecast day")
    actual: list[float] = Field(description="what happened over the trained horizon")
    horizon: int
    interval_levels: list[float] = Field(description="levels this model's calibration can give (empty: none)")


class Predictor:
    """Loads a model dir; turns requests in data units into forecasts in data units."""

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.model, self.config = load_model(Path(model_dir))
        self.info = self.config["info"]
        self.task = self.config["task"]
        self.model_version = model_version
        self.n_features = len(self.info["features"])
        self.n_future = models.n_future(self.info)
        self.trained_horizon = int(self.info["horizon"])
        self.calibration = intervals.read(Path(model_dir))
        self.examples = read_examples(Path(model_dir))
        # The linear model reads exactly its window; the sequence models read any length (conv_gru >= 4).
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

    def _future(self, req: ForecastRequest) -> np.ndarray | None:
        """The request's known-ahead features, normalised like the window's, (series, horizon, k)."""
        if not self.n_future:
            if req.future is not None:
                raise RequestError(f"task {self.task!r}: this model takes no future features; send none")
            return None
        names = ", ".join(self.info["future_features"])
        if req.future is None:
            raise RequestError(f"task {self.task!r} needs `future`: per series, [{names}] for each of the "
                               f"{self.trained_horizon} forecast days")
        shapes = {(len(f), *{len(day) for day in f}) for f in req.future}
        if len(req.future) != len(req.series) or shapes != {(self.trained_horizon, self.n_future)}:
            raise RequestError(f"future must give, for each of the {len(req.series)} series, {self.trained_horizon} "
                               f"days of [{names}] ({self.n_future} values each)")
        mean = np.asarray(self.info["mean"][1:], np.float32)
        std = np.asarray(self.info["std"][1:], np.float32)
        return (np.asarray(req.future, np.float32) - mean) / std

    def _check_intervals(self, req: ForecastRequest, iterate: bool) -> None:
        if not req.intervals:
            return
        if self.calibration is None:
            raise RequestError("this model version has no interval calibration (trained before intervals existed)")
        if iterate:
            raise RequestError(f"intervals are calibrated for horizons up to {self.trained_horizon}, not iterated forecasts")
        for level in req.intervals:
            try:
                intervals.halfwidths(self.calibration, level)
            except ValueError as e:
                raise RequestError(str(e)) from None

    def _intervals(self, req: ForecastRequest, forecast: np.ndarray) -> list[Interval] | None:
        if not req.intervals:
            return None
        target = np.asarray([[step[0] if isinstance(step, list) else step for step in s] for s in req.series], np.float64)
        out = []
        for level in req.intervals:
            lower, upper = intervals.bounds(forecast, self.calibration, level, target)
            if not (np.isfinite(lower).all() and np.isfinite(upper).all()):
                raise RequestError("series values too large for this model: the interval overflows (not finite)")
            out.append(Interval(level=level, lower=lower.astype(float).tolist(), upper=upper.astype(float).tolist()))
        return out

    def _iterates(self, horizon: int) -> bool:
        """True when the forecast must be iterated one step at a time."""
        if horizon <= self.trained_horizon:
            return False
        if self.trained_horizon == 1 and self.n_features == 1:
            return True
        raise RequestError(f"horizon {horizon} exceeds the {self.trained_horizon} steps this model was trained for")

    def example_batch(self, reqs: list[ExampleRequest]) -> list[ExampleResponse]:
        """The "example" route: a held-out test window to forecast (the demo page draws it)."""
        return [self._example(r) for r in reqs]

    def _example(self, req: ExampleRequest) -> ExampleResponse:
        if req.task != self.task:
            raise RequestError(f"this model forecasts task {self.task!r}, not {req.task!r}")
        if self.examples is None:
            raise RequestError(f"model version {self.model_version} carries no test windows (trained before "
                               "examples.json existed); send your own series to /forecaster/predict")
        windows = self.examples["windows"]
        if req.index >= len(windows):
            raise RequestError(f"index {req.index} is out of range: this model carries {len(windows)} test windows "
                               f"(0..{len(windows) - 1})")
        w = windows[req.index]
        levels = []
        for level in DEFAULT_LEVELS if self.calibration is not None else ():
            try:
                intervals.halfwidths(self.calibration, level)
                levels.append(level)
            except ValueError:  # too few calibration windows for this level
                pass
        return ExampleResponse(task=self.task, model_version=self.model_version, index=req.index, count=len(windows),
                               origin=w["origin"], feature_names=self.examples["feature_names"], series=w["series"],
                               future=w["future"], actual=w["actual"], horizon=self.trained_horizon,
                               interval_levels=levels)

    def predict_batch(self, reqs: list[ForecastRequest]) -> list[ForecastResponse]:
        """The "predict" route. Requests with the same length and mode share one forward pass
        (Serve batches them)."""
        mean, std = float(self.info["mean"][0]), float(self.info["std"][0])
        prepared = [(self._as_array(r), self._iterates(r.horizon), self._future(r)) for r in reqs]
        for r, (_, iterate, _) in zip(reqs, prepared):
            self._check_intervals(r, iterate)
        groups: dict[tuple[int, bool], list[int]] = {}
        for i, (arr, iterate, _) in enumerate(prepared):
            groups.setdefault((arr.shape[1], iterate), []).append(i)
        out: list[np.ndarray | None] = [None] * len(reqs)
        with torch.no_grad():
            for (_, iterate), idx in groups.items():
                x = torch.from_numpy(np.concatenate([prepared[i][0] for i in idx]))
                future = None if not self.n_future else torch.from_numpy(np.concatenate([prepared[i][2] for i in idx]))
                steps = max(reqs[i].horizon for i in idx)
                y = (models.forecast_iterative(self.model, x, steps) if iterate
                     else models.forecast(self.model, x, future)).numpy()
                start = 0
                for i in idx:
                    n = len(reqs[i].series)
                    out[i] = y[start : start + n, : reqs[i].horizon] * std + mean
                    start += n
        if not all(np.isfinite(o).all() for o in out):  # inputs far outside the training range
            raise RequestError("series values too large for this model: the forecast overflows (not finite)")
        return [
            ForecastResponse(task=r.task, model_version=self.model_version, forecast=o.astype(float).tolist(),
                             intervals=self._intervals(r, o))
            for r, o in zip(reqs, out)
        ]


def input_example(model_dir: Path) -> dict[str, Any]:
    """A valid request for this model dir: one window of the training length, drawn around the
    data's mean and std (seeded, so the MLflow signature's example is reproducible)."""
    config = read_json(Path(model_dir) / "config.json")
    info = config["info"]
    t, f = int(info["seq_len"]), len(info["features"])
    rng = np.random.RandomState(0)
    mean, std = np.asarray(info["mean"]), np.asarray(info["std"])
    window = (rng.randn(t, f) * std + mean).round(3)
    series = window[:, 0].tolist() if f == 1 else window.tolist()
    request = {"task": config["task"], "series": [series], "horizon": int(info["horizon"])}
    k = models.n_future(info)
    if k:  # the known-ahead features: the window's last day repeated
        request["future"] = [[window[-1, 1:].tolist() for _ in range(int(info["horizon"]))]]
    if intervals.read(Path(model_dir)) is not None:
        request["intervals"] = [0.8]
    return request
