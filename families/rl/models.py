"""The RL zoo (book ch. 18): the policy and Q networks, and each agent declared once.

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
- `reinforce_baseline`: REINFORCE with a learned state-value baseline: advantage = G_t - V(s_t)
  (variance reduction without bias), V fitted by MSE to the returns.
- `ppo`: proximal policy optimisation (clipped surrogate, GAE(lambda), vector envs), CleanRL-style,
  in actor_critic.py. `a2c`: the same file with one update epoch over the whole rollout and no
  clipping (the ratio is 1 at the first step, so the surrogate's gradient is the vanilla one).
The actor-critics' network returns action logits from `net(obs)` (so greedy evaluation and
serving work unchanged) and `(logits, value)` from `net(obs, with_value=True)`: one forward call
of the (DDP-wrapped) module, so the value head's gradients are averaged too.

Each agent's hyperparameters are its own pydantic class (CleanRL's dataclass, validated); what
the agents share lives in `RLHParams`. Which algorithm trains a model is a property of its class
(`is_dqn`, `double_q`), not of its name. New agent: a network here, a `ModelSpec` in `MODELS`,
its update in agents.py.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from components.family import ModelSpec, zoo


# ----------------------------------------------------------------------------- hyperparameters
class RLHParams(BaseModel):
    """What every agent takes. Step counts are environment steps (summed over the vector envs)."""

    model_config = ConfigDict(extra="forbid")

    # The training algorithm: a DQN (replay + target network) or a policy gradient.
    is_dqn: ClassVar[bool] = False

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
    stop_when_solved: bool = Field(True, description="stop once the last 100 training episodes and a greedy "
                                   "validation mean reach the threshold")


class ReinforceHParams(RLHParams):
    """REINFORCE: whole sampled episodes per gradient step."""

    episodes_per_update: int = Field(10, gt=0, le=1024, description="episodes per gradient step")


class ReinforceBaselineHParams(ReinforceHParams):
    """REINFORCE with a state-value baseline (the book's exercise): advantage = G_t - V(s_t)."""

    vf_coef: float = Field(0.5, ge=0, le=100, description="weight of the value (baseline) MSE loss")
    ent_coef: float = Field(0.0, ge=0, le=1, description="entropy bonus weight")
    norm_adv: bool = Field(True, description="normalise the advantages over the update's steps")
    value_scale: float = Field(0.01, gt=0, le=1, description="the critic fits scale * G_t (returns of "
                               "hundreds would make its MSE swamp the policy's gradient)")


class PPOHParams(RLHParams):
    """PPO, CleanRL's ppo.py semantics. A rollout = n_steps steps of each of n_envs environments."""

    # the objective: clipped surrogate; A2C (a subclass) turns it off and makes one pass
    clipped: ClassVar[bool] = True

    activation: Literal["relu", "elu", "tanh"] = "tanh"
    lr: float = Field(3e-4, gt=0, lt=1)
    max_grad_norm: float | None = Field(0.5, gt=0, description="gradient clipping (None: off)")
    n_envs: int = Field(8, gt=0, le=256, description="parallel environments (gymnasium.vector)")
    n_steps: int = Field(256, gt=0, le=100_000, description="steps per environment per rollout")
    batch_size: int = Field(64, gt=0, le=1_000_000, description="minibatch size (transitions)")
    update_epochs: int = Field(4, gt=0, le=100, description="passes over each rollout")
    gae_lambda: float = Field(0.95, ge=0, le=1, description="GAE lambda (1: Monte Carlo, 0: one-step TD)")
    clip_coef: float = Field(0.2, gt=0, le=10, description="surrogate ratio clip epsilon")
    clip_vloss: bool = Field(False, description="clip the value update around the rollout's values too")
    ent_coef: float = Field(0.01, ge=0, le=1, description="entropy bonus weight")
    vf_coef: float = Field(0.5, ge=0, le=100, description="value loss weight")
    norm_adv: bool = Field(True, description="normalise advantages per minibatch")
    anneal_lr: bool = Field(True, description="lr decays linearly to 0 over the run's total steps")

    @model_validator(mode="after")
    def _minibatch_fits(self) -> PPOHParams:
        if self.batch_size > self.n_envs * self.n_steps:
            raise ValueError(f"batch_size {self.batch_size} > rollout n_envs * n_steps = {self.n_envs * self.n_steps}")
        return self


class A2CHParams(PPOHParams):
    """A2C: PPO's machinery with one gradient step per rollout (the whole rollout is the batch,
    `batch_size` and `update_epochs` are not used) and the plain policy gradient (no clipping).
    Defaults are rl-baselines3-zoo's short rollouts (SB3 uses RMSprop; here Adam)."""

    clipped: ClassVar[bool] = False

    n_steps: int = Field(8, gt=0, le=100_000, description="steps per environment per rollout")
    lr: float = Field(7e-4, gt=0, lt=1)
    gae_lambda: float = Field(1.0, ge=0, le=1, description="GAE lambda (1: Monte Carlo, 0: one-step TD)")
    ent_coef: float = Field(0.0, ge=0, le=1, description="entropy bonus weight")
    norm_adv: bool = Field(False, description="normalise advantages per minibatch")
    # `batch_size` and `update_epochs` are accepted (a task's hparams are shared by its models)
    # and not used: one pass over the whole rollout as one batch.

    @model_validator(mode="after")
    def _minibatch_fits(self) -> A2CHParams:
        return self


class DQNHParams(RLHParams):
    """DQN with Stable-Baselines3's step semantics (so rl-zoo hyperparameters transfer)."""

    is_dqn: ClassVar[bool] = True
    # Double DQN's target: the online network picks a', the target network evaluates it.
    double_q: ClassVar[bool] = False

    n_envs: int = Field(1, gt=0, le=256, description="parallel environments (gymnasium.vector)")
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
    prioritized: bool = Field(False, description="proportional prioritised replay")
    per_alpha: float = Field(0.6, ge=0, le=1, description="priority exponent")
    per_beta0: float = Field(0.4, ge=0, le=1, description="initial importance-weight exponent (annealed to 1)")
    per_eps: float = Field(1e-6, gt=0, description="added to |TD error| so no priority is 0")

    @model_validator(mode="after")
    def _consistent(self) -> DQNHParams:
        if self.eps_end > self.eps_start:
            raise ValueError("eps_end must be <= eps_start")
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size {self.batch_size} > buffer_size {self.buffer_size}")
        return self


class DoubleDQNHParams(DQNHParams):
    double_q: ClassVar[bool] = True


class DuelingDQNHParams(DoubleDQNHParams):
    dueling_aggregator: Literal["mean", "max"] = "mean"


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


def _layer(n_in: int, n_out: int, std: float) -> nn.Linear:
    """Orthogonal weights with gain `std`, zero bias (CleanRL's layer_init: it matters for PPO)."""
    layer = nn.Linear(n_in, n_out)
    nn.init.orthogonal_(layer.weight, std)
    nn.init.zeros_(layer.bias)
    return layer


def _torso(n_in: int, hidden: int, layers: int, activation: str) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [_layer(n_in if i == 0 else hidden, hidden, 2 ** 0.5), ACTIVATIONS[activation]()]
    return nn.Sequential(*mods)


class ActorCritic(nn.Module):
    """Separate actor and critic torsos (as CleanRL: no shared features, so the value loss cannot
    disturb the policy's), orthogonal init; the policy head starts near-uniform (gain 0.01).

    `forward(obs)` -> action logits (what greedy evaluation and serving call);
    `forward(obs, with_value=True)` -> (logits, V(s)), one call so DDP sees every parameter."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: int, layers: int, activation: str) -> None:
        super().__init__()
        self.actor = nn.Sequential(_torso(obs_dim, hidden, layers, activation), _layer(hidden, n_actions, 0.01))
        self.critic = nn.Sequential(_torso(obs_dim, hidden, layers, activation), _layer(hidden, 1, 1.0))

    def forward(self, obs: torch.Tensor, with_value: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        logits = self.actor(obs)
        if not with_value:
            return logits
        return logits, self.critic(obs).squeeze(-1)

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(obs), dim=-1)


def greedy(values: torch.Tensor) -> torch.Tensor:
    """Greedy actions from Q-values or probabilities (ties -> lowest index, deterministic)."""
    return values.argmax(dim=-1)


# ----------------------------------------------------------------------------- the zoo
def _net_args(hp: dict[str, Any], info: dict[str, Any]) -> tuple[int, int, int, int, str]:
    return int(info["obs_dim"]), int(info["n_actions"]), int(hp["hidden"]), int(hp["layers"]), hp["activation"]


def _policy(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    return PolicyNetwork(*_net_args(hp, info))


def _q(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    return QNetwork(*_net_args(hp, info))


def _dueling(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    return DuelingQNetwork(*_net_args(hp, info), aggregator=hp["dueling_aggregator"])


def _actor_critic(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    return ActorCritic(*_net_args(hp, info))


# Default search spaces: params.yaml's CartPole sweep (the full profile adds `prioritized`).
_DQN_SPACE = {"lr": {"loguniform": [0.001, 0.005]}, "hidden": {"choice": [64, 256]}}

MODELS = zoo(
    ModelSpec("reinforce", ReinforceHParams, _policy,
              space={"lr": {"loguniform": [0.003, 0.03]}, "hidden": {"choice": [32, 64]}, "layers": {"choice": [1]}},
              doc="the book's policy gradients: softmax policy, normalised discounted returns"),
    ModelSpec("reinforce_baseline", ReinforceBaselineHParams, _actor_critic,
              space={"lr": {"loguniform": [0.001, 0.01]}, "vf_coef": {"choice": [0.25, 0.5, 1.0]}},
              doc="REINFORCE with a learned state-value baseline: advantage = G_t - V(s_t)"),
    ModelSpec("ppo", PPOHParams, _actor_critic,
              space={"lr": {"loguniform": [0.0001, 0.001]}, "ent_coef": {"choice": [0.0, 0.01]},
                     "gae_lambda": {"choice": [0.95, 0.98]}},
              doc="PPO: clipped surrogate, GAE(lambda), vector envs (CleanRL-style)"),
    ModelSpec("a2c", A2CHParams, _actor_critic,
              space={"lr": {"loguniform": [0.0003, 0.003]}, "ent_coef": {"choice": [0.0, 0.01]}},
              doc="advantage actor-critic: one plain policy-gradient step per short rollout"),
    ModelSpec("dqn", DQNHParams, _q, space=_DQN_SPACE, doc="Q network, replay buffer, fixed Q-targets"),
    ModelSpec("double_dqn", DoubleDQNHParams, _q, space=_DQN_SPACE,
              doc="DQN whose target evaluates the online network's argmax (no max bias)"),
    ModelSpec("dueling_dqn", DuelingDQNHParams, _dueling, space=_DQN_SPACE,
              doc="Double DQN with a dueling head, Q = V + A - mean A"),
)


def hparams_class(hp: dict[str, Any]) -> type[RLHParams]:
    """The hyperparameter class of a validated hparams dict (what says which agent trains it)."""
    return MODELS[hp["model"]].hparams


def is_dqn(hp: dict[str, Any]) -> bool:
    return hparams_class(hp).is_dqn


def is_actor_critic(hp: dict[str, Any]) -> bool:
    """PPO / A2C: rollouts of vector envs, GAE, actor_critic.py."""
    return issubclass(hparams_class(hp), PPOHParams)


def has_critic(hp: dict[str, Any]) -> bool:
    """Agents whose network also answers V(s) (`forward(obs, with_value=True)`)."""
    return issubclass(hparams_class(hp), (PPOHParams, ReinforceBaselineHParams))


def build(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    """The agent's network (policy, actor-critic or Q) for an environment described by info.

    Stacked image frames (an `obs_shape` of rank 3, the Atari task) get the convolutional
    network of families/rl/atari.py (imported only then: it is the Atari helper's module)."""
    if len(info.get("obs_shape", ())) == 3:
        from families.rl import atari

        return atari.build_network(hp, info)
    return MODELS[hp["model"]].build(hp, info)
