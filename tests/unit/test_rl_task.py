"""The RL family end to end on a tiny budget (plain launcher, no Ray): ingest/prepare, a
deterministic loop per agent kind, a loadable model dir, evaluate's metrics and GIF, the Predictor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from components.config import ConfigError
from components.data import DataError, read_json
from components.family import RequestError
from components.train import loop_config
from families.rl import FAMILY, data, models, task

TASK = "CartPole-v1"
TINY_DQN = {"model": "dueling_dqn", "hidden": 16, "steps_per_epoch": 300, "learning_starts": 100, "train_freq": 4,
            "gradient_steps": 1, "target_update": 50, "batch_size": 16, "buffer_size": 1000, "prioritized": True,
            "n_envs": 2, "lr": 0.001}
TINY_PG = {"model": "reinforce", "hidden": 16, "steps_per_epoch": 200, "episodes_per_update": 4, "lr": 0.01}
TIMES = ("epoch_time_s", "epoch_wall_s")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    raw = tmp_path_factory.mktemp("raw")
    data.ingest(raw, 42)
    out = tmp_path_factory.mktemp("prepared")
    info = data.prepare(TASK, {"val_episodes": 2, "test_episodes": 3}, raw, out, 42)
    return out, info


def train(prepared: tuple[Path, dict], out_dir: Path, hp: dict, epochs: int = 2) -> list[dict]:
    path, info = prepared
    config = loop_config("rl", TASK, models.validate_hparams(hp), info, path, epochs, 7, "plain", out_dir=str(out_dir))
    return task.train_loop(config)


def without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMES} for h in history]


def test_ingest_pins_env_specs_and_prepare_writes_disjoint_seeds(prepared, tmp_path: Path) -> None:
    path, info = prepared
    assert (info["obs_dim"], info["n_actions"], info["max_episode_steps"], info["solve_threshold"]) == (4, 2, 500, 475.0)
    assert read_json(path / "test_seeds.json")["seeds"] == info["test_seeds"] == [20_000, 20_001, 20_002]
    assert not set(info["val_seeds"]) & set(info["test_seeds"])
    assert info["counts"] == {"val_episodes": 2, "test_episodes": 3}
    raw = tmp_path / "raw"
    data.ingest(raw, 42)
    first = (raw / "envs.json").read_bytes()
    data.ingest(raw, 42)
    assert (raw / "envs.json").read_bytes() == first  # byte-stable (data.dvc pins it)
    assert json.loads(first)["envs"]["LunarLander-v3"]["n_actions"] == 4


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


@pytest.mark.parametrize("hp", [TINY_DQN, TINY_PG], ids=["dueling_per_vector", "reinforce"])
def test_loop_is_deterministic_and_writes_a_loadable_model_dir(prepared, tmp_path: Path, hp: dict) -> None:
    first = train(prepared, tmp_path / "a", hp)
    second = train(prepared, tmp_path / "b", hp)
    assert without_times(first) == without_times(second)
    assert len(first) == 2 and first[-1]["env_steps"] >= 2 * hp["steps_per_epoch"]
    for key in ("epoch", "env_steps", "episodes", "train_return_mean", "val_return_mean", "best_val_return_mean", "loss"):
        assert key in first[-1]
    assert first[-1]["best_val_return_mean"] == max(h["val_return_mean"] for h in first)
    if hp["model"] != "reinforce":
        assert first[-1]["updates"] > 0 and first[-1]["loss"] > 0
    a = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the model dir alone is enough: evaluate's validation return is the best epoch's
    predictor = task.Predictor(tmp_path / "a")
    assert predictor.value_kind == ("probabilities" if hp["model"] == "reinforce" else "q_values")
    net, config = task.load_model(tmp_path / "a")
    assert task.validate_policy(net, config["info"], torch.device("cpu")) == first[-1]["best_val_return_mean"]


def test_reinforce_learns_cartpole_quickly(prepared, tmp_path: Path) -> None:
    hp = {"model": "reinforce", "hidden": 32, "layers": 1, "steps_per_epoch": 2500, "lr": 0.01}
    history = train(prepared, tmp_path / "m", hp, epochs=5)
    assert history[-1]["train_return_mean"] > 2 * history[0]["train_return_mean"]  # random policy: ~22


def test_agent_state_survives_a_weights_only_checkpoint(prepared, tmp_path: Path) -> None:
    """What restore_checkpoint loads (torch.load weights_only=True) must hold the whole train state."""
    path, info = prepared
    hp = models.validate_hparams(TINY_DQN)
    agent = task.DQN(hp, info, models.build(hp, info), torch.device("cpu"), 1, 600)
    progress = task.Progress(475.0, 100)
    agent.run_epoch(300, progress)
    torch.save({"agent": agent.state(), "progress": progress.state(), "rng": task.rng_states(agent.rng)}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    other = task.DQN(hp, info, models.build(hp, info), torch.device("cpu"), 2, 600)
    other.load_state(state["agent"])
    assert len(other.buffer) == len(agent.buffer) == 300
    assert other.buffer.total == pytest.approx(agent.buffer.total)
    assert np.array_equal(other.buffer.sample(8)[1], agent.buffer.sample(8)[1])
    assert all(torch.equal(v, agent.net.state_dict()[k]) for k, v in other.net.state_dict().items())
    assert task.Progress(475.0, 100, state["progress"]).episodes == progress.episodes
    agent.close(), other.close()


def test_evaluate_writes_metrics_curve_and_gif(prepared, tmp_path: Path) -> None:
    history = train(prepared, tmp_path / "m", TINY_PG)
    metrics = task.evaluate(tmp_path / "m", prepared[0], tmp_path / "plots", {"gif_max_frames": 6})
    assert metrics["eval_episodes"] == 3 and metrics["eval_return_mean"] == metrics["test_return_mean"]
    assert metrics["val_return_mean"] == max(h["val_return_mean"] for h in history)
    assert metrics["steps_to_solve"] == -1 and metrics["solved"] == 0  # 3 episodes cannot solve (rule: 100)
    assert metrics["epochs_trained"] == 2 and metrics["env_steps"] == history[-1]["env_steps"]
    assert all(np.isfinite(v) for v in metrics.values())
    from PIL import Image

    with Image.open(tmp_path / "plots" / "episode.gif") as gif:
        assert gif.n_frames >= 2
    assert (tmp_path / "plots" / "learning_curve.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "learning_curve.csv").read_text().count("\n") == 3


def test_predictor_acts_in_batches_and_rejects_bad_requests(prepared, tmp_path: Path) -> None:
    train(prepared, tmp_path / "m", {**TINY_DQN, "steps_per_epoch": 150}, epochs=1)
    predictor = FAMILY.predictor(tmp_path / "m", model_version="3")
    example = FAMILY.input_example(tmp_path / "m")
    reqs = [task.ActRequest(**example), task.ActRequest(task=TASK, observations=[[0.0, 0.1, -0.02, 0.3]] * 3)]
    out = predictor.predict_batch(reqs)
    assert [len(o.actions) for o in out] == [1, 3] and out[0].model_version == "3"
    assert np.shape(out[1].action_values) == (3, 2)
    assert out[1].actions == [int(np.argmax(v)) for v in out[1].action_values]
    assert predictor.act(reqs[1]).action_values == out[1].action_values  # alone == inside a batch
    with pytest.raises(RequestError, match="expects observations of 4 values, got 8"):
        predictor.act(task.ActRequest(task=TASK, observations=[[0.0] * 8]))
    with pytest.raises(RequestError, match="acts in 'CartPole-v1', not 'LunarLander-v3'"):
        predictor.act(task.ActRequest(task="LunarLander-v3", observations=[[0.0] * 4]))
    with pytest.raises(ValidationError, match="finite number"):
        task.ActRequest(task=TASK, observations=[[0.0, float("nan"), 0.0, 0.0]])
    with pytest.raises(ValidationError, match="at most 256"):
        task.ActRequest(task=TASK, observations=[[0.0] * 4] * 257)
    with pytest.raises(ValidationError, match="at least 1"):
        task.ActRequest(task=TASK, observations=[])
