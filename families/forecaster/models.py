"""The forecaster zoo (book ch. 15): linear, RNN/LSTM/GRU, LayerNorm RNN, Conv1D+GRU, WaveNet.

Every network maps x of shape (batch, time, features) to forecasts. Two heads:
- `seq2vec`: one vector of `horizon` values from the last time step (book rows 8-9);
- `seq2seq`: `horizon` values at *every* time step (book rows 10-17); the forecast is the last step.
`step_index(T)` says which input steps a seq2seq output row belongs to (Conv1D downsamples).
A model trained with horizon 1 can forecast further one step at a time (`forecast_iterative`).

Each model is declared once in `MODELS`: its own hyperparameters (a pydantic class sharing the
training knobs of `Common`), its constructor and its default search space. New model: write the
nn.Module and its builder, add a `ModelSpec`. The baselines that need no training (naive,
seasonal naive, SARIMA) are not modules: they live in `baselines.py`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from components.config import ConfigError
from components.family import ModelSpec, zoo

Head = Literal["seq2vec", "seq2seq"]


# ----------------------------------------------------------------------------- hyperparameters
class Common(BaseModel):
    """What every forecaster takes: its head and the supervised loop's knobs."""

    model_config = ConfigDict(extra="forbid")

    head: Head = "seq2seq"
    lr: float = Field(1e-3, gt=0, lt=1)
    batch_size: int = Field(32, gt=0, le=4096)
    clip_norm: float | None = Field(None, gt=0)


class LinearHParams(Common):
    """One dense layer over the flattened window: it forecasts all `horizon` values at once, so
    it has only the seq2vec head (its default, unlike the sequence models)."""

    head: Head = "seq2vec"

    @field_validator("head")
    @classmethod
    def _seq2vec_only(cls, head: str) -> str:
        if head != "seq2vec":
            raise ValueError("the linear model only has a seq2vec head")
        return head


class RecurrentHParams(Common):
    """Stacked recurrent layers (also the GRUs after conv_gru's convolution)."""

    hidden: int = Field(20, gt=0, le=1024)
    layers: int = Field(2, gt=0, le=8)
    dropout: float = Field(0.0, ge=0, lt=1)


class WaveNetHParams(Common):
    """Dilated causal convolutions: one layer per dilation, so no `layers`."""

    hidden: int = Field(20, gt=0, le=1024)
    dropout: float = Field(0.0, ge=0, lt=1)
    kernel_size: int = Field(2, gt=0, le=16)
    dilations: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 1, 2, 4, 8])


def dims(info: dict[str, Any]) -> tuple[int, int, int]:
    """(n_features, horizon, seq_len) of a prepared split's info.json."""
    return len(info["features"]), int(info["horizon"]), int(info["seq_len"])


# ----------------------------------------------------------------------------- modules
class LinearForecaster(nn.Module):
    """Flatten the window, one dense layer (book rows 2 and 8)."""

    def __init__(self, seq_len: int, n_features: int, horizon: int) -> None:
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
        self, cell: str, n_features: int, horizon: int, hidden: int, layers: int, dropout: float, head: Head,
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

    def __init__(self, n_features: int, horizon: int, hidden: int, layers: int, dropout: float, head: Head) -> None:
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
        head: Head,
    ) -> None:
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


# ----------------------------------------------------------------------------- builders
# (validated hparams, info) -> module. They read only their model's own keys, so a model dir
# written when every forecaster shared one bag of hparams still builds.
def build_linear(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    n_features, horizon, seq_len = dims(info)
    return LinearForecaster(seq_len, n_features, horizon)


def build_recurrent(cell: str, hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    n_features, horizon, _ = dims(info)
    return RecurrentForecaster(cell, n_features, horizon, int(hp["hidden"]), int(hp["layers"]), float(hp["dropout"]),
                               hp["head"])


def build_conv_gru(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    n_features, horizon, _ = dims(info)
    return ConvGRUForecaster(n_features, horizon, int(hp["hidden"]), int(hp["layers"]), float(hp["dropout"]),
                             hp["head"])


def build_wavenet(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    n_features, horizon, _ = dims(info)
    return WaveNetForecaster(n_features, horizon, int(hp["hidden"]), int(hp["kernel_size"]), list(hp["dilations"]),
                             float(hp["dropout"]), hp["head"])


# ----------------------------------------------------------------------------- the zoo
# Default search spaces (ModelSpec.space), the ones params.yaml searches for synthetic; the
# params files give every task its own.
LR = {"lr": {"loguniform": [1e-3, 2e-2]}}
SIZED = {**LR, "hidden": {"choice": [20, 32]}}

MODELS = zoo(
    ModelSpec("linear", LinearHParams, build_linear, LR, doc="flattened window -> one dense layer (book rows 2, 8)"),
    ModelSpec("rnn", RecurrentHParams, partial(build_recurrent, "rnn"), SIZED,
              doc="stacked SimpleRNN (book rows 5, 9, 10)"),
    ModelSpec("lstm", RecurrentHParams, partial(build_recurrent, "lstm"), SIZED, doc="stacked LSTM (book row 14)"),
    ModelSpec("gru", RecurrentHParams, partial(build_recurrent, "gru"), SIZED, doc="stacked GRU (book row 15)"),
    ModelSpec("ln_rnn", RecurrentHParams, partial(build_recurrent, "ln_rnn"), SIZED,
              doc="LayerNorm SimpleRNN cells (book row 12)"),
    ModelSpec("conv_gru", RecurrentHParams, build_conv_gru, SIZED, doc="Conv1D(k4, s2) then GRUs (book row 16)"),
    ModelSpec("wavenet", WaveNetHParams, build_wavenet, SIZED, doc="dilated causal convolutions (book row 17)"),
)

def build(hparams: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    """hparams (validated; `model` names the model) + data info (features, horizon, seq_len) -> an
    initialised module (PyTorch's default init, drawn from the global RNG)."""
    name = hparams["model"]
    if name not in MODELS:
        raise ConfigError(f"forecaster: unknown model {name!r} (known: {', '.join(MODELS)})")
    return MODELS[name].build(hparams, info)


# ----------------------------------------------------------------------------- reading the output
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
