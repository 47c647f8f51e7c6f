"""Replay buffers: the ring buffer wraps and round-trips; prioritised replay samples in proportion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from families.rl import buffers


def add(buf: buffers.ReplayBuffer, start: int, n: int) -> None:
    obs = np.arange(start, start + n, dtype=np.float32)[:, None].repeat(4, 1)
    buf.add(obs, np.zeros(n, np.int64), np.arange(start, start + n, dtype=np.float32), obs + 1, np.zeros(n, np.float32))


def test_replay_buffer_wraps_around_and_round_trips() -> None:
    buf = buffers.ReplayBuffer(5, 4, seed=0)
    add(buf, 0, 3)
    add(buf, 3, 4)  # 7 transitions into 5 slots: 0 and 1 are overwritten
    assert len(buf) == 5 and buf.pos == 2
    assert sorted(buf.rewards.tolist()) == [2, 3, 4, 5, 6]
    batch, idx, weights = buf.sample(8)
    assert batch["obs"].shape == (8, 4) and torch.all(weights == 1)
    torch.testing.assert_close(batch["next_obs"], batch["obs"] + 1)
    copy = buffers.ReplayBuffer(5, 4, seed=99)
    copy.load_state_dict(buf.state_dict())
    assert np.array_equal(copy.sample(8)[1], buf.sample(8)[1])  # same contents and same RNG


def test_prioritised_replay_samples_in_proportion_and_weights_rare_draws_up() -> None:
    buf = buffers.PrioritizedReplayBuffer(4, 4, seed=0, alpha=1.0)
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
    copy = buffers.PrioritizedReplayBuffer(4, 4, seed=5, alpha=1.0)
    copy.load_state_dict(buf.state_dict())
    assert copy.total == pytest.approx(buf.total)


def test_make_buffer_follows_the_prioritized_flag() -> None:
    hp = {"buffer_size": 8, "prioritized": False, "per_alpha": 0.6, "per_eps": 1e-6}
    assert type(buffers.make_buffer(hp, 4, 0)) is buffers.ReplayBuffer
    assert type(buffers.make_buffer({**hp, "prioritized": True}, 4, 0)) is buffers.PrioritizedReplayBuffer


def test_importance_exponent_anneals_to_one() -> None:
    assert buffers.per_beta(0, 1000, 0.4) == pytest.approx(0.4)
    assert buffers.per_beta(500, 1000, 0.4) == pytest.approx(0.7)
    assert buffers.per_beta(2000, 1000, 0.4) == 1.0
