"""The forecaster zoo (book ch. 15): linear, RNN/LSTM/GRU, LayerNorm RNN, Conv1D+GRU, WaveNet.

Every network maps x of shape (batch, time, features) to forecasts. Two heads:
- `seq2vec`: one vector of `horizon` values from the last time step (book rows 8-9);
- `seq2seq`: `horizon` values at *every* time step (book rows 10-17); the forecast is the last step.
`step_index(T)` says which input steps a seq2seq output row belongs to (Conv1D downsamples).
A model trained with horizon 1 can forecast further one step at a time (`forecast_iterative`).

Known-ahead covariates (vic_elec's temperature, holiday, weekend of the forecast days, `future`
of shape (batch, horizon, k)): every head also reads, for the step it forecasts from, the known
features of the `horizon` days it forecasts, and their squares (demand rises on hot and on cold
days: the dynamic regression's temperature²). So the linear model is the dynamic regression
without the ARIMA errors, and the sequence models see tomorrow's weather, not only today's.

Each model is declared once in `MODELS`: its own hyperparameters (a pydantic class sharing the
training knobs of `Common`), its constructor and its default search space. New model: write the
nn.Module and its builder, add a `ModelSpec`. The baselines that need no training (naive,
seasonal naive, SARIMA) are not modules: they live in `baselines.py`.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from components.config import ConfigError
from components.family import ModelSpec, zoo

Head = Literal["seq2vec", "seq2seq"]


# ----------------------------------------------------------------------------- hyperparameters
class Common(BaseModel):
    """What every forecaster takes: the supervised loop's knobs."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-3, gt=0, lt=1)
    batch_size: int = Field(32, gt=0, le=4096)
    clip_norm: float | None = Field(None, gt=0)


class LinearHParams(Common):
    """One dense layer over the flattened window: it forecasts all `horizon` values at once (a
    seq2vec head by construction, so it takes no `head`: a sweep's `head: seq2seq` is the
    sequence models' key and is dropped for it)."""


class SequenceHParams(Common):
    """The sequence models choose their head."""

    head: Head = "seq2seq"


class RecurrentHParams(SequenceHParams):
    """Stacked recurrent layers (also the GRUs after conv_gru's convolution).

    `dropout` drops the outputs between layers and before the head (fresh units every step);
    `recurrent_dropout` (rnn, lstm, gru only) drops units of h_{t-1} in the recurrent products with
    one mask per sequence and layer: the book's (Keras') `recurrent_dropout`, see
    `variational_recurrence`."""

    hidden: int = Field(20, gt=0, le=1024)
    layers: int = Field(2, gt=0, le=8)
    dropout: float = Field(0.0, ge=0, lt=1)
    recurrent_dropout: float = Field(0.0, ge=0, lt=1)


class WaveNetHParams(SequenceHParams):
    """Dilated causal convolutions: one layer per dilation, so no `layers`."""

    hidden: int = Field(20, gt=0, le=1024)
    dropout: float = Field(0.0, ge=0, lt=1)
    kernel_size: int = Field(2, gt=0, le=16)
    dilations: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 1, 2, 4, 8])


def dims(info: dict[str, Any]) -> tuple[int, int, int]:
    """(n_features, horizon, seq_len) of a prepared split's info.json."""
    return len(info["features"]), int(info["horizon"]), int(info["seq_len"])


def n_future(info: dict[str, Any]) -> int:
    """How many features are known ahead: they must be the window's non-target features, in order,
    since a step's covariates are read from the window and from `future` alike."""
    future = list(info.get("future_features") or [])
    if future and future != list(info["features"][1:]):
        raise ConfigError(f"forecaster: future_features {future} must be the non-target features {info['features'][1:]}")
    return len(future)


def covariate_width(info: dict[str, Any]) -> int:
    """Inputs a head reads beside the hidden state: horizon days x (k features and their squares)."""
    return int(info["horizon"]) * 2 * n_future(info)


def step_covariates(x: torch.Tensor, future: torch.Tensor | None, horizon: int, steps: torch.Tensor) -> torch.Tensor | None:
    """(batch, len(steps), horizon * 2k): for an output step t, the known features of days
    t+1 .. t+horizon (from the window while inside it, then from `future`) and their squares."""
    if future is None:
        return None
    known = torch.cat([x[:, :, 1:], future], dim=1)  # (batch, T + horizon, k)
    known = torch.cat([known, known * known], dim=2)
    windows = known.unfold(1, horizon, 1)  # window j = days j .. j+horizon-1: (batch, T+1, 2k, horizon)
    return windows[:, steps + 1].transpose(2, 3).flatten(2)


def with_covariates(hidden: torch.Tensor, cov: torch.Tensor | None) -> torch.Tensor:
    return hidden if cov is None else torch.cat([hidden, cov], dim=-1)


def check_future(model: nn.Module, x: torch.Tensor, future: torch.Tensor | None) -> None:
    """A model trained with known-ahead features needs them, of the trained shape; one trained
    without them takes none (a silent zero fill would be a wrong forecast, not an error)."""
    k = getattr(model, "n_future", 0)
    if k and future is None:
        raise ValueError(f"this model needs the {k} known-ahead feature(s) of each forecast day (future)")
    if not k and future is not None:
        raise ValueError("this model was trained without known-ahead features: send no future")
    if future is not None and (future.shape[0] != x.shape[0] or future.shape[1:] != (model.horizon, k)):
        raise ValueError(f"future must have shape (batch, {model.horizon}, {k}), got {tuple(future.shape)}")


# ----------------------------------------------------------------------------- modules
def read_out(model: nn.Module, seq: torch.Tensor, x: torch.Tensor, future: torch.Tensor | None,
             steps: torch.Tensor) -> torch.Tensor:
    """The dense head of a sequence model: seq2vec reads the last step, seq2seq every step, each
    with the covariates of the days it forecasts (`steps`: the input step of each row of `seq`)."""
    if future is None:  # the path of the models without covariates, unchanged (same bits)
        return model.out(seq[:, -1]) if model.head == "seq2vec" else model.out(seq)
    if model.head == "seq2vec":
        seq, steps = seq[:, -1:], torch.tensor([x.shape[1] - 1])
    out = model.out(with_covariates(seq, step_covariates(x, future, model.horizon, steps)))
    return out[:, -1] if model.head == "seq2vec" else out


class LinearForecaster(nn.Module):
    """Flatten the window, one dense layer (book rows 2 and 8)."""

    def __init__(self, seq_len: int, n_features: int, horizon: int, n_future: int = 0) -> None:
        super().__init__()
        self.seq_len, self.horizon, self.n_future = seq_len, horizon, n_future
        self.dense = nn.Linear(seq_len * n_features + horizon * 2 * n_future, horizon)

    def forward(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        check_future(self, x, future)
        if x.shape[1] != self.seq_len:
            x = x[:, -self.seq_len :]
        cov = step_covariates(x, future, self.horizon, torch.tensor([x.shape[1] - 1]))
        return self.dense(with_covariates(x.flatten(1), None if cov is None else cov[:, 0]))


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


def recurrent_masks(x: torch.Tensor, layers: int, hidden: int, p: float) -> torch.Tensor:
    """(layers, batch, hidden): one inverted-dropout mask (0 or 1/(1-p)) per sequence and layer,
    drawn once before the time loop, so a unit dropped from h_{t-1} stays dropped at every step of
    that sequence (Gal & Ghahramani 2016). A mask drawn anew each step would be plain dropout on
    the recurrence, which the book warns erases the memory the RNN is meant to carry."""
    keep = 1.0 - p
    return x.new_empty(layers, x.shape[0], hidden).bernoulli_(keep) / keep


def recurrent_step(kind: str, gi: torch.Tensor, state: tuple[torch.Tensor, ...], mask: torch.Tensor,
                   w_hh: torch.Tensor, b_hh: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """One step of nn.RNN (tanh) / nn.LSTM / nn.GRU's recurrence, PyTorch's gate order and
    equations (the same as nn.RNNCell / nn.LSTMCell / nn.GRUCell), given the input projection
    `gi` = W_ih x_t + b_ih. The mask multiplies h_{t-1} only where it enters W_hh: the LSTM's
    cell state and the GRU's carry z * h_{t-1} see the unmasked h_{t-1}."""
    h = state[0]
    gh = nn.functional.linear(h * mask, w_hh, b_hh)
    if kind == "rnn":
        return (torch.tanh(gi + gh),)
    if kind == "lstm":
        i, f, g, o = (gi + gh).chunk(4, 1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
    return ((1 - z) * torch.tanh(i_n + r * h_n) + z * h,)


def variational_recurrence(rnn: nn.RNNBase, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The output sequence (batch, time, hidden) of a batch-first nn.RNN / nn.LSTM / nn.GRU, run
    step by step with its own weights, h_{t-1} of layer l multiplied by `masks[l]` (see
    `recurrent_masks`) in the recurrent products, and the module's inter-layer dropout.

    Why a loop over the module's own parameters (and not nn.RNNCell / nn.LSTMCell / nn.GRUCell
    modules): the fused kernels take no recurrent mask, and sharing the weights keeps the
    state-dict keys of a model with and without recurrent dropout the same, so evaluation and
    serving run the fused kernel (dropout is off there, the function is the same).

    How it differs from Keras' `recurrent_dropout` (Keras 2, the book's, which switches to its
    per-gate `implementation=1` when recurrent_dropout is set): Keras draws one mask per gate's
    recurrent product (3 for the GRU, 4 for the LSTM), this one per layer, shared by the gates;
    the SimpleRNN has one product, so it is the same there. For the GRU the step is
    written out (`recurrent_step`) because nn.GRUCell, fed a masked h_{t-1}, would also mask the
    carry term z * h_{t-1}; here, as in Keras, only the W_hh products see the masked h."""
    kind = {nn.RNN: "rnn", nn.LSTM: "lstm", nn.GRU: "gru"}[type(rnn)]
    if kind == "rnn" and rnn.nonlinearity != "tanh":
        raise ValueError("variational_recurrence: only the tanh SimpleRNN is supported")
    seq = x
    for layer in range(rnn.num_layers):
        if layer and rnn.dropout:
            seq = nn.functional.dropout(seq, rnn.dropout, training=True)
        w_ih, w_hh = getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}")
        b_ih, b_hh = getattr(rnn, f"bias_ih_l{layer}", None), getattr(rnn, f"bias_hh_l{layer}", None)
        gi = nn.functional.linear(seq, w_ih, b_ih)  # the input projection of every step at once
        h = x.new_zeros(x.shape[0], rnn.hidden_size)
        state: tuple[torch.Tensor, ...] = (h, h) if kind == "lstm" else (h,)
        outputs = []
        for t in range(x.shape[1]):
            state = recurrent_step(kind, gi[:, t], state, masks[layer], w_hh, b_hh)
            outputs.append(state[0])
        seq = torch.stack(outputs, dim=1)
    return seq


class RecurrentForecaster(nn.Module):
    """Stacked SimpleRNN / LSTM / GRU / LN-RNN with a seq2vec or seq2seq dense head.

    With `recurrent_dropout` > 0 (rnn, lstm, gru) training runs `variational_recurrence` over the
    same nn.RNN / nn.LSTM / nn.GRU's weights; eval mode runs the module itself, as with 0. The
    rate is no parameter or buffer, so the module and its state dict are those of rate 0."""

    def __init__(
        self, cell: str, n_features: int, horizon: int, hidden: int, layers: int, dropout: float, head: Head,
        n_future: int = 0, recurrent_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.head, self.horizon, self.n_future = head, horizon, n_future
        if recurrent_dropout and cell not in ("rnn", "lstm", "gru"):
            raise ConfigError(f"forecaster: recurrent_dropout is supported by rnn, lstm and gru, not {cell!r}")
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ConfigError(f"forecaster: recurrent_dropout must be in [0, 1), got {recurrent_dropout}")
        self.recurrent_dropout = float(recurrent_dropout)
        if cell == "ln_rnn":
            cells = [LNSimpleRNNCell(n_features if i == 0 else hidden, hidden) for i in range(layers)]
            self.rnn: nn.Module = nn.Sequential(*cells)
            self._custom = True
        else:
            rnn_cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell]
            self.rnn = rnn_cls(n_features, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
            self._custom = False
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden + horizon * 2 * n_future, horizon)

    def forward(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        check_future(self, x, future)
        if self._custom:
            seq = self.rnn(x)
        elif self.recurrent_dropout and self.training:
            masks = recurrent_masks(x, self.rnn.num_layers, self.rnn.hidden_size, self.recurrent_dropout)
            seq = variational_recurrence(self.rnn, x, masks)
        else:
            seq = self.rnn(x)[0]
        seq = self.drop(seq)
        return read_out(self, seq, x, future, self.step_index(x.shape[1]))

    def step_index(self, seq_len: int) -> torch.Tensor:
        return torch.arange(seq_len)


class ConvGRUForecaster(nn.Module):
    """Conv1D(k=4, stride 2) then GRUs (book row 16): targets downsampled to every 2nd step from 3."""

    def __init__(self, n_features: int, horizon: int, hidden: int, layers: int, dropout: float, head: Head,
                 n_future: int = 0) -> None:
        super().__init__()
        self.head, self.horizon, self.n_future = head, horizon, n_future
        self.conv = nn.Conv1d(n_features, hidden, kernel_size=4, stride=2)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden + horizon * 2 * n_future, horizon)

    def forward(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        check_future(self, x, future)
        z = self.conv(x.transpose(1, 2)).transpose(1, 2)
        seq = self.gru(z)[0]
        return read_out(self, seq, x, future, self.step_index(x.shape[1]))

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
        head: Head, n_future: int = 0,
    ) -> None:
        super().__init__()
        self.head, self.horizon, self.n_future = head, horizon, n_future
        layers: list[nn.Module] = []
        channels = n_features
        for d in dilations:
            layers += [CausalConv1d(channels, hidden, kernel_size, dilation=d), nn.ReLU(), nn.Dropout(dropout)]
            channels = hidden
        self.convs = nn.Sequential(*layers)
        self.out = nn.Conv1d(hidden + horizon * 2 * n_future, horizon, kernel_size=1)

    def forward(self, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
        check_future(self, x, future)
        if future is None:  # the path of the models without covariates, unchanged (same bits)
            seq = self.out(self.convs(x.transpose(1, 2))).transpose(1, 2)
            return seq[:, -1] if self.head == "seq2vec" else seq
        seq = self.convs(x.transpose(1, 2)).transpose(1, 2)
        if self.head == "seq2vec":
            seq = seq[:, -1:]
        cov = step_covariates(x, future, self.horizon, self.step_index(x.shape[1])[-seq.shape[1]:])
        out = self.out(with_covariates(seq, cov).transpose(1, 2)).transpose(1, 2)
        return out[:, -1] if self.head == "seq2vec" else out

    def step_index(self, seq_len: int) -> torch.Tensor:
        return torch.arange(seq_len)


# ----------------------------------------------------------------------------- builders
# (validated hparams, info) -> module. They read only their model's own keys, so a model dir
# written when every forecaster shared one bag of hparams still builds.
def build_linear(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    n_features, horizon, seq_len = dims(info)
    return LinearForecaster(seq_len, n_features, horizon, n_future(info))


def build_recurrent(cell: str, hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    """`recurrent_dropout` is read with a default: model dirs written before it existed lack it."""
    n_features, horizon, _ = dims(info)
    return RecurrentForecaster(cell, n_features, horizon, int(hp["hidden"]), int(hp["layers"]), float(hp["dropout"]),
                               hp["head"], n_future(info), float(hp.get("recurrent_dropout", 0.0)))


def build_conv_gru(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    n_features, horizon, _ = dims(info)
    if float(hp.get("recurrent_dropout", 0.0)):  # its GRUs share RecurrentHParams but not the step loop
        raise ConfigError("forecaster: recurrent_dropout is supported by rnn, lstm and gru, not 'conv_gru'")
    return ConvGRUForecaster(n_features, horizon, int(hp["hidden"]), int(hp["layers"]), float(hp["dropout"]),
                             hp["head"], n_future(info))


def build_wavenet(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    n_features, horizon, _ = dims(info)
    return WaveNetForecaster(n_features, horizon, int(hp["hidden"]), int(hp["kernel_size"]), list(hp["dilations"]),
                             float(hp["dropout"]), hp["head"], n_future(info))


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
def forecast(model: nn.Module, x: torch.Tensor, future: torch.Tensor | None = None) -> torch.Tensor:
    """All-at-once forecast, (batch, horizon): the seq2vec output, or a seq2seq model's last step."""
    out = model(x) if future is None else model(x, future)
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
