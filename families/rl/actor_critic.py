"""PPO and A2C, readable top to bottom (CleanRL's ppo.py, as an agent of the family's loop).

One rollout = `n_steps` steps of each of `n_envs` environments (a gymnasium SyncVectorEnv with
same-step autoreset, seeded like the DQN's). Then:
1. GAE(lambda) advantages from the rollout's rewards and the critic's values (`gae`);
2. `update_epochs` passes over the rollout in shuffled minibatches of `batch_size`: clipped
   surrogate (`policy_loss`), value loss (`value_loss`, optionally clipped), entropy bonus,
   advantages normalised per minibatch, gradient norm clipped;
3. the learning rate decays linearly to 0 over the run's total rollouts (`anneal_lr`).
A2C is the same code with one pass over the whole rollout as one batch and no clipping: the
probability ratio is exactly 1 at that single step, so the surrogate's gradient is the vanilla
policy gradient -A * grad log pi.

**An epoch is whole rollouts**: `rollouts_per_epoch` = ceil(steps_per_epoch / (n_envs * n_steps)),
so an epoch plays at least steps_per_epoch env steps and the excess is under one rollout (set
steps_per_epoch to a multiple of n_envs * n_steps to make it exact).

Under DDP every rank makes rollouts_per_epoch x update_epochs x ceil(n_envs*n_steps / batch_size)
backward passes per epoch: a function of the hparams only, the same everywhere. There is no
KL early stop for that reason (a rank that stopped alone would hang the all-reduce).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from components.session import Session, unwrap
from families.rl import models
from families.rl.agents import Agent, Progress
from families.rl.data import train_env_seeds
from families.rl.episodes import make_env


# ----------------------------------------------------------------------------- pure parts
def gae(rewards: np.ndarray, values: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
        next_values: np.ndarray, gamma: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised advantage estimation over a (T, n_envs) rollout -> (advantages, returns).

    `values[t]` = V(s_t); `next_values[t]` = V(s_{t+1}) of the *true* next state (at a step that
    ended the episode: the final observation's value, not the reset one's).
        delta_t = r_t + gamma * (1 - terminated_t) * next_values[t] - values[t]
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1},   done = terminated or truncated
    A time-limit truncation is not a terminal state: its delta still bootstraps from the final
    observation's value; only the trace stops there (the next step belongs to a new episode).
    lam = 1 gives Monte Carlo returns minus values, lam = 0 one-step TD errors. returns = A + V
    (the critic's target)."""
    r = np.asarray(rewards, np.float64)
    v = np.asarray(values, np.float64)
    nv = np.asarray(next_values, np.float64)
    term = np.asarray(terminated, np.float64)
    done = np.maximum(term, np.asarray(truncated, np.float64))
    adv = np.zeros_like(r)
    running = np.zeros(r.shape[1:])
    for t in range(r.shape[0] - 1, -1, -1):
        delta = r[t] + gamma * (1.0 - term[t]) * nv[t] - v[t]
        running = delta + gamma * lam * (1.0 - done[t]) * running
        adv[t] = running
    return adv, adv + v


def policy_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, clip_coef: float | None) -> torch.Tensor:
    """PPO's clipped surrogate, as a loss: mean of max(-A * ratio, -A * clip(ratio, 1 +- eps)).

    The pessimistic of the two stops a step from profiting from moving the ratio beyond the clip
    range. clip_coef None: the unclipped surrogate -mean(A * ratio) (A2C)."""
    ratio = torch.exp(new_logp - old_logp)
    unclipped = -adv * ratio
    if clip_coef is None:
        return unclipped.mean()
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef)
    return torch.max(unclipped, clipped).mean()


def value_loss(new_v: torch.Tensor, old_v: torch.Tensor, returns: torch.Tensor, clip_coef: float | None) -> torch.Tensor:
    """0.5 * MSE to the GAE returns; with clip_coef, the worse of the plain and the clipped
    (new value kept within clip_coef of the rollout's) errors (CleanRL's clip_vloss)."""
    plain = (new_v - returns).pow(2)
    if clip_coef is None:
        return 0.5 * plain.mean()
    clipped_v = old_v + torch.clamp(new_v - old_v, -clip_coef, clip_coef)
    return 0.5 * torch.max(plain, (clipped_v - returns).pow(2)).mean()


def rollouts_per_epoch(hp: dict[str, Any], steps_per_epoch: int) -> int:
    """Whole rollouts per epoch: the fewest covering steps_per_epoch (at least one)."""
    return max(1, math.ceil(steps_per_epoch / (hp["n_envs"] * hp["n_steps"])))


def sample_actions(logits: torch.Tensor, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row by inverse CDF from the agent's numpy stream (so the
    agent's whole randomness is one checkpointable Generator)."""
    probs = torch.softmax(logits.double(), dim=-1).numpy()
    u = rng.random(len(probs))[:, None]
    return np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)


# ----------------------------------------------------------------------------- the agent
class ActorCriticAgent(Agent):
    """PPO (clipped) or A2C (`hparams_class(hp).clipped` False) on a vector of environments."""

    def __init__(self, hp: dict[str, Any], info: dict[str, Any], net: nn.Module, device: torch.device,
                 seed: int, total_steps: int, salt: int = 0) -> None:
        import gymnasium as gym

        self.hp, self.info, self.net, self.device = hp, info, net, device
        self.clipped = models.hparams_class(hp).clipped
        self.optimizer = torch.optim.Adam(net.parameters(), lr=hp["lr"], eps=1e-5)
        self.rng = np.random.default_rng([seed, 2])
        epochs = max(1, math.ceil(total_steps / hp["steps_per_epoch"]))
        self.total_rollouts = epochs * rollouts_per_epoch(hp, hp["steps_per_epoch"])
        self.rollouts_done = 0
        self.envs = gym.vector.SyncVectorEnv(
            [lambda: make_env(info["env_id"]) for _ in range(hp["n_envs"])],
            autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
        )
        self.obs, _ = self.envs.reset(seed=train_env_seeds(seed, hp["n_envs"], salt))
        self.ep_returns = np.zeros(hp["n_envs"])

    def reseed(self, seed: int) -> None:
        self.rng = np.random.default_rng([seed, 2])

    def _forward(self, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Acting: the bare module (no DDP forward, so a rank's extra calls for its truncated
        episodes can never enter a collective the other ranks do not)."""
        with torch.no_grad():
            logits, value = unwrap(self.net)(torch.as_tensor(np.asarray(obs), dtype=torch.float32).to(self.device),
                                     with_value=True)
        return logits.cpu(), value.cpu()

    def collect(self, progress: Progress) -> dict[str, np.ndarray]:
        """n_steps vector steps with the current policy; next_values hold V of the true next states."""
        T, n = self.hp["n_steps"], self.hp["n_envs"]
        # stacked Atari frames stay uint8 (a 128 x 8 rollout is 29 MB, not 116); the net scales them
        obs_dtype = np.uint8 if np.asarray(self.obs).dtype == np.uint8 else np.float32
        obs = np.zeros((T, n, *np.shape(self.obs)[1:]), obs_dtype)
        actions, logp = np.zeros((T, n), np.int64), np.zeros((T, n), np.float32)
        rewards, values, next_values = (np.zeros((T, n), np.float32) for _ in range(3))
        terminated, truncated = np.zeros((T, n), bool), np.zeros((T, n), bool)
        for t in range(T):
            logits, value = self._forward(self.obs)
            a = sample_actions(logits, self.rng)
            obs[t], actions[t], values[t] = self.obs, a, value.numpy()
            logp[t] = torch.log_softmax(logits, -1).gather(1, torch.from_numpy(a)[:, None]).squeeze(1).numpy()
            next_obs, r, term, trunc, infos = self.envs.step(a)
            rewards[t], terminated[t], truncated[t] = r, term, trunc
            self.ep_returns += r
            progress.env_steps += n
            done = np.logical_or(term, trunc)
            for i in np.flatnonzero(done):
                progress.episode_done(self.ep_returns[i], progress.env_steps)
                self.ep_returns[i] = 0.0
            if trunc.any():  # a truncated episode bootstraps from its final observation's value
                idx = np.flatnonzero(trunc)
                final = np.stack([infos["final_obs"][i] for i in idx])
                next_values[t, idx] = self._forward(final)[1].numpy()
            self.obs = next_obs
        next_values[T - 1] = np.where(truncated[T - 1], next_values[T - 1], self._forward(self.obs)[1].numpy())
        # the reset observation's value sits where a done step's next value would be: masked by
        # terminated (no bootstrap) or replaced above (truncated)
        for t in range(T - 1):
            next_values[t] = np.where(truncated[t], next_values[t], values[t + 1])
        return {"obs": obs, "actions": actions, "logp": logp, "rewards": rewards, "values": values,
                "next_values": next_values, "terminated": terminated, "truncated": truncated}

    def update(self, roll: dict[str, np.ndarray]) -> dict[str, float]:
        """update_epochs passes of shuffled minibatches (A2C: one step on the whole rollout)."""
        hp = self.hp
        adv, ret = gae(roll["rewards"], roll["values"], roll["terminated"], roll["truncated"], roll["next_values"],
                       hp["gamma"], hp["gae_lambda"])
        flat = lambda x: torch.as_tensor(np.asarray(x).reshape(-1, *np.shape(x)[2:])).to(self.device)  # noqa: E731
        obs, actions, old_logp, old_v = flat(roll["obs"]), flat(roll["actions"]), flat(roll["logp"]), flat(roll["values"])
        adv_t, ret_t = flat(adv.astype(np.float32)), flat(ret.astype(np.float32))
        size = len(obs)
        mb, epochs = (hp["batch_size"], hp["update_epochs"]) if self.clipped else (size, 1)
        clip = hp["clip_coef"] if self.clipped else None
        stats: dict[str, list[float]] = {"loss": [], "value_loss": [], "entropy": [], "approx_kl": [], "clipfrac": []}
        for _ in range(epochs):
            perm = torch.from_numpy(self.rng.permutation(size)) if self.clipped else torch.arange(size)
            for start in range(0, size, mb):
                i = perm[start:start + mb]
                logits, v = self.net(obs[i], with_value=True)
                logp_all = torch.log_softmax(logits, -1)
                new_logp = logp_all.gather(1, actions[i][:, None]).squeeze(1)
                entropy = -(logp_all.exp() * logp_all).sum(-1).mean()
                a = adv_t[i]
                if hp["norm_adv"] and len(i) > 1:
                    a = (a - a.mean()) / (a.std() + 1e-8)
                pg = policy_loss(new_logp, old_logp[i], a, clip)
                vl = value_loss(v, old_v[i], ret_t[i], clip if hp["clip_vloss"] else None)
                loss = pg - hp["ent_coef"] * entropy + hp["vf_coef"] * vl
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if hp["max_grad_norm"]:
                    torch.nn.utils.clip_grad_norm_(self.net.parameters(), hp["max_grad_norm"])
                self.optimizer.step()
                with torch.no_grad():
                    log_ratio = new_logp - old_logp[i]
                    stats["approx_kl"].append(float(((log_ratio.exp() - 1) - log_ratio).mean()))
                    stats["clipfrac"].append(float(((log_ratio.exp() - 1).abs() > hp["clip_coef"]).float().mean()))
                stats["loss"].append(float(loss.detach()))
                stats["value_loss"].append(float(vl.detach()))
                stats["entropy"].append(float(entropy.detach()))
        return {k: float(np.mean(v)) for k, v in stats.items()} | {"updates": float(len(stats["loss"]))}

    def run_epoch(self, n_steps: int, progress: Progress, session: Session) -> dict[str, float]:
        """rollouts_per_epoch(hp, n_steps) rollouts, each followed by its update."""
        per_rollout: list[dict[str, float]] = []
        for _ in range(rollouts_per_epoch(self.hp, n_steps)):
            if self.hp["anneal_lr"]:
                frac = 1.0 - self.rollouts_done / max(1, self.total_rollouts)
                for group in self.optimizer.param_groups:
                    group["lr"] = max(frac, 0.0) * self.hp["lr"]
            per_rollout.append(self.update(self.collect(progress)))
            self.rollouts_done += 1
        out = {k: float(np.mean([s[k] for s in per_rollout])) for k in per_rollout[0]}
        out["updates"] = float(sum(s["updates"] for s in per_rollout))
        return out | {"epsilon": 0.0, "lr": float(self.optimizer.param_groups[0]["lr"])}

    def state(self) -> dict[str, Any]:
        return {"net": unwrap(self.net).state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state, "rollouts_done": self.rollouts_done}

    def load_state(self, state: dict[str, Any]) -> None:
        unwrap(self.net).load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.rollouts_done = int(state["rollouts_done"])

    def close(self) -> None:
        self.envs.close()
