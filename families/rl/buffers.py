"""Experience replay for the DQN agents: a uniform ring buffer and proportional prioritised replay.

Both sample from their own seeded numpy RNG and checkpoint as tensors only (the filled part), so
a resumed run draws the same minibatches an uninterrupted one would.

Two storage layouts, chosen by the observation spec given to the buffer:
- an int (obs_dim): float32 vectors, obs and next_obs (CartPole, LunarLander);
- a shape (C, H, W) (stacked Atari frames): **uint8**, and next_obs is not stored whole: a
  frame stack's next observation is the same stack shifted by one plus one new frame (the final
  observation of an episode included), so the buffer keeps obs (C, H, W) and the newest frame
  (H, W) and rebuilds next_obs when sampling. (4, 84, 84): 28,224 + 7,056 = 35,280 bytes per
  transition, i.e. 3.5 GB per 100,000 (`frame_bytes_per_transition`); storing next_obs whole
  would be 5.6 GB. Sampled batches keep uint8 (the Atari networks scale by 1/255 themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


class ReplayBuffer:
    """A ring buffer of transitions in numpy arrays; uniform sampling from its own seeded RNG.

    Why not a deque: random access into a deque is O(n) (the book's ReplayMemory note)."""

    def __init__(self, capacity: int, obs_dim: int | Sequence[int], seed: int) -> None:
        self.capacity = int(capacity)
        shape = (int(obs_dim),) if isinstance(obs_dim, (int, np.integer)) else tuple(int(d) for d in obs_dim)
        self.frames = len(shape) > 1  # a 1-d shape is a vector observation, as an int is
        if self.frames:
            self.obs = np.zeros((capacity, *shape), np.uint8)
            self.next_frame = np.zeros((capacity, *shape[1:]), np.uint8)
        else:
            self.obs = np.zeros((capacity, shape[0]), np.float32)
            self.next_obs = np.zeros((capacity, shape[0]), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    @property
    def _keys(self) -> tuple[str, ...]:
        """The arrays a checkpoint holds (the filled part of each)."""
        obs_keys = ("obs", "next_frame") if self.frames else ("obs", "next_obs")
        return (*obs_keys, "actions", "rewards", "terminated")

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> np.ndarray:
        """Add a batch of transitions (one per env); returns the slots written."""
        n = len(actions)
        idx = (self.pos + np.arange(n)) % self.capacity
        if self.frames:
            obs, next_obs = np.asarray(obs), np.asarray(next_obs)
            if not np.array_equal(obs[:, 1:], next_obs[:, :-1]):
                raise ValueError("frame replay: next_obs must be obs shifted by one frame plus a new one (a frame stack)")
            self.obs[idx], self.next_frame[idx] = obs, next_obs[:, -1]
        else:
            self.obs[idx], self.next_obs[idx] = obs, next_obs
        self.actions[idx], self.rewards[idx], self.terminated[idx] = actions, rewards, terminated
        self.pos = int((self.pos + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))
        return idx

    def _batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        obs = self.obs[idx]
        next_obs = np.concatenate([obs[:, 1:], self.next_frame[idx][:, None]], axis=1) if self.frames else self.next_obs[idx]
        return {
            "obs": torch.from_numpy(obs),
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "next_obs": torch.from_numpy(next_obs),
            "terminated": torch.from_numpy(self.terminated[idx]),
        }

    def sample(self, batch_size: int, beta: float = 1.0) -> tuple[dict[str, torch.Tensor], np.ndarray, torch.Tensor]:
        """(batch, indices, importance weights = 1)."""
        idx = self.rng.integers(0, self.size, size=batch_size)
        return self._batch(idx), idx, torch.ones(batch_size)

    def update_priorities(self, idx: np.ndarray, td_errors: np.ndarray) -> None:
        """Uniform replay has no priorities."""

    def state_dict(self) -> dict[str, Any]:
        """Tensors only (checkpoints load with weights_only=True); just the filled part."""
        n = self.size
        arrays = {key: torch.from_numpy(getattr(self, key)[:n].copy()) for key in self._keys}
        return {**arrays, "pos": self.pos, "size": self.size, "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        for key in self._keys:
            getattr(self, key)[:n] = state[key].numpy()
        self.pos, self.size = int(state["pos"]), n
        self.rng.bit_generator.state = state["rng"]


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritised replay (Schaul et al. 2016): P(i) = p_i^alpha / sum_k p_k^alpha.

    Priorities live in a sum tree (array-backed, leaves at [cap2, 2*cap2)); sampling is
    stratified (one draw per equal slice of the total), updates and descents are vectorised over
    the batch. New transitions get the largest priority seen so far, so each is replayed at least
    once. Importance weights w_i = (N * P(i))^-beta are divided by the batch's largest weight
    (common practice; Schaul divides by the buffer-wide maximum)."""

    def __init__(self, capacity: int, obs_dim: int | Sequence[int], seed: int, alpha: float, eps: float = 1e-6) -> None:
        super().__init__(capacity, obs_dim, seed)
        self.alpha, self.eps = float(alpha), float(eps)
        self.cap2 = 1 << int(np.ceil(np.log2(max(capacity, 2))))
        self.tree = np.zeros(2 * self.cap2, np.float64)
        self.max_priority = 1.0

    def _set(self, idx: np.ndarray, priorities: np.ndarray) -> None:
        node = np.asarray(idx, np.int64) + self.cap2
        self.tree[node] = priorities
        node = np.unique(node // 2)
        while node[0] >= 1:
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]
            if node[0] == 1:
                break
            node = np.unique(node // 2)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> np.ndarray:
        idx = super().add(obs, actions, rewards, next_obs, terminated)
        self._set(idx, np.full(len(idx), self.max_priority**self.alpha))
        return idx

    def _find(self, values: np.ndarray) -> np.ndarray:
        """Leaf index whose prefix-sum interval holds each value (vectorised tree descent)."""
        node = np.ones(len(values), np.int64)
        values = values.copy()
        while node[0] < self.cap2:
            left = 2 * node
            go_right = values > self.tree[left]
            values = np.where(go_right, values - self.tree[left], values)
            node = np.where(go_right, left + 1, left)
        return np.minimum(node - self.cap2, self.size - 1)

    def sample(self, batch_size: int, beta: float = 0.4) -> tuple[dict[str, torch.Tensor], np.ndarray, torch.Tensor]:
        total = self.total
        bounds = np.arange(batch_size + 1) * (total / batch_size)
        values = self.rng.uniform(bounds[:-1], bounds[1:])
        idx = self._find(values)
        probs = self.tree[idx + self.cap2] / total
        weights = (self.size * np.maximum(probs, 1e-12)) ** (-beta)
        weights = weights / weights.max()
        return self._batch(idx), idx, torch.from_numpy(weights.astype(np.float32))

    def update_priorities(self, idx: np.ndarray, td_errors: np.ndarray) -> None:
        p = np.abs(td_errors).astype(np.float64) + self.eps
        self.max_priority = max(self.max_priority, float(p.max()))
        self._set(idx, p**self.alpha)

    def state_dict(self) -> dict[str, Any]:
        n = self.size
        return {**super().state_dict(), "priorities": torch.from_numpy(self.tree[self.cap2 : self.cap2 + n].copy()),
                "max_priority": self.max_priority}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tree[:] = 0.0
        if self.size:
            self._set(np.arange(self.size), state["priorities"].numpy())
        self.max_priority = float(state["max_priority"])


def make_buffer(hp: dict[str, Any], obs_dim: int | Sequence[int], seed: int) -> ReplayBuffer:
    """The buffer of `hp`: obs_dim an int (float32 vectors) or an image shape (uint8 frames)."""
    if hp["prioritized"]:
        return PrioritizedReplayBuffer(hp["buffer_size"], obs_dim, seed, hp["per_alpha"], hp["per_eps"])
    return ReplayBuffer(hp["buffer_size"], obs_dim, seed)


def frame_bytes_per_transition(obs_shape: Sequence[int]) -> int:
    """Memory of one frame-replay transition: obs (C, H, W) + newest frame (H, W) uint8 + action,
    reward, terminal (8 + 4 + 4 bytes); x buffer_size for a buffer (PER adds 16 bytes per slot)."""
    shape = [int(d) for d in obs_shape]
    return int(np.prod(shape) + np.prod(shape[1:]) + 16)


def per_beta(step: int, total_steps: int, beta0: float) -> float:
    """Importance-weight exponent, annealed linearly from beta0 to 1 over the run."""
    return float(min(1.0, beta0 + (1.0 - beta0) * step / max(1, total_steps)))
