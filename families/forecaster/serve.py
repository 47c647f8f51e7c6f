"""Serving a forecaster: the request/response schemas of POST /forecaster/predict and the Predictor.

Requests and responses are in data units; the Predictor normalises with the training split's
mean/std (info.json) and de-normalises the forecast. A horizon beyond the trained one is served
only by univariate one-step models (iterated forecasts); anything else the model cannot answer
is a RequestError (HTTP 422) saying why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components.data import read_json
from components.family import RequestError
from families.forecaster import models
from families.forecaster.evaluate import load_model

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


class ForecastResponse(BaseModel):
    task: str
    model_version: str | None = None
    forecast: list[list[float]]


class Predictor:
    """Loads a model dir; turns requests in data units into forecasts in data units."""

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.model, self.config = load_model(Path(model_dir))
        self.info = self.config["info"]
        self.task = self.config["task"]
        self.model_version = model_version
        self.n_features = len(self.info["features"])
        self.trained_horizon = int(self.info["horizon"])
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

    def _iterates(self, horizon: int) -> bool:
        """True when the forecast must be iterated one step at a time."""
        if horizon <= self.trained_horizon:
            return False
        if self.trained_horizon == 1 and self.n_features == 1:
            return True
        raise RequestError(f"horizon {horizon} exceeds the {self.trained_horizon} steps this model was trained for")

    def predict_batch(self, reqs: list[ForecastRequest]) -> list[ForecastResponse]:
        """The "predict" route. Requests with the same length and mode share one forward pass
        (Serve batches them)."""
        mean, std = float(self.info["mean"][0]), float(self.info["std"][0])
        prepared = [(self._as_array(r), self._iterates(r.horizon)) for r in reqs]
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
    """A valid request for this model dir: one window of the training length, drawn around the
    data's mean and std (seeded, so the MLflow signature's example is reproducible)."""
    config = read_json(Path(model_dir) / "config.json")
    info = config["info"]
    t, f = int(info["seq_len"]), len(info["features"])
    rng = np.random.RandomState(0)
    mean, std = np.asarray(info["mean"]), np.asarray(info["std"])
    window = (rng.randn(t, f) * std + mean).round(3)
    series = window[:, 0].tolist() if f == 1 else window.tolist()
    return {"task": config["task"], "series": [series], "horizon": int(info["horizon"])}
