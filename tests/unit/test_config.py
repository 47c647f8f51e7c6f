"""params.yaml validation: every mistake names its key; profiles merge key by key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from components import config
from components.config import ConfigError, deep_merge

REPO = Path(__file__).resolve().parents[2]


def write_params(root: Path, raw: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(raw))


@pytest.fixture
def raw() -> dict:
    return config.read_yaml(REPO / "params.yaml")


def test_default_params_and_every_profile_are_valid(raw: dict) -> None:
    params = config.validate(raw)
    assert set(params.families["forecaster"]) == {"synthetic", "vic_elec"}
    for profile in (REPO / "profiles").glob("*.yaml"):
        merged = config.load(REPO, profile.stem)
        assert merged.families["forecaster"]["synthetic"].train.epochs > 0


def test_unknown_key_is_named(tmp_path: Path, raw: dict) -> None:
    raw["families"]["forecaster"]["synthetic"]["train"]["epoch"] = 3
    write_params(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"families\.forecaster\.synthetic\.train\.epoch: Extra inputs"):
        config.load(tmp_path)


def test_bad_value_is_named_with_reason(tmp_path: Path, raw: dict) -> None:
    raw["families"]["forecaster"]["vic_elec"]["tune"]["num_samples"] = 0
    write_params(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"vic_elec\.tune\.num_samples: Input should be greater than 0"):
        config.load(tmp_path)


def test_bad_search_space_is_named(tmp_path: Path, raw: dict) -> None:
    raw["families"]["forecaster"]["synthetic"]["tune"]["search_space"]["gru"]["lr"] = {"loguniform": [0.1, 0.01]}
    write_params(tmp_path, raw)
    with pytest.raises(ConfigError, match=r"search_space\.gru\.lr: Value error, loguniform needs low < high"):
        config.load(tmp_path)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="params.yaml: file not found"):
        config.load(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        config.load(tmp_path)


def test_unknown_profile_lists_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*'tiny'"):
        config.load(REPO, "nope")


def test_profile_overrides_only_its_keys(raw: dict) -> None:
    tiny = config.load(REPO, "tiny")
    default = config.validate(raw)
    assert tiny.families["forecaster"]["synthetic"].train.epochs == 2
    assert tiny.families["forecaster"]["vic_elec"].prepare == default.families["forecaster"]["vic_elec"].prepare
    assert deep_merge({"a": {"b": 1, "c": 2}, "l": [1]}, {"a": {"b": 3}, "l": [2]}) == {"a": {"b": 3, "c": 2}, "l": [2]}


def test_tracking_uri_is_absolute_sqlite_and_env_overrides(raw: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    params = config.validate(raw)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = config.tracking_uri(params, Path("/somewhere/repo"))
    assert uri == "sqlite:////somewhere/repo/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert config.tracking_uri(params) == "http://127.0.0.1:5000"


def test_unknown_task_lists_known(raw: dict) -> None:
    with pytest.raises(ConfigError, match=r"no task families\.forecaster\.nope \(known: \['synthetic', 'vic_elec'\]\)"):
        config.validate(raw).task("forecaster", "nope")
