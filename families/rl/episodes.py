"""Playing episodes: the environment replaces the DataLoader for training, validation and evaluation."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from families.rl.models import greedy as greedy_actions


def make_env(env_id: str, render: bool = False) -> Any:
    import gymnasium as gym

    if render:
        # rgb_array rendering needs no display; without this SDL complains about XDG_RUNTIME_DIR.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    return gym.make(env_id, render_mode="rgb_array" if render else None)


def run_episodes(
    net: torch.nn.Module, env_id: str, seeds: list[int], greedy: bool = True, rng: np.random.Generator | None = None,
    record: bool = False, device: torch.device | None = None, progress: Any = None,
) -> tuple[list[float], list[dict[str, Any]]]:
    """Play one episode per seed, all in lockstep (one batched forward pass per step).

    Greedy: argmax of the network's action values. Otherwise (REINFORCE training) actions are
    sampled from the softmax policy with `rng`. Returns per-episode returns and, with `record`,
    the trajectories (obs, actions, rewards) for a policy-gradient update. `progress`
    (components.progress.Progress) counts the episodes as they end.
    """
    device = device or torch.device("cpu")
    envs = [make_env(env_id) for _ in seeds]
    obs = np.stack([env.reset(seed=int(s))[0] for env, s in zip(envs, seeds)]).astype(np.float32)
    alive = np.ones(len(envs), bool)
    returns = np.zeros(len(envs))
    trajs: list[dict[str, list]] = [{"obs": [], "actions": [], "rewards": []} for _ in envs]
    try:
        while alive.any():
            idx = np.flatnonzero(alive)
            with torch.no_grad():
                logits = net(torch.from_numpy(obs[idx]).to(device)).cpu()
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
