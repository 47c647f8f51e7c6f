"""The RL zoo's pieces: the book's returns, validated hparams, network shapes, TD targets, replay."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from components.config import ConfigError
from families.rl import models

INFO = {"obs_dim": 4, "n_actions": 2}


def test_discount_rewards_reproduces_the_book() -> None:
    np.testing.assert_allclose(models.discount_rewards([10, 0, -50], 0.8), [-22, -40, -50])


def test_normalisation_across_episodes_reproduces_the_book() -> None:
    out = models.discount_and_normalize_rewards([[10, 0, -50], [10, 20]], 0.8)
    np.testing.assert_allclose(out[0], [-0.28435071, -0.86597718, -1.18910299], atol=1e-6)
    np.testing.assert_allclose(out[1], [1.26665318, 1.0727777], atol=1e-6)


def test_reinforce_loss_pushes_up_actions_with_positive_returns() -> None:
    logits = torch.zeros(2, 2, requires_grad=True)
    loss = models.reinforce_loss(logits, torch.tensor([0, 1]), torch.tensor([1.0, -1.0]))
    loss.backward()
    # a descent step raises logit 0 of row 0 (good action) and lowers logit 1 of row 1 (bad action)
    assert logits.grad[0, 0] < 0 < logits.grad[1, 1]


@pytest.mark.parametrize(
    ("raw", "key"),
    [({"model": "ppo"}, "model"), ({"model": "dqn", "lr": -1}, "lr"), ({"model": "dqn", "hiden": 3}, "hiden"),
     ({"model": "dqn", "eps_start": 0.1, "eps_end": 0.5}, "eps_end"),
     ({"model": "dqn", "batch_size": 512, "buffer_size": 100}, "batch_size")],
)
def test_bad_hparams_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^rl hparams: .*{key}"):
        models.validate_hparams(raw)


@pytest.mark.parametrize("name", models.AGENTS)
def test_every_agent_network_maps_observations_to_one_value_per_action(name: str) -> None:
    torch.manual_seed(0)
    net = models.build(models.validate_hparams({"model": name, "hidden": 8}), INFO)
    values = net.action_values(torch.randn(5, 4))
    assert values.shape == (5, 2)
    if name == "reinforce":
        torch.testing.assert_close(values.sum(-1), torch.ones(5))


@pytest.mark.parametrize("aggregator", ["mean", "max"])
def test_dueling_head_centres_advantages(aggregator: str) -> None:
    torch.manual_seed(0)
    net = models.DuelingQNetwork(4, 3, 8, 1, "relu", aggregator)
    obs = torch.randn(6, 4)
    q = net(obs)
    h = net.body(obs)
    v = net.value(h).squeeze(1)
    reduce = q.mean(-1) if aggregator == "mean" else q.max(-1).values
    torch.testing.assert_close(reduce, v)  # V(s) is the mean (or max) of Q(s, .)


class Fixed(torch.nn.Module):
    """A 'network' that returns fixed Q-values, to check the targets by hand."""

    def __init__(self, q: list[list[float]]) -> None:
        super().__init__()
        self.q = torch.tensor(q)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q[: len(obs)]


def test_dqn_and_double_dqn_targets() -> None:
    online = Fixed([[1.0, 5.0], [3.0, 0.0]])
    target = Fixed([[2.0, 4.0], [7.0, 9.0]])
    rewards, nxt = torch.tensor([1.0, 1.0]), torch.zeros(2, 4)
    alive = torch.tensor([0.0, 0.0])
    dqn = models.td_targets(online, target, rewards, nxt, alive, 0.5, double=False)
    torch.testing.assert_close(dqn, torch.tensor([1 + 0.5 * 4.0, 1 + 0.5 * 9.0]))  # max of the target net
    double = models.td_targets(online, target, rewards, nxt, alive, 0.5, double=True)
    torch.testing.assert_close(double, torch.tensor([1 + 0.5 * 4.0, 1 + 0.5 * 7.0]))  # target at the online argmax
    ended = models.td_targets(online, target, rewards, nxt, torch.tensor([1.0, 0.0]), 0.5, double=True)
    assert ended[0] == 1.0  # terminated: no bootstrap


def test_epsilon_decays_linearly_then_stays() -> None:
    hp = models.validate_hparams({"model": "dqn", "exploration_fraction": 0.5, "eps_start": 1.0, "eps_end": 0.1})
    assert models.linear_epsilon(0, 1000, hp) == 1.0
    assert models.linear_epsilon(250, 1000, hp) == pytest.approx(0.55)
    assert models.linear_epsilon(900, 1000, hp) == pytest.approx(0.1)


def add(buf: models.ReplayBuffer, start: int, n: int) -> None:
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(4, 1)
    buf.add(obs, np.zeros(n, np.int64), np.arange(start, start + n, dtype=np.float32), obs + 1, np.zeros(n, np.float32))


def test_replay_buffer_wraps_around_and_round_trips() -> None:
    buf = models.ReplayBuffer(5, 4, seed=0)
    add(buf, 0, 3)
    add(buf, 3, 4)  # 7 transitions into 5 slots: 0 and 1 are overwritten
    assert len(buf) == 5 and buf.pos == 2
    assert sorted(buf.rewards.tolist()) == [2, 3, 4, 5, 6]
    batch, idx, weights = buf.sample(8)
    assert batch["obs"].shape == (8, 4) and torch.all(weights == 1)
    torch.testing.assert_close(batch["next_obs"], batch["obs"] + 1)
    copy = models.ReplayBuffer(5, 4, seed=99)
    copy.load_state_dict(buf.state_dict())
    assert np.array_equal(copy.sample(8)[1], buf.sample(8)[1])  # same contents and same RNG


def test_prioritised_replay_samples_in_proportion_and_weights_rare_draws_up() -> None:
    buf = models.PrioritizedReplayBuffer(4, 4, seed=0, alpha=1.0)
    add(buf, 0, 4)
    assert buf.total == pytest.approx(4.0)  # new transitions get the max priority (1)
    buf.update_priorities(np.arange(4), np.array([1.0, 0.0, 3.0, 4.0]))
    assert buf.total == pytest.approx(8.0, rel=1e-4)
    counts = np.zeros(4)
    for _ in range(400):
        _, idx, w = buf.sample(16, beta=1.0)
        counts += np.bincount(idx, minlength=4)
    freq = counts / counts.sum()
    np.testing.assert_allclose(freq, [1 / 8, 0, 3 / 8, 4 / 8], atol=0.02)
    _, idx, w = buf.sample(16, beta=1.0)
    assert w.max() == pytest.approx(1.0)
    assert all(w[i] >= w[j] for i in range(16) for j in range(16) if idx[i] == 0 and idx[j] == 3)
    copy = models.PrioritizedReplayBuffer(4, 4, seed=5, alpha=1.0)
    copy.load_state_dict(buf.state_dict())
    assert copy.total == pytest.approx(buf.total)
