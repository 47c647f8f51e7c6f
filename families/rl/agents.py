"""The agents: how one epoch of environment steps is collected and learned from.

`Reinforce` (the book's policy gradients), `ReinforceBaseline` (the same with a learned value
baseline), `DQN` (DQN, Double DQN, Dueling DQN, optionally with prioritised replay) and
actor_critic.py's `ActorCriticAgent` (PPO, A2C) share one interface, so the loop in train.py is the same for both:
`run_epoch(n_steps, progress, session)`, `state()` / `load_state()` for checkpoints, `reseed()`,
`close()`. Both expose `net` (the policy or online Q network, what the model dir holds).

Under DDP (Ray Train, several workers) every rank plays its own environments and every backward
all-reduces the gradients, so **every rank must make the same number of updates** in an epoch or
the run hangs in a collective. DQN's and PPO's update counts are functions of the step count and
hparams alone (the same on every rank); REINFORCE's depends on episode lengths, so its ranks decide together when
an epoch ends (`Reinforce.run_epoch`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import torch
from torch import nn

from components.session import Session, unwrap
from families.rl import buffers, models
from families.rl.data import train_env_seeds
from families.rl.episodes import make_env, run_episodes


class Progress:
    """Training-episode bookkeeping shared by both agents: returns window and the solve rule."""

    def __init__(self, threshold: float, window: int, state: dict[str, Any] | None = None) -> None:
        self.threshold, self.window = float(threshold), int(window)
        state = state or {}
        self.recent: deque[float] = deque(state.get("recent", []), maxlen=self.window)
        self.episodes = int(state.get("episodes", 0))
        self.env_steps = int(state.get("env_steps", 0))
        self.steps_to_solve = int(state.get("steps_to_solve", -1))
        self.steps_to_solve_greedy = int(state.get("steps_to_solve_greedy", -1))

    def episode_done(self, ret: float, env_steps_now: int) -> None:
        self.recent.append(float(ret))
        self.episodes += 1
        if (self.steps_to_solve < 0 and len(self.recent) == self.window
                and float(np.mean(self.recent)) >= self.threshold):
            self.steps_to_solve = env_steps_now

    @property
    def train_return_mean(self) -> float:
        return float(np.mean(self.recent)) if self.recent else 0.0

    def state(self) -> dict[str, Any]:
        return {"recent": list(self.recent), "episodes": self.episodes, "env_steps": self.env_steps,
                "steps_to_solve": self.steps_to_solve, "steps_to_solve_greedy": self.steps_to_solve_greedy}


class Agent:
    """What differs between REINFORCE and the DQN family."""

    net: nn.Module
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator

    def run_epoch(self, n_steps: int, progress: Progress, session: Session) -> dict[str, float]: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...

    def reseed(self, seed: int) -> None:
        """New random streams (actions, episode seeds, replay draws) from `seed`."""

    def close(self) -> None:
        """Release the environments the agent keeps open between epochs."""


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


def baseline_advantages(returns: np.ndarray, values: np.ndarray, normalize: bool) -> np.ndarray:
    """REINFORCE with a baseline: A_t = G_t - V(s_t) (optionally normalised over the update).

    Subtracting a function of the state alone leaves the gradient unbiased (E[grad log pi * b(s)]
    = 0) and cuts its variance: an action is judged against what the state was expected to
    return, not against the batch's mean return."""
    adv = np.asarray(returns, np.float64) - np.asarray(values, np.float64)
    if normalize and adv.size > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return adv


class Reinforce(Agent):
    """The book's policy gradients: sample `episodes_per_update` whole episodes (in lockstep),
    discount and normalise their returns, one gradient step on -mean(log pi * return)."""

    def __init__(self, hp: dict[str, Any], info: dict[str, Any], net: nn.Module, device: torch.device,
                 seed: int) -> None:
        self.hp, self.info, self.net, self.device = hp, info, net, device
        self.optimizer = torch.optim.Adam(net.parameters(), lr=hp["lr"])
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.seed_rng = np.random.default_rng(train_env_seeds(seed, 1)[0])

    def run_epoch(self, n_steps: int, progress: Progress, session: Session) -> dict[str, float]:
        """Updates until the epoch's steps are played, each on `episodes_per_update` new episodes.

        An update's episodes are finished whatever their length, so an epoch ends on the first
        update after which the steps of *all* ranks sum to n_steps per rank (`session.agree_sum`):
        every rank makes the same number of updates (the DDP all-reduce in each backward needs
        that), and with one worker it is exactly "while steps < n_steps"."""
        steps, losses = 0, []
        while True:
            seeds = [int(s) for s in self.seed_rng.integers(0, 2**31 - 1, self.hp["episodes_per_update"])]
            returns, trajs = run_episodes(unwrap(self.net), self.info["env_id"], seeds, greedy=False, rng=self.rng,
                                          record=True, device=self.device)
            for ret, traj in zip(returns, trajs):
                steps += len(traj["rewards"])
                progress.env_steps += len(traj["rewards"])
                progress.episode_done(ret, progress.env_steps)
            obs = torch.from_numpy(np.concatenate([np.stack(t["obs"]) for t in trajs])).to(self.device)
            actions = torch.tensor([a for t in trajs for a in t["actions"]], device=self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(obs, actions, [t["rewards"] for t in trajs])
            loss.backward()
            if self.hp["max_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.hp["max_grad_norm"])
            self.optimizer.step()
            losses.append(float(loss.detach()))
            if session.agree_sum(steps) >= n_steps * session.world_size:
                break
        return {"loss": float(np.mean(losses)), "updates": float(len(losses)), "epsilon": 0.0}

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: list[list[float]]) -> torch.Tensor:
        """The book's: returns normalised over the update's episodes stand in for advantages."""
        advantages = discount_and_normalize_rewards(rewards, self.hp["gamma"])
        adv = torch.from_numpy(np.concatenate(advantages).astype(np.float32)).to(self.device)
        return reinforce_loss(self.net(obs), actions, adv)

    def state(self) -> dict[str, Any]:
        return {"net": unwrap(self.net).state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state, "seed_rng": self.seed_rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        unwrap(self.net).load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.seed_rng.bit_generator.state = state["seed_rng"]


class ReinforceBaseline(Reinforce):
    """REINFORCE with a learned baseline: the same episodes as `Reinforce`, advantage
    G_t - V(s_t) from the actor-critic's value head, and the value fitted to the returns.

    The critic regresses `value_scale * G_t` (LunarLander's returns are in the hundreds; an MSE of
    that size would dominate the shared gradient-norm clip), and the baseline is V / value_scale."""

    def loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: list[list[float]]) -> torch.Tensor:
        hp = self.hp
        returns = np.concatenate([discount_rewards(r, hp["gamma"]) for r in rewards])
        logits, value = self.net(obs, with_value=True)
        baseline = value.detach().cpu().double().numpy() / hp["value_scale"]
        adv = torch.from_numpy(baseline_advantages(returns, baseline, hp["norm_adv"]).astype(np.float32)).to(self.device)
        target = torch.from_numpy((hp["value_scale"] * returns).astype(np.float32)).to(self.device)
        logp_all = torch.log_softmax(logits, dim=-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
        return (reinforce_loss(logits, actions, adv) + hp["vf_coef"] * torch.nn.functional.mse_loss(value, target)
                - hp["ent_coef"] * entropy)


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


class DQN(Agent):
    """DQN / Double DQN / Dueling (Double) DQN, optionally with prioritised replay.

    Semantics follow Stable-Baselines3 (so rl-zoo hyperparameters transfer): every `train_freq`
    env steps, `gradient_steps` updates on minibatches of `batch_size`; the target network is
    synced every `target_update` env steps; eps decays linearly over `exploration_fraction` of the
    run's total steps. Experience comes from a `gymnasium.vector.SyncVectorEnv` of `n_envs`
    environments with same-step autoreset (the true final observation is stored, and truncation
    by the time limit still bootstraps)."""

    def __init__(self, hp: dict[str, Any], info: dict[str, Any], net: nn.Module, device: torch.device,
                 seed: int, total_steps: int, salt: int = 0) -> None:
        import gymnasium as gym

        self.hp, self.info, self.net, self.device = hp, info, net, device
        self.total_steps = total_steps
        self.target = models.build(hp, info).to(device)
        self.target.load_state_dict(unwrap(net).state_dict())
        self.target.eval()
        self.optimizer = torch.optim.Adam(net.parameters(), lr=hp["lr"])
        self.buffer = buffers.make_buffer(hp, info.get("obs_shape") or int(info["obs_dim"]), seed)
        self.rng = np.random.default_rng([seed, 1])
        self.double = models.hparams_class(hp).double_q
        self.envs = gym.vector.SyncVectorEnv(
            [lambda: make_env(info["env_id"]) for _ in range(hp["n_envs"])],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        env_seeds = train_env_seeds(seed, hp["n_envs"], salt)
        self.obs, _ = self.envs.reset(seed=env_seeds)
        self.envs.action_space.seed(env_seeds[0])
        self.ep_returns = np.zeros(hp["n_envs"])
        self.since_train = 0
        self.since_target = 0

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 1])
        self.buffer.rng = np.random.default_rng(seed)

    def act(self, step: int) -> tuple[np.ndarray, float]:
        eps = linear_epsilon(step, self.total_steps, self.hp)
        n = self.hp["n_envs"]
        with torch.no_grad():
            # the Atari network scales uint8 frames itself: cast only here, at the network's input
            q = self.net(torch.as_tensor(np.asarray(self.obs), dtype=torch.float32).to(self.device)).cpu()
        actions = models.greedy(q).numpy()
        explore = self.rng.random(n) < eps
        if explore.any():
            actions = np.where(explore, self.rng.integers(0, int(self.info["n_actions"]), n), actions)
        return actions, eps

    def update(self, progress: Progress) -> float:
        hp = self.hp
        beta = buffers.per_beta(progress.env_steps, self.total_steps, hp["per_beta0"])
        batch, idx, weights = self.buffer.sample(hp["batch_size"], beta)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        y = td_targets(self.net, self.target, batch["rewards"], batch["next_obs"], batch["terminated"],
                       hp["gamma"], self.double)
        q = self.net(batch["obs"]).gather(1, batch["actions"][:, None]).squeeze(1)
        td = q - y
        if hp["loss"] == "huber":
            per_sample = torch.nn.functional.smooth_l1_loss(q, y, reduction="none")
        else:
            per_sample = td.pow(2)
        loss = (weights.to(self.device) * per_sample).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if hp["max_grad_norm"]:
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), hp["max_grad_norm"])
        self.optimizer.step()
        self.buffer.update_priorities(idx, td.detach().cpu().numpy())
        return float(loss.detach())

    def run_epoch(self, n_steps: int, progress: Progress, session: Session) -> dict[str, float]:
        """n_steps // n_envs vector steps. No collective decision is needed: when to update
        depends on the step count only, which advances by n_envs per step on every rank."""
        hp, n = self.hp, self.hp["n_envs"]
        losses: list[float] = []
        eps = 0.0
        for _ in range(max(1, n_steps // n)):
            actions, eps = self.act(progress.env_steps)
            next_obs, rewards, term, trunc, infos = self.envs.step(actions)
            done = np.logical_or(term, trunc)
            real_next = np.array(next_obs, copy=True)  # the buffer casts to its own dtype
            if done.any():
                for i in np.flatnonzero(done):
                    real_next[i] = infos["final_obs"][i]
            self.buffer.add(np.asarray(self.obs), actions, rewards.astype(np.float32), real_next,
                            term.astype(np.float32))
            self.ep_returns += rewards
            progress.env_steps += n
            for i in np.flatnonzero(done):
                progress.episode_done(self.ep_returns[i], progress.env_steps)
                self.ep_returns[i] = 0.0
            self.obs = next_obs
            if progress.env_steps > hp["learning_starts"]:
                self.since_train += n
                while self.since_train >= hp["train_freq"]:
                    self.since_train -= hp["train_freq"]
                    losses += [self.update(progress) for _ in range(hp["gradient_steps"])]
                self.since_target += n
                if self.since_target >= hp["target_update"]:
                    self.since_target = 0
                    self.target.load_state_dict(unwrap(self.net).state_dict())
        return {"loss": float(np.mean(losses)) if losses else 0.0, "updates": float(len(losses)), "epsilon": eps}

    def state(self) -> dict[str, Any]:
        return {"net": unwrap(self.net).state_dict(), "target": self.target.state_dict(),
                "optimizer": self.optimizer.state_dict(), "buffer": self.buffer.state_dict(),
                "rng": self.rng.bit_generator.state, "since_train": self.since_train, "since_target": self.since_target}

    def load_state(self, state: dict[str, Any]) -> None:
        unwrap(self.net).load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.buffer.load_state_dict(state["buffer"])
        self.rng.bit_generator.state = state["rng"]
        self.since_train, self.since_target = int(state["since_train"]), int(state["since_target"])

    def close(self) -> None:
        self.envs.close()


def make_agent(hp: dict[str, Any], info: dict[str, Any], net: nn.Module, device: torch.device, seed: int,
               total_steps: int, start_epoch: int = 0) -> Agent:
    """The agent of `hp`'s model. A resumed run (start_epoch > 0) salts its environment seeds
    with the epoch: environments are not picklable mid-episode, so it starts fresh episodes."""
    if models.is_dqn(hp):
        return DQN(hp, info, net, device, seed, total_steps, salt=start_epoch)
    if models.is_actor_critic(hp):
        from families.rl.actor_critic import ActorCriticAgent  # it imports this module

        return ActorCriticAgent(hp, info, net, device, seed, total_steps, salt=start_epoch)
    if models.hparams_class(hp) is models.ReinforceBaselineHParams:
        return ReinforceBaseline(hp, info, net, device, seed + start_epoch)
    return Reinforce(hp, info, net, device, seed + start_epoch)
