"""Playing episodes: the environment replaces the DataLoader for training, validation and evaluation.

`make_env(env_id)` is the *training* environment (what the DQN's vector env and REINFORCE's
sampled episodes play); `run_episodes` and the renderers judge on `make_env(env_id,
training=False)`. For the gymnasium tasks both are the same env; for Atari (families/rl/atari.py)
the training env has episodic life and sign-clipped rewards, the evaluation env is the full game
with raw scores and a step cap.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from families.rl import atari
from families.rl.models import greedy as greedy_actions


def as_batch(obs: np.ndarray, device: torch.device) -> torch.Tensor:
    """Observations -> a float32 tensor (stacked uint8 frames become 0..255 floats; the Atari
    networks scale them)."""
    return torch.from_numpy(np.asarray(obs)).to(device=device, dtype=torch.float32)


def make_env(env_id: str, render: bool = False, training: bool = True) -> Any:
    """The environment of `env_id` (a gymnasium id, an ALE id or an Atari task name)."""
    import gymnasium as gym

    if atari.is_atari(env_id):
        return atari.make_atari_env(env_id, training=training, render=render)
    if render:
        # rgb_array rendering needs no display; without this SDL complains about XDG_RUNTIME_DIR.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    return gym.make(env_id, render_mode="rgb_array" if render else None)


def run_episodes(
    net: torch.nn.Module, env_id: str, seeds: list[int], greedy: bool = True, rng: np.random.Generator | None = None,
    record: bool = False, device: torch.device | None = None, progress: Any = None, training: bool | None = None,
) -> tuple[list[float], list[dict[str, Any]]]:
    """Play one episode per seed, all in lockstep (one batched forward pass per step).

    Greedy: argmax of the network's action values. Otherwise (REINFORCE training) actions are
    sampled from the softmax policy with `rng`. Returns per-episode returns and, with `record`,
    the trajectories (obs, actions, rewards) for a policy-gradient update. `progress`
    (components.progress.Progress) counts the episodes as they end. `training` (default: not
    greedy) picks the env: greedy episodes judge a policy, so they play the evaluation env (for
    Atari the full game, raw scores, capped at atari.EVAL_MAX_STEPS); sampled ones are
    REINFORCE's training episodes and play the training env. Vector observations are
    kept as float32, image frames as uint8 (the batch is cast per forward pass).
    """
    device = device or torch.device("cpu")
    training = (not greedy) if training is None else training
    envs = [make_env(env_id, training=training) for _ in seeds]
    first = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)])
    obs = first if first.dtype == np.uint8 else first.astype(np.float32)
    alive = np.ones(len(envs), bool)
    returns = np.zeros(len(envs))
    trajs: list[dict[str, list]] = [{"obs": [], "actions": [], "rewards": []} for _ in envs]
    try:
        while alive.any():
            idx = np.flatnonzero(alive)
            with torch.no_grad():
                logits = net(as_batch(obs[idx], device)).cpu()
            if greedy:
                actions = greedy_actions(logits).numpy()
            else:
                probs = torch.softmax(logits.double(), dim=-1).numpy()
                u = rng.random(len(idx))[:, None]
                actions = np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)
            for j, i in enumerate(idx):
                nxt, r, term, trunc, _ = envs[i].step(int(actions[j]))
                if record:
                    trajs[i]["obs"].append(obs[i].copy())
                    trajs[i]["actions"].append(int(actions[j]))
                    trajs[i]["rewards"].append(float(r))
                returns[i] += r
                obs[i] = nxt
                if term or trunc:
                    alive[i] = False
                    if progress is not None:
                        progress.update(1)
    finally:
        for env in envs:
            env.close()
    return returns.tolist(), trajs
