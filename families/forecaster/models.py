"""The forecaster zoo (book ch. 15): baselines, linear, RNN/LSTM/GRU, LayerNorm RNN, Conv1D+GRU, WaveNet.

Every network maps x of shape (batch, time, features) to forecasts. Two heads:
- `seq2vec`: one vector of `horizon` values from the last time step (book rows 8-9);
- `seq2seq`: `horizon` values at *every* time step (book rows 10-17); the forecast is the last step.
`step_index(T)` says which input steps a seq2seq output row belongs to (Conv1D downsamples).
A model trained with horizon 1 can forecast further one step at a time (`forecast_iterative`).

New model: write the nn.Module, add it to ZOO, give it a search space in params.yaml.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from components.config import ConfigError, validate_model

Head = Literal["seq2vec", "seq2seq"]


class HParams(BaseModel):
    """Every forecaster knob, validated: a typo or a bad value names its key."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["linear", "rnn", "lstm", "gru", "ln_rnn", "conv_gru", "wavenet"]
    head: Head = "seq2seq"
    hidden: int = Field(20, gt=0, le=1024)
    layers: int = Field(2, gt=0, le=8)
    dropout: float = Field(0.0, ge=0, lt=1)
    lr: float = Field(1e-3, gt=0, lt=1)
    batch_size: int = Field(32, gt=0, le=4096)
    clip_norm: float | None = Field(None, gt=0)
    kernel_size: int = Field(2, gt=0, le=16)
    dilations: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 1, 2, 4, 8])


def validate_hparams(raw: dict[str, Any]) -> dict[str, Any]:
    hp = validate_model(HParams, raw, "forecaster hparams")
    if hp.model == "linear" and hp.head != "seq2vec":
        raise ConfigError("forecaster hparams: head: the linear model only has a seq2vec head")
    return hp.model_dump()


class LinearForecaster(nn.Module):
    """Flatten the window, one dense layer (book rows 2 and 8)."""

    def __init__(self, seq_len: int, n_features: int, horizon: int, **_: Any) -> None:
        super().__init__()
        self.seq_len = seq_len
        self.dense = nn.Linear(seq_len * n_features, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.seq_len:
            x = x[:, -self.seq_len :]
        return self.dense(x.flatten(1))


class LNSimpleRNNCell(nn.Module):
    """The book's LNSimpleRNNCell: linear recurrence -> LayerNorm -> tanh (hand-written loop)."""

    def __init__(self, n_inputs: int, hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(n_inputs + hidden, hidden)
        self.norm = nn.LayerNorm(hidden)
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden)
        outputs = []
        for t in range(x.shape[1]):
            h = torch.tanh(self.norm(self.linear(torch.cat([x[:, t], h], dim=1))))
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class RecurrentForecaster(nn.Module):
    """Stacked SimpleRNN / LSTM / GRU / LN-RNN with a seq2vec or seq2seq dense head."""

    def __init__(
        self, cell: str, n_features: int, horizon: int, hidden: int, layers: int, dropout: float, head: Head, **_: Any
    ) -> None:
        super().__init__()
        self.head = head
        if cell == "ln_rnn":
            cells = [LNSimpleRNNCell(n_features if i == 0 else hidden, hidden) for i in range(layers)]
            self.rnn: nn.Module = nn.Sequential(*cells)
            self._custom = True
        else:
            rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
            self.rnn = rnn_cls(n_features, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
            self._custom = False
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.rnn(x) if self._custom else self.rnn(x)[0]
        seq = self.drop(seq)
        if self.head == "seq2vec":
            return self.out(seq[:, -1])
        return self.out(seq)

    def step_index(self, seq_len: int) -> torch.Tensor:
        return torch.arange(seq_len)


class ConvGRUForecaster(nn.Module):
    """Conv1D(k=4, stride 2) then GRUs (book row 16): targets downsampled to every 2nd step from 3."""

    def __init__(self, n_features: int, horizon: int, hidden: int, layers: int, dropout: float, head: Head, **_: Any):
        super().__init__()
        self.head = head
        self.conv = nn.Conv1d(n_features, hidden, kernel_size=4, stride=2)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, horizon)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.conv(x.transpose(1, 2)).transpose(1, 2)
        seq = self.gru(z)[0]
        return self.out(seq[:, -1]) if self.head == "seq2vec" else self.out(seq)

    def step_index(self, seq_len: int) -> torch.Tensor:
        return torch.arange(3, seq_len, 2)[: (seq_len - 4) // 2 + 1]


class CausalConv1d(nn.Conv1d):
    """Conv1D(padding="causal"): left-pad by (k-1)*dilation so step t sees only <= t."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.kernel_size[0] - 1) * self.dilation[0]
        return super().forward(nn.functional.pad(x, (pad, 0)))


class WaveNetForecaster(nn.Module):
    """WaveNet-lite (book row 17): dilated causal convolutions, ReLU, then a 1x1 conv to the horizon."""

    def __init__(
        self, n_features: int, horizon: int, hidden: int, kernel_size: int, dilations: list[int], dropout: float,
        head: Head, **_: Any,
    ):
        super().__init__()
        self.head = head
        layers: list[nn.Module] = []
        channels = n_features
        for d in dilations:
            layers += [CausalConv1d(channels, hidden, kernel_size, dilation=d), nn.ReLU(), nn.Dropout(dropout)]
            channels = hidden
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv1d(hidden, horizon, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.out(self.convs(x.transpose(1, 2))).transpose(1, 2)
        return seq[:, -1] if self.head == "seq2vec" else seq

    def step_index(self, seq_len: int) -> torch.Tensor:
        return torch.arange(seq_len)


def build(hparams: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    """hparams (validated) + data info (features, horizon, seq_len) -> an initialised module."""
    hp = {**hparams, "n_features": len(info["features"]), "horizon": int(info["horizon"]), "seq_len": int(info["seq_len"])}
    name = hp["model"]
    if name == "linear":
        return LinearForecaster(**hp)
    if name in ("rnn", "lstm", "gru", "ln_rnn"):
        return RecurrentForecaster(cell=name, **hp)
    if name == "conv_gru":
        return ConvGRUForecaster(**hp)
    if name == "wavenet":
        return WaveNetForecaster(**hp)
    raise ConfigError(f"forecaster: unknown model {name!r}")


ZOO = ("linear", "rnn", "lstm", "gru", "ln_rnn", "conv_gru", "wavenet")


def forecast(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """All-at-once forecast, (batch, horizon): the seq2vec output, or a seq2seq model's last step."""
    out = model(x)
    return out[:, -1] if out.dim() == 3 else out


def forecast_iterative(model: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """One step at a time fed back (book row 6): needs a univariate model trained with horizon 1."""
    if x.shape[2] != 1:
        raise ValueError("iterative forecasting feeds predictions back, so the series must be univariate")
    preds = []
    for _ in range(steps):
        y = forecast(model, x)[:, :1]
        preds.append(y)
        x = torch.cat([x, y[:, :, None]], dim=1)
    return torch.cat(preds, dim=1)


# ----------------------------------------------------------------------------- baselines (no training)
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


def unwrap_step_index(model: nn.Module, seq_len: int) -> torch.Tensor:
    """Which input steps a seq2seq output row forecasts from (DDP wraps the module)."""
    return getattr(model, "module", model).step_index(seq_len)
