"""The RL loop on a tiny budget (no Ray): deterministic per agent kind, a loadable model dir,
learning, checkpoints that hold the whole train state, resume through `session.restore()`, and
the stop decision taken collectively."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from components.session import PlainSession, Restored
from components.train import train_plain
from families.rl import agents, data, evaluate, models, train
from families.rl.actor_critic import ActorCriticAgent
from quartet import api

TASK = "CartPole-v1"
TINY_DQN = {"model": "dueling_dqn", "hidden": 16, "steps_per_epoch": 300, "learning_starts": 100, "train_freq": 4,
            "gradient_steps": 1, "target_update": 50, "batch_size": 16, "buffer_size": 1000, "prioritized": True,
            "n_envs": 2, "lr": 0.001}
TINY_PG = {"model": "reinforce", "hidden": 16, "steps_per_epoch": 200, "episodes_per_update": 4, "lr": 0.01}
TINY_PPO = {"model": "ppo", "hidden": 16, "steps_per_epoch": 256, "n_envs": 2, "n_steps": 64, "batch_size": 32,
            "update_epochs": 2, "lr": 0.001}
TINY_RB = {"model": "reinforce_baseline", "hidden": 16, "steps_per_epoch": 200, "episodes_per_update": 4, "lr": 0.01}
TIMES = ("epoch_time_s", "epoch_wall_s")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    data.ingest(raw, 42)
    out = tmp_path_factory.mktemp("prepared")
    data.prepare(TASK, {"val_episodes": 2, "test_episodes": 3}, raw, out, 42)
    return out


def without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k not in TIMES} for h in history]


@pytest.mark.parametrize("hp", [TINY_DQN, TINY_PG, TINY_PPO, TINY_RB],
                         ids=["dueling_per_vector", "reinforce", "ppo", "reinforce_baseline"])
def test_loop_is_deterministic_and_writes_a_loadable_model_dir(prepared: Path, tmp_path: Path, hp: dict) -> None:
    first = api.train_plain("rl", TASK, hp, prepared, 2, seed=7, out_dir=tmp_path / "a").history
    second = api.train_plain("rl", TASK, hp, prepared, 2, seed=7, out_dir=tmp_path / "b").history
    assert without_times(first) == without_times(second)
    assert len(first) == 2 and first[-1]["env_steps"] >= 2 * hp["steps_per_epoch"]
    for key in ("epoch", "env_steps", "episodes", "train_return_mean", "val_return_mean", "best_val_return_mean", "loss",
                "updates", "resumed_at_epoch", "world_size"):
        assert key in first[-1]
    assert first[-1]["best_val_return_mean"] == max(h["val_return_mean"] for h in first)
    assert first[-1]["updates"] > 0 and first[-1]["loss"] != 0
    a = torch.load(tmp_path / "a" / "weights.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "weights.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    # the model dir alone is enough: its validation return is the best epoch's
    net, config = evaluate.load_model(tmp_path / "a")
    assert config["hparams"]["model"] == hp["model"] and config["history"] == json.loads(json.dumps(first))
    assert train.validate_policy(net, config["info"], torch.device("cpu")) == first[-1]["best_val_return_mean"]


def test_reinforce_learns_cartpole_quickly(prepared: Path) -> None:
    hp = {"model": "reinforce", "hidden": 32, "layers": 1, "steps_per_epoch": 2500, "lr": 0.01}
    history = api.train_plain("rl", TASK, hp, prepared, 5, seed=7).history
    assert history[-1]["train_return_mean"] > 2 * history[0]["train_return_mean"]  # random policy: ~22


@pytest.mark.parametrize("hp", [TINY_DQN, TINY_PG, TINY_PPO, TINY_RB], ids=["dqn", "reinforce", "ppo", "reinforce_baseline"])
def test_agent_state_survives_a_weights_only_checkpoint(prepared: Path, tmp_path: Path, hp: dict) -> None:
    """What session.restore() loads (torch.load weights_only=True) must hold the whole train state."""
    cfg = api.loop_config("rl", TASK, hp, prepared, 2, 7)
    hp, info = cfg.hparams, cfg.info
    agent = agents.make_agent(hp, info, models.build(hp, info), torch.device("cpu"), 1, 600)
    progress = agents.Progress(475.0, 100)
    agent.run_epoch(300, progress, PlainSession(cfg))
    torch.save({"agent": agent.state(), "progress": progress.state(), "rng": train.rng_states(agent.rng)}, tmp_path / "s.pt")
    state = torch.load(tmp_path / "s.pt", weights_only=True)
    other = agents.make_agent(hp, info, models.build(hp, info), torch.device("cpu"), 2, 600)
    other.load_state(state["agent"])
    assert all(torch.equal(v, agent.net.state_dict()[k]) for k, v in other.net.state_dict().items())
    assert other.rng.random() == agent.rng.random()
    assert agents.Progress(475.0, 100, state["progress"]).episodes == progress.episodes > 0
    if isinstance(agent, agents.DQN):
        assert len(other.buffer) == len(agent.buffer) == 300
        assert other.buffer.total == pytest.approx(agent.buffer.total)
        assert np.array_equal(other.buffer.sample(8)[1], agent.buffer.sample(8)[1])
    elif isinstance(agent, ActorCriticAgent):
        assert other.rollouts_done == agent.rollouts_done == 3  # ceil(300 / (2 envs x 64 steps))
        assert progress.env_steps == 384
    else:
        assert other.seed_rng.integers(1 << 30) == agent.seed_rng.integers(1 << 30)
    agent.close(), other.close()


class CheckpointingSession(PlainSession):
    """Ray Train's checkpoint/restore contract in this process: report() keeps every epoch's
    state, restore() hands back the one it was given."""

    def __init__(self, config, dir: Path, restore_from: dict | None = None) -> None:
        super().__init__(config)
        self.dir, self.restore_from = dir, restore_from
        self.checkpoints: list[dict] = []

    def restore(self) -> Restored | None:
        if self.restore_from is None:
            return None
        c = self.restore_from  # loaded afresh, as from a checkpoint dir (the optimizer adopts its tensors)
        return Restored(torch.load(c["state"], weights_only=True), json.loads(c["history"]), dict(c["weights"]))

    def report(self, metrics, history, best, state) -> None:
        path = self.dir / f"epoch-{metrics['epoch']}.pt"
        torch.save(state(), path)
        self.checkpoints.append({"state": path, "history": json.dumps(history), "weights": dict(best.weights)})


@pytest.mark.parametrize("hp", [TINY_DQN, TINY_PG, TINY_PPO, TINY_RB], ids=["dqn", "reinforce", "ppo", "reinforce_baseline"])
def test_a_run_resumes_from_its_checkpoint(prepared: Path, tmp_path: Path, hp: dict) -> None:
    cfg = api.loop_config("rl", TASK, hp, prepared, 3, 7)
    first = CheckpointingSession(cfg, tmp_path)
    full = train.loop(cfg, first)
    assert [torch.load(c["state"], weights_only=True)["epoch"] for c in first.checkpoints] == [0, 1, 2]
    runs = []
    for i in range(2):
        (tmp_path / str(i)).mkdir()
        session = CheckpointingSession(cfg, tmp_path / str(i), restore_from=first.checkpoints[0])
        runs.append(train.loop(cfg, session))
    resumed = runs[0]
    assert without_times(resumed) == without_times(runs[1])  # a resumed run is deterministic too
    assert [h["epoch"] for h in resumed] == [0, 1, 2] and [h["resumed_at_epoch"] for h in resumed] == [0, 1, 1]
    assert resumed[0] == json.loads(json.dumps(full[0]))  # the restored history
    # it continues the counters and the learning state (fresh episodes, so not the same trajectory)
    assert resumed[1]["env_steps"] >= 2 * hp["steps_per_epoch"] and resumed[1]["episodes"] > full[0]["episodes"]
    adam = torch.load(session.checkpoints[0]["state"], weights_only=True)["agent"]["optimizer"]["state"][0]
    assert int(adam["step"]) == resumed[0]["updates"] + resumed[1]["updates"]
    assert resumed[-1]["best_val_return_mean"] == max(h["val_return_mean"] for h in resumed)


class VerdictSession(PlainSession):
    """A rank whose `agree_flag` answers rank 0's verdict, not its own."""

    def __init__(self, config, rank0_says: bool) -> None:
        super().__init__(config)
        self.rank0_says, self.asked = rank0_says, []

    def agree_flag(self, flag: bool) -> bool:
        self.asked.append(flag)
        return self.rank0_says


@pytest.mark.parametrize("rank0_says", [False, True])
def test_stop_when_solved_follows_rank_0(prepared: Path, rank0_says: bool) -> None:
    cfg = api.loop_config("rl", TASK, TINY_PG, prepared, 3, 7)
    # 5: below any CartPole episode's return, so both rules (training and greedy validation) hold
    easy = dataclasses.replace(cfg, info={**cfg.info, "solve_threshold": 5.0, "solve_window": 3})
    session = VerdictSession(easy, rank0_says)
    history = train_plain(train.loop, easy).history
    assert len(history) == 1 and history[0]["steps_to_solve"] > 0  # alone, it solves and stops after epoch 0
    history = train.loop(easy, session)
    assert session.asked[0] is True  # this rank solved ...
    assert len(history) == (1 if rank0_says else 3)  # ... but stops only when rank 0 says so


def test_stop_when_solved_waits_for_the_greedy_policy(prepared: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training episodes alone (the exploring policy) do not stop a run whose kept, greedy
    policy has not reached the threshold on validation: it trains on to the end."""
    cfg = api.loop_config("rl", TASK, TINY_PG, prepared, 3, 7)
    easy = dataclasses.replace(cfg, info={**cfg.info, "solve_threshold": 5.0, "solve_window": 3})
    monkeypatch.setattr(train, "validate_policy", lambda net, info, device: 1.0)  # greedy: never solved
    history = train_plain(train.loop, easy).history
    assert history[0]["steps_to_solve"] > 0 and history[-1]["steps_to_solve_greedy"] == -1
    assert len(history) == 3
    monkeypatch.setattr(train, "validate_policy", lambda net, info, device: 50.0)  # greedy solved too
    history = train_plain(train.loop, easy).history
    assert len(history) == 1 and history[0]["steps_to_solve_greedy"] > 0
