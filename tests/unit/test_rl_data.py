"""RL "data": pinned environment specs (byte-stable), disjoint evaluation seeds, refused bad or stale data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.config import ConfigError
from components.data import DataError, read_json
from families.rl import FAMILY, data

TASK = "CartPole-v1"


def test_ingest_pins_env_specs_and_prepare_writes_disjoint_seeds(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    data.ingest(raw, 42)
    first = (raw / "envs.json").read_bytes()
    data.ingest(raw, 42)
    assert (raw / "envs.json").read_bytes() == first  # byte-stable (data.dvc pins it)
    assert json.loads(first)["envs"]["LunarLander-v3"]["n_actions"] == 4
    out = tmp_path / "prepared"
    info = data.prepare(TASK, {"val_episodes": 2, "test_episodes": 3}, raw, out, 42)
    assert (info["obs_dim"], info["n_actions"], info["max_episode_steps"], info["solve_threshold"]) == (4, 2, 500, 475.0)
    assert read_json(out / "test_seeds.json")["seeds"] == info["test_seeds"] == [20_000, 20_001, 20_002]
    assert data.read_test_seeds(out) == info["test_seeds"]
    assert not set(info["val_seeds"]) & set(info["test_seeds"])
    assert info["counts"] == {"val_episodes": 2, "test_episodes": 3}
    # what a test metric is about: the environment and the test episodes' seeds
    assert set(FAMILY.test_set_keys) <= set(info)
    other = tmp_path / "other"
    data.prepare(TASK, {"val_episodes": 2, "test_episodes": 3, "test_seed": 30_000}, raw, other, 42)
    assert FAMILY.test_set_fingerprint(out) != FAMILY.test_set_fingerprint(other)


def test_prepare_rejects_bad_params_and_missing_or_stale_data(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="envs.json: file not found"):
        data.prepare(TASK, {}, tmp_path / "nothing", tmp_path / "out", 42)
    raw = tmp_path / "raw"
    data.ingest(raw, 42)
    with pytest.raises(ConfigError, match=r"families.rl.CartPole-v1.prepare: test_episodes"):
        data.prepare(TASK, {"test_episodes": 0}, raw, tmp_path / "out", 42)
    with pytest.raises(ConfigError, match="overlap"):
        data.prepare(TASK, {"val_seed": 5, "test_seed": 0, "test_episodes": 10}, raw, tmp_path / "out", 42)
    envs = json.loads((raw / "envs.json").read_text())
    envs["envs"][TASK]["max_episode_steps"] = 200
    (raw / "envs.json").write_text(json.dumps(envs))
    with pytest.raises(DataError, match="max_episode_steps"):
        data.prepare(TASK, {}, raw, tmp_path / "out", 42)


def test_breakout_is_pinned_with_its_preprocessed_shape_and_leaves_the_other_specs_alone(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    data.ingest(raw, 42)
    envs = json.loads((raw / "envs.json").read_text())["envs"]
    # the vector tasks' entries keep exactly their keys (their bytes in data/rl/envs.json do not move)
    assert set(envs["CartPole-v1"]) == {"env_id", "max_episode_steps", "n_actions", "obs_dim", "reward_threshold"}
    spec = envs["Breakout"]
    assert (spec["env_id"], spec["obs_shape"], spec["obs_dim"], spec["n_actions"]) == ("ALE/Breakout-v5", [4, 84, 84],
                                                                                         28_224, 4)
    assert spec["max_episode_steps"] == 4500 and spec["reward_threshold"] > spec["random_score"]
    info = data.prepare("Breakout", {"val_episodes": 1, "test_episodes": 2}, raw, tmp_path / "prepared", 42)
    assert (info["task"], info["env_id"], info["obs_shape"], info["obs_dim"]) == ("Breakout", "ALE/Breakout-v5",
                                                                                  [4, 84, 84], 28_224)
    assert "obs_shape" not in data.prepare(TASK, {}, raw, tmp_path / "cartpole", 42)
