"""Forecaster data: deterministic raw files pinned by data.dvc; schema-checked splits; clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from components.data import DataError
from quartet.cli import dvc_dir_md5, make_data
from families.forecaster import data
from families.forecaster.data import VIC_FILE
from components import track

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("raw") / "forecaster"
    data.ingest(d, 42)
    return d


def test_make_data_reproduces_the_md5_pinned_in_data_dvc(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("params.yaml", "data.dvc"):
        shutil.copy2(REPO / name, root / name)
    md5 = make_data(root)  # raises if it differs from data.dvc
    assert md5 == track.data_md5(REPO)
    assert md5 == dvc_dir_md5(root / "data")


def test_synthetic_series_follow_the_book_generator(raw_dir: Path) -> None:
    series = np.load(raw_dir / "synthetic.npy")
    assert series.shape == (10_000, 60) and series.dtype == np.float32
    again = data.generate_time_series(10_000, 60, np.random.RandomState(42))
    np.testing.assert_array_equal(series, again)
    assert abs(series.mean()) < 0.1 and 0.3 < series.std() < 0.6


def test_prepare_synthetic_splits_and_info(raw_dir: Path, tmp_path: Path) -> None:
    info = data.prepare("synthetic", {"seq_len": 50, "horizon": 10, "split": [700, 200, 100]}, raw_dir, tmp_path, 42)
    assert info["counts"] == {"train": 700, "val": 200, "test": 100}
    x, y, origins = data.load_split(tmp_path, "val", info)
    series = np.load(raw_dir / "synthetic.npy")
    np.testing.assert_array_equal(x[0, :, 0], series[700, :50])
    np.testing.assert_array_equal(y[0], series[700, 50:60])
    assert origins[0] == "700"


def test_prepare_vic_elec_splits_by_date_without_leakage(raw_dir: Path, tmp_path: Path) -> None:
    info = data.prepare("vic_elec", {}, raw_dir, tmp_path, 42)
    assert info["features"] == ["demand", "temperature", "holiday", "weekend"]
    _, _, train_origins = data.load_split(tmp_path, "train", info)
    _, _, val_origins = data.load_split(tmp_path, "val", info)
    _, _, test_origins = data.load_split(tmp_path, "test", info)
    assert max(train_origins) <= "2013-12-31" < min(val_origins)
    assert max(val_origins) <= "2014-06-30" < min(test_origins)
    # every target day of a window stays inside its split (origin is the first of `horizon` days)
    import pandas as pd

    last = lambda origins: str((pd.Timestamp(max(origins)) + pd.Timedelta(days=info["horizon"] - 1)).date())  # noqa: E731
    assert last(train_origins) <= "2013-12-31" and last(val_origins) <= "2014-06-30"
    x, _, _ = data.load_split(tmp_path, "train", info)
    assert abs(float(x[:, :, 0].mean())) < 0.2  # normalised with train statistics


def test_missing_column_names_file_and_column(raw_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "raw"
    shutil.copytree(raw_dir, bad)
    text = (bad / VIC_FILE).read_text().replace("temperature", "temp", 1)
    (bad / VIC_FILE).write_text(text)
    with pytest.raises(DataError, match=r"vic_elec\.csv: missing column 'temperature'"):
        data.prepare("vic_elec", {}, bad, tmp_path / "out", 42)


def test_missing_values_and_gaps_are_reported(raw_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "raw"
    shutil.copytree(raw_dir, bad)
    lines = (bad / VIC_FILE).read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",,20.0,0"
    (bad / VIC_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"column 'demand' has 1 missing values"):
        data.prepare("vic_elec", {}, bad, tmp_path / "out", 42)
    original = (raw_dir / VIC_FILE).read_text().splitlines()
    (bad / VIC_FILE).write_text("\n".join(original[:10] + original[11:]) + "\n")  # one day missing
    with pytest.raises(DataError, match=r"column 'date' must be consecutive days"):
        data.prepare("vic_elec", {}, bad, tmp_path / "out", 42)


def test_missing_raw_data_says_how_to_make_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"synthetic\.npy: not found \(run `make data`\)"):
        data.prepare("synthetic", {}, tmp_path, tmp_path / "out", 42)


def test_bad_prepare_params_name_the_key(raw_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"families\.forecaster\.synthetic\.prepare: horizon: Input should be greater than 0"):
        data.prepare("synthetic", {"horizon": 0}, raw_dir, tmp_path, 42)
    with pytest.raises(Exception, match=r"seq_len \+ horizon = 70 > 60"):
        data.prepare("synthetic", {"seq_len": 60}, raw_dir, tmp_path, 42)
    with pytest.raises(Exception, match=r"train_end .* must come before val_end"):
        data.prepare("vic_elec", {"train_end": "2015-01-01"}, raw_dir, tmp_path, 42)


def test_split_with_wrong_schema_is_rejected(raw_dir: Path, tmp_path: Path) -> None:
    info = data.prepare("synthetic", {"split": [100, 50, 50]}, raw_dir, tmp_path, 42)
    with pytest.raises(DataError, match=r"val\.parquet: column 'x' has type"):
        data.load_split(tmp_path, "val", {**info, "seq_len": 40})
