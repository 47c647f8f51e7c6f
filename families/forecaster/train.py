"""What the forecaster learns from and how an epoch is judged: datasets, loss, validation, the loop.

Training is plain supervised learning, so the loop is the shared `run_supervised` (Adam, the
best epoch by the task's val metric); this module supplies the pieces it calls.

Metrics are in data units (the vic_elec target is de-normalised): `*_mse` is the book's
"last time step MSE" (the forecast of the last window step against the next `horizon` values),
`*_mae` its mean absolute error. synthetic is judged on mse, vic_elec on mae.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.family import Metric
from components.session import LoopConfig, Session, unwrap
from components.train import SupervisedSpec, run_supervised
from families.forecaster import models
from families.forecaster.data import load_split_with_future

METRICS = {"synthetic": Metric("mse"), "vic_elec": Metric("mae")}


# ----------------------------------------------------------------------------- datasets
def seq2seq_targets(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Y[n, t, k] = target value at step t+1+k (book: Y[..., k-1] = series[..., k:k+T])."""
    full = np.concatenate([x[:, :, 0], y], axis=1)
    horizon, seq_len = y.shape[1], x.shape[1]
    return np.lib.stride_tricks.sliding_window_view(full, horizon, axis=1)[:, 1 : seq_len + 1].copy()


def tensor_dataset(x: np.ndarray, y: np.ndarray, future: np.ndarray | None = None) -> torch.utils.data.TensorDataset:
    """(x, the seq2vec target y, the seq2seq targets of every step[, the known-ahead features]):
    both heads train on one dataset."""
    tensors = [torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(seq2seq_targets(x, y))]
    if future is not None:
        tensors.append(torch.from_numpy(future))
    return torch.utils.data.TensorDataset(*tensors)


def datasets(prepared_dir: Path, hp: dict[str, Any], info: dict[str, Any], max_train: int | None):
    """(train, val) of a prepared dir; `max_train` keeps the first windows (Tune's cheap trials)."""
    x, y, _, future = load_split_with_future(prepared_dir, "train", info)
    if max_train:
        x, y = x[:max_train], y[:max_train]
        future = None if future is None else future[:max_train]
    vx, vy, _, vfuture = load_split_with_future(prepared_dir, "val", info)
    return tensor_dataset(x, y, future), tensor_dataset(vx, vy, vfuture)


def _future(batch: Any) -> torch.Tensor | None:
    return batch[3] if len(batch) > 3 else None


# ----------------------------------------------------------------------------- loss and metrics
def loss(model: torch.nn.Module, batch: Any, hp: dict[str, Any]) -> torch.Tensor:
    """MSE against the head's targets: seq2vec on y, seq2seq on every step's next `horizon` values
    (only the steps the model emits: conv_gru downsamples)."""
    x, y, yseq = batch[:3]
    future = _future(batch)
    out = model(x) if future is None else model(x, future)
    if out.dim() == 2:
        return torch.nn.functional.mse_loss(out, y)
    idx = unwrap(model).step_index(x.shape[1])
    return torch.nn.functional.mse_loss(out, yseq[:, idx])


def error_metrics(pred: np.ndarray, y: np.ndarray, std: float, prefix: str) -> dict[str, float]:
    """MSE and MAE in data units (pred, y normalised by std)."""
    err = (pred - y) * std
    return {f"{prefix}_mse": float(np.mean(err**2)), f"{prefix}_mae": float(np.mean(np.abs(err)))}


def validate(model: torch.nn.Module, loader: Any, hp: dict[str, Any], info: dict[str, Any]) -> dict[str, float]:
    """val_mse and val_mae of the all-at-once forecast over the whole validation split."""
    preds, ys = [], []
    for batch in loader:
        x, y = batch[:2]
        preds.append(models.forecast(model, x, _future(batch)).cpu().numpy())
        ys.append(y.cpu().numpy())
    return error_metrics(np.concatenate(preds), np.concatenate(ys), float(info["std"][0]), "val")


# ----------------------------------------------------------------------------- the loop
# One spec for both tasks: the metric that picks the best epoch comes with the LoopConfig. The
# benchmark swaps `build` (dataclasses.replace) to start from Keras-like initial weights.
SPEC = SupervisedSpec(build=models.build, datasets=datasets, loss=loss, validate=validate)


def loop(config: LoopConfig, session: Session) -> list[dict[str, float]]:
    """The forecaster's training loop (a Ray Train worker, a Tune trial or this process)."""
    return run_supervised(config, session, SPEC)
