"""The RL zoo (book ch. 18): policy and Q networks, discounted returns, replay buffers, DQN targets.

Agents (the `model` hyperparameter):
- `reinforce`: the book's policy gradients. A softmax policy network; whole episodes are
  sampled, each step's return is the discounted sum of later rewards, returns are normalised
  over all episodes of one update, loss = -mean(log pi(a|s) * normalised return).
- `dqn`: Q network + replay buffer + target network (book "fixed Q-targets").
- `double_dqn`: the online network picks argmax a', the target network evaluates it.
- `dueling_dqn`: Double DQN with a dueling head, Q = V + (A - mean A) (the book writes max A;
  the mean is the paper's recommended, more stable variant; `dueling_aggregator` chooses).
Every DQN agent can use prioritised replay (`prioritized: true`, proportional, with importance
weights).

Hyperparameters are one pydantic model (CleanRL's dataclass, validated): `validate_hparams`
names the bad key. New agent: a network here, its update in task.py, a search space in params.yaml.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from components.config import validate_model

AGENTS = ("reinforce", "dqn", "double_dqn", "dueling_dqn")


class HParams(BaseModel):
    """Every RL knob. Step counts are environment steps (summed over the vector envs)."""

    model_config = ConfigDict(extra="forbid")

    model: Literal["reinforce", "dqn", "double_dqn", "dueling_dqn"]
    # network
    hidden: int = Field(64, gt=0, le=4096, description="units per hidden layer")
    layers: int = Field(2, gt=0, le=8, description="hidden layers")
    activation: Literal["relu", "elu", "tanh"] = "relu"
    # optimisation
    lr: float = Field(1e-3, gt=0, lt=1)
    gamma: float = Field(0.99, gt=0, le=1)
    max_grad_norm: float | None = Field(10.0, gt=0, description="gradient clipping (None: off)")
    # the epoch: Tune's ASHA and checkpoints count these
    steps_per_epoch: int = Field(2500, gt=0, le=10_000_000, description="environment steps per epoch")
    n_envs: int = Field(1, gt=0, le=256, description="parallel environments (gymnasium.vector for DQN)")
    stop_when_solved: bool = Field(True, description="stop once the last 100 training episodes reach the threshold")
    # REINFORCE
    episodes_per_update: int = Field(10, gt=0, le=1024, description="REINFORCE: episodes per gradient step")
    # DQN family
    batch_size: int = Field(64, gt=0, le=65_536)
    buffer_size: int = Field(100_000, gt=0, le=10_000_000)
    learning_starts: int = Field(1000, ge=0, description="random-ish steps before the first update")
    train_freq: int = Field(4, gt=0, description="env steps between training phases")
    gradient_steps: int = Field(1, gt=0, le=10_000, description="gradient steps per training phase")
    target_update: int = Field(500, gt=0, description="env steps between target-network syncs")
    exploration_fraction: float = Field(0.1, gt=0, le=1, description="fraction of the run over which eps decays")
    eps_start: float = Field(1.0, ge=0, le=1)
    eps_end: float = Field(0.05, ge=0, le=1)
    loss: Literal["huber", "mse"] = Field("huber", description="TD loss (the book: mse; SB3: huber)")
    dueling_aggregator: Literal["mean", "max"] = "mean"
    prioritized: bool = Field(False, description="proportional prioritised replay")
    per_alpha: float = Field(0.6, ge=0, le=1, description="priority exponent")
    per_beta0: float = Field(0.4, ge=0, le=1, description="initial importance-weight exponent (annealed to 1)")
    per_eps: float = Field(1e-6, gt=0, description="added to |TD error| so no priority is 0")

    @model_validator(mode="after")
    def _consistent(self) -> "HParams":
        if self.eps_end > self.eps_start:
            raise ValueError("eps_end must be <= eps_start")
        if self.model != "reinforce" and self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size {self.batch_size} > buffer_size {self.buffer_size}")
        return self


def validate_hparams(raw: dict[str, Any]) -> dict[str, Any]:
    """Normalised hparams; raises ConfigError `rl hparams: <key>: why`."""
    hp = validate_model(HParams, raw, "rl hparams")
    return hp.model_dump()


def is_dqn(hp: dict[str, Any]) -> bool:
    return hp["model"] != "reinforce"


# ----------------------------------------------------------------------------- networks
ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "tanh": nn.Tanh}


def mlp(n_in: int, hidden: int, layers: int, activation: str) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(n_in if i == 0 else hidden, hidden), ACTIVATIONS[activation]()]
    return nn.Sequential(*mods)


class QNetwork(nn.Module):
    """obs -> Q(s, a) for every action (DQN, Double DQN)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, layers: int, activation: str) -> None:
        super().__init__()
        self.body = mlp(obs_dim, hidden, layers, activation)
        self.head = nn.Linear(hidden, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(obs))

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class PolicyNetwork(QNetwork):
    """obs -> action logits; `probabilities` is what the Predictor serves (book: softmax policy).

    The same body and head as the Q-network (so the same weights, init and saved keys); only
    what `action_values` means differs."""

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(obs), dim=-1)


class DuelingQNetwork(nn.Module):
    """Shared body, then V(s) and A(s, a): Q = V + A - mean_a A (or - max_a A, the book's form).

    Subtracting the mean (or max) makes V and A identifiable: without it any constant could move
    between them."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, layers: int, activation: str,
                 aggregator: str = "mean") -> None:
        super().__init__()
        self.body = mlp(obs_dim, hidden, layers, activation)
        self.value = nn.Linear(hidden, 1)
        self.advantage = nn.Linear(hidden, n_actions)
        self.aggregator = aggregator

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.body(obs)
        a = self.advantage(h)
        baseline = a.mean(dim=-1, keepdim=True) if self.aggregator == "mean" else a.max(dim=-1, keepdim=True).values
        return self.value(h) + a - baseline

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


def build(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    """The agent's network (policy or Q) for an environment described by info."""
    args = (int(info["obs_dim"]), int(info["n_actions"]), int(hp["hidden"]), int(hp["layers"]), hp["activation"])
    if hp["model"] == "reinforce":
        return PolicyNetwork(*args)
    if hp["model"] == "dueling_dqn":
        return DuelingQNetwork(*args, aggregator=hp.get("dueling_aggregator", "mean"))
    return QNetwork(*args)


def greedy(values: torch.Tensor) -> torch.Tensor:
    """Greedy actions from Q-values or probabilities (ties -> lowest index, deterministic)."""
    return values.argmax(dim=-1)


# ----------------------------------------------------------------------------- REINFORCE
def discount_rewards(rewards: np.ndarray | list[float], gamma: float) -> np.ndarray:
    """Return at each step = reward + gamma * return at the next step (book `discount_rewards`).

    [10, 0, -50] with gamma 0.8 -> [-22, -40, -50]."""
    r = np.asarray(rewards, dtype=np.float64)
    out = np.zeros_like(r)
    running = 0.0
    for t in range(len(r) - 1, -1, -1):
        running = r[t] + gamma * running
        out[t] = running
    return out


def discount_and_normalize_rewards(all_rewards: list[np.ndarray | list[float]], gamma: float) -> list[np.ndarray]:
    """Discount each episode, then normalise over *all* steps of all episodes (book function).

    Why normalise across episodes: an action's score only means something relative to the other
    actions taken in the same batch; centring makes below-average actions discouraged."""
    discounted = [discount_rewards(r, gamma) for r in all_rewards]
    flat = np.concatenate(discounted)
    mean, std = flat.mean(), flat.std()
    std = std if std > 0 else 1.0
    return [(d - mean) / std for d in discounted]


def reinforce_loss(logits: torch.Tensor, actions: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-mean over all steps of log pi(a|s) * normalised return."""
    logp = torch.log_softmax(logits, dim=-1).gather(1, actions[:, None]).squeeze(1)
    return -(logp * advantages).mean()


# ----------------------------------------------------------------------------- DQN
def linear_epsilon(step: int, total_steps: int, hp: dict[str, Any]) -> float:
    """eps decays linearly from eps_start to eps_end over exploration_fraction of the run."""
    span = max(1.0, hp["exploration_fraction"] * total_steps)
    frac = min(1.0, step / span)
    return float(hp["eps_start"] + frac * (hp["eps_end"] - hp["eps_start"]))


def td_targets(
    online: nn.Module, target: nn.Module, rewards: torch.Tensor, next_obs: torch.Tensor,
    terminated: torch.Tensor, gamma: float, double: bool,
) -> torch.Tensor:
    """y = r + gamma * (1 - terminated) * Q_target(s', a*).

    DQN: a* = argmax_a Q_target(s', a). Double DQN: a* = argmax_a Q_online(s', a), which removes
    the max operator's overestimation bias. Truncated episodes (time limit) still bootstrap:
    only `terminated` cuts the return."""
    with torch.no_grad():
        q_next_target = target(next_obs)
        if double:
            a_star = online(next_obs).argmax(dim=1, keepdim=True)
        else:
            a_star = q_next_target.argmax(dim=1, keepdim=True)
        q_next = q_next_target.gather(1, a_star).squeeze(1)
        return rewards + gamma * (1.0 - terminated) * q_next


class ReplayBuffer:
    """A ring buffer of transitions in numpy arrays; uniform sampling from its own seeded RNG.

    Why not a deque: random access into a deque is O(n) (the book's ReplayMemory note)."""

    def __init__(self, capacity: int, obs_dim: int, seed: int) -> None:
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros(capacity, np.int64)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos = 0
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray) -> np.ndarray:
        """Add a batch of transitions (one per env); returns the slots written."""
        n = len(actions)
        idx = (self.pos + np.arange(n)) % self.capacity
        self.obs[idx], self.next_obs[idx] = obs, next_obs
        self.actions[idx], self.rewards[idx], self.terminated[idx] = actions, rewards, terminated
        self.pos = int((self.pos + n) % self.capacity)
        self.size = int(min(self.size + n, self.capacity))
        return idx

    def _batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        return {
            "obs": torch.from_numpy(self.obs[idx]),
            "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "next_obs": torch.from_numpy(self.next_obs[idx]),
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
        return {
            "obs": torch.from_numpy(self.obs[:n].copy()), "next_obs": torch.from_numpy(self.next_obs[:n].copy()),
            "actions": torch.from_numpy(self.actions[:n].copy()), "rewards": torch.from_numpy(self.rewards[:n].copy()),
            "terminated": torch.from_numpy(self.terminated[:n].copy()), "pos": self.pos, "size": self.size,
            "rng": self.rng.bit_generator.state,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = int(state["size"])
        for key in ("obs", "next_obs", "actions", "rewards", "terminated"):
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

    def __init__(self, capacity: int, obs_dim: int, seed: int, alpha: float, eps: float = 1e-6) -> None:
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


def make_buffer(hp: dict[str, Any], obs_dim: int, seed: int) -> ReplayBuffer:
    if hp["prioritized"]:
        return PrioritizedReplayBuffer(hp["buffer_size"], obs_dim, seed, hp["per_alpha"], hp["per_eps"])
    return ReplayBuffer(hp["buffer_size"], obs_dim, seed)


def per_beta(step: int, total_steps: int, beta0: float) -> float:
    """Importance-weight exponent, annealed linearly from beta0 to 1 over the run."""
    return float(min(1.0, beta0 + (1.0 - beta0) * step / max(1, total_steps)))
