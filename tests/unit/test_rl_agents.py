"""The agents' pieces: the book's returns and loss, DQN targets and exploration, and the collective
end of a REINFORCE epoch that keeps DDP ranks in step (without Ray: two ranks as two threads)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from families.rl import FAMILY, agents, models

INFO = {"obs_dim": 4, "n_actions": 2, "env_id": "CartPole-v1"}


def test_discount_rewards_reproduces_the_book() -> None:
    np.testing.assert_allclose(agents.discount_rewards([10, 0, -50], 0.8), [-22, -40, -50])


def test_normalisation_across_episodes_reproduces_the_book() -> None:
    out = agents.discount_and_normalize_rewards([[10, 0, -50], [10, 20]], 0.8)
    np.testing.assert_allclose(out[0], [-0.28435071, -0.86597718, -1.18910299], atol=1e-6)
    np.testing.assert_allclose(out[1], [1.26665318, 1.0727777], atol=1e-6)


def test_reinforce_loss_pushes_up_actions_with_positive_returns() -> None:
    logits = torch.zeros(2, 2, requires_grad=True)
    loss = agents.reinforce_loss(logits, torch.tensor([0, 1]), torch.tensor([1.0, -1.0]))
    loss.backward()
    # a descent step raises logit 0 of row 0 (good action) and lowers logit 1 of row 1 (bad action)
    assert logits.grad[0, 0] < 0 < logits.grad[1, 1]


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
    dqn = agents.td_targets(online, target, rewards, nxt, alive, 0.5, double=False)
    torch.testing.assert_close(dqn, torch.tensor([1 + 0.5 * 4.0, 1 + 0.5 * 9.0]))  # max of the target net
    double = agents.td_targets(online, target, rewards, nxt, alive, 0.5, double=True)
    torch.testing.assert_close(double, torch.tensor([1 + 0.5 * 4.0, 1 + 0.5 * 7.0]))  # target at the online argmax
    ended = agents.td_targets(online, target, rewards, nxt, torch.tensor([1.0, 0.0]), 0.5, double=True)
    assert ended[0] == 1.0  # terminated: no bootstrap


def test_epsilon_decays_linearly_then_stays() -> None:
    hp = FAMILY.validate_hparams({"model": "dqn", "exploration_fraction": 0.5, "eps_start": 1.0, "eps_end": 0.1})
    assert agents.linear_epsilon(0, 1000, hp) == 1.0
    assert agents.linear_epsilon(250, 1000, hp) == pytest.approx(0.55)
    assert agents.linear_epsilon(900, 1000, hp) == pytest.approx(0.1)


def test_make_agent_picks_the_algorithm_of_the_model_class() -> None:
    for name, kind, double in [("reinforce", agents.Reinforce, None), ("dqn", agents.DQN, False),
                               ("double_dqn", agents.DQN, True), ("dueling_dqn", agents.DQN, True)]:
        hp = FAMILY.validate_hparams({"model": name, "hidden": 8, "batch_size": 8, "buffer_size": 16})
        agent = agents.make_agent(hp, INFO, models.build(hp, INFO), torch.device("cpu"), 0, 100)
        try:
            assert type(agent) is kind and getattr(agent, "double", None) == double
        finally:
            agent.close()


# ----------------------------------------------------------------------------- DDP step agreement
class Group:
    """What `agree_sum` is for a 2-worker group (an all-reduce), for ranks that are threads.

    The barrier has a timeout: a rank that stops calling while the other waits fails the test
    (BrokenBarrierError) where real DDP would hang."""

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self.values = [0.0] * world_size
        self.barrier = threading.Barrier(world_size, timeout=60)


class RankSession:
    def __init__(self, group: Group, rank: int) -> None:
        self.group, self.rank, self.world_size = group, rank, group.world_size
        self.seen: list[float] = []  # this rank's steps after each update

    def agree_sum(self, value: float) -> float:
        self.seen.append(value)
        self.group.values[self.rank] = value
        self.group.barrier.wait()
        total = float(sum(self.group.values))
        self.group.barrier.wait()  # nobody writes the next value before everyone has read this one
        return total


def reinforce_epoch_on_ranks(seeds: list[int], n_steps: int) -> tuple[list[dict], list[RankSession]]:
    hp = FAMILY.validate_hparams({"model": "reinforce", "hidden": 8, "episodes_per_update": 2})
    group = Group(len(seeds))
    sessions = [RankSession(group, r) for r in range(len(seeds))]
    stats: list[dict] = [{} for _ in seeds]
    errors: list[BaseException] = []

    nets = []
    for _ in seeds:  # the same initial weights, as DDP broadcasts them (here, before the threads share torch's RNG)
        torch.manual_seed(0)
        nets.append(models.build(hp, INFO))

    def rank(r: int) -> None:
        try:
            agent = agents.Reinforce(hp, INFO, nets[r], torch.device("cpu"), seeds[r])
            stats[r] = agent.run_epoch(n_steps, agents.Progress(475.0, 100), sessions[r])
        except BaseException as e:  # surfaced below
            errors.append(e)
            group.barrier.abort()

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(len(seeds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return stats, sessions


def test_reinforce_ranks_with_different_episode_lengths_make_the_same_number_of_updates() -> None:
    n_steps = 100
    stats, sessions = reinforce_epoch_on_ranks([1, 2], n_steps)
    updates = [s["updates"] for s in stats]
    assert updates[0] == updates[1] == len(sessions[0].seen) == len(sessions[1].seen)
    # the ranks' episodes differ, so deciding alone ("while my steps < n_steps") would have given
    # one rank another update (and DDP a backward the other rank never joins)
    assert sessions[0].seen != sessions[1].seen
    assert any(s.seen[-1] < n_steps for s in sessions) and any(s.seen[-1] >= n_steps for s in sessions)
    # the shared rule: stop at the first update after which all ranks together played n_steps each
    totals = [a + b for a, b in zip(sessions[0].seen, sessions[1].seen)]
    assert totals[-1] >= 2 * n_steps and all(t < 2 * n_steps for t in totals[:-1])


class OneRank:
    world_size = 1

    def __init__(self) -> None:
        self.seen: list[float] = []

    def agree_sum(self, value: float) -> float:
        self.seen.append(value)
        return float(value)


def test_a_single_reinforce_worker_stops_once_its_own_steps_reach_the_epoch() -> None:
    hp = FAMILY.validate_hparams({"model": "reinforce", "hidden": 8, "episodes_per_update": 2})
    torch.manual_seed(0)
    agent = agents.Reinforce(hp, INFO, models.build(hp, INFO), torch.device("cpu"), 1)
    progress, session = agents.Progress(475.0, 100), OneRank()
    stats = agent.run_epoch(100, progress, session)
    assert stats["updates"] == len(session.seen) and session.seen[-1] == progress.env_steps
    assert session.seen[-1] >= 100 and all(s < 100 for s in session.seen[:-1])  # "while steps < n_steps"
