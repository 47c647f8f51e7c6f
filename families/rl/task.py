"""How the RL agents learn and are judged: the training loops, evaluation, the Predictor.

The family owns its loop (the environment replaces the DataLoader) but reports and checkpoints
through components.train like every family. **One epoch = `steps_per_epoch` environment steps**
(summed over the parallel environments; REINFORCE finishes the episodes it started, so its epochs
can run a little over). Tune's ASHA schedules on `training_iteration`, i.e. on epochs, so ASHA
here *is* ASHA on environment steps: a trial stopped at grace_period 2 has seen
2 x steps_per_epoch steps.

Each epoch reports: epoch, env_steps, episodes, train_return_mean (last 100 training episodes),
val_return_mean (greedy, the prepared validation seeds), best_val_return_mean (what Tune ranks),
loss, epsilon, updates, steps_to_solve (-1 until the last 100 training episodes average the
solve threshold), steps_to_solve_greedy (env steps at the first epoch whose greedy validation
mean reached it), epoch_time_s. Every checkpoint's weights.pt is the best policy/Q network so far
(by val_return_mean, first best kept on ties).

Checkpoints (launcher "train") hold the epoch, counters, online and target nets, the optimizer,
the replay buffer (filled part, as tensors) and every RNG state (torch, numpy, python, buffer).
The environments are not picklable mid-episode: a resumed run starts fresh episodes with seeds
salted by the epoch, so it continues learning from the same state but does not replay the exact
trajectory an uninterrupted run would have taken.

`stop_when_solved` (default on) ends the run after the epoch in which the solve rule was met
(100-episode mean of training returns >= threshold); Tune sees a shorter trial.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components import train
from components.data import read_json, set_seeds
from components.family import Metric, RequestError
from components.train import (
    finish_plain,
    loop_device,
    report_epoch,
    restore_checkpoint,
    unwrap,
    world,
    write_checkpoint_dir,
)
from families.rl import models
from families.rl.data import TASKS, read_test_seeds, train_env_seeds

log = logging.getLogger(__name__)

METRICS = {t: Metric("return_mean", "max") for t in TASKS}
MAX_OBSERVATIONS_PER_REQUEST = 256


# ----------------------------------------------------------------------------- episodes
def make_env(env_id: str, render: bool = False) -> Any:
    import gymnasium as gym

    if render:
        # rgb_array rendering needs no display; without this SDL complains about XDG_RUNTIME_DIR.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    return gym.make(env_id, render_mode="rgb_array" if render else None)


def run_episodes(
    net: torch.nn.Module, env_id: str, seeds: list[int], greedy: bool = True, rng: np.random.Generator | None = None,
    record: bool = False, device: torch.device | None = None,
) -> tuple[list[float], list[dict[str, Any]]]:
    """Play one episode per seed, all in lockstep (one batched forward pass per step).

    Greedy: argmax of the network's action values. Otherwise (REINFORCE training) actions are
    sampled from the softmax policy with `rng`. Returns per-episode returns and, with `record`,
    the trajectories (obs, actions, rewards) for a policy-gradient update.
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
                actions = models.greedy(logits).numpy()
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
    finally:
        for env in envs:
            env.close()
    return returns.tolist(), trajs


def render_episode(net: torch.nn.Module, env_id: str, seed: int, max_frames: int, every: int) -> tuple[list[Any], float]:
    """One greedy episode rendered as rgb_array frames (every `every`-th, at most max_frames)."""
    env = make_env(env_id, render=True)
    frames, total = [], 0.0
    try:
        obs, _ = env.reset(seed=seed)
        for t in range(10**6):
            if t % every == 0 and len(frames) < max_frames:
                frames.append(env.render())
            with torch.no_grad():
                action = int(models.greedy(net(torch.from_numpy(np.asarray(obs, np.float32)[None])))[0])
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            if term or trunc:
                frames.append(env.render())
                break
    finally:
        env.close()
    return frames, total


# ----------------------------------------------------------------------------- loop helpers
class Progress:
    """Training-episode bookkeeping shared by both loops: returns window and the solve rule."""

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


def rng_states(np_rng: np.random.Generator) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np_rng.bit_generator.state, "python": random.getstate()}


def set_rng_states(states: dict[str, Any], np_rng: np.random.Generator) -> None:
    torch.set_rng_state(states["torch"])
    np_rng.bit_generator.state = states["numpy"]
    random.setstate(states["python"])


def _state_copy(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in unwrap(net).state_dict().items()}


class Agent:
    """What differs between REINFORCE and the DQN family: how one epoch of steps is collected and
    learned from. Both expose `net` (the policy or online Q network, what the model dir holds)."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def run_epoch(self, n_steps: int, progress: Progress) -> dict[str, float]: ...

    def state(self) -> dict[str, Any]: ...

    def load_state(self, state: dict[str, Any]) -> None: ...


class Reinforce(Agent):
    """The book's policy gradients: sample `episodes_per_update` whole episodes (in lockstep),
    discount and normalise their returns, one gradient step on -mean(log pi * return)."""

    def __init__(self, hp: dict[str, Any], info: dict[str, Any], net: torch.nn.Module, device: torch.device,
                 seed: int) -> None:
        self.hp, self.info, self.net, self.device = hp, info, net, device
        self.optimizer = torch.optim.Adam(net.parameters(), lr=hp["lr"])
        self.rng = np.random.default_rng(seed)
        self.seed_rng = np.random.default_rng(train_env_seeds(seed, 1)[0])

    def run_epoch(self, n_steps: int, progress: Progress) -> dict[str, float]:
        steps, losses = 0, []
        while steps < n_steps:
            seeds = [int(s) for s in self.seed_rng.integers(0, 2**31 - 1, self.hp["episodes_per_update"])]
            returns, trajs = run_episodes(unwrap(self.net), self.info["env_id"], seeds, greedy=False, rng=self.rng,
                                          record=True, device=self.device)
            for ret, traj in zip(returns, trajs):
                steps += len(traj["rewards"])
                progress.env_steps += len(traj["rewards"])
                progress.episode_done(ret, progress.env_steps)
            advantages = models.discount_and_normalize_rewards([t["rewards"] for t in trajs], self.hp["gamma"])
            obs = torch.from_numpy(np.concatenate([np.stack(t["obs"]) for t in trajs])).to(self.device)
            actions = torch.tensor([a for t in trajs for a in t["actions"]], device=self.device)
            adv = torch.from_numpy(np.concatenate(advantages).astype(np.float32)).to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            loss = models.reinforce_loss(self.net(obs), actions, adv)
            loss.backward()
            if self.hp["max_grad_norm"]:
                torch.nn.utils.clip_grad_norm_(self.net.parameters(), self.hp["max_grad_norm"])
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return {"loss": float(np.mean(losses)) if losses else 0.0, "updates": float(len(losses)), "epsilon": 0.0}

    def state(self) -> dict[str, Any]:
        return {"net": unwrap(self.net).state_dict(), "optimizer": self.optimizer.state_dict(),
                "rng": self.rng.bit_generator.state, "seed_rng": self.seed_rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        unwrap(self.net).load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.bit_generator.state = state["rng"]
        self.seed_rng.bit_generator.state = state["seed_rng"]


class DQN(Agent):
    """DQN / Double DQN / Dueling (Double) DQN, optionally with prioritised replay.

    Semantics follow Stable-Baselines3 (so rl-zoo hyperparameters transfer): every `train_freq`
    env steps, `gradient_steps` updates on minibatches of `batch_size`; the target network is
    synced every `target_update` env steps; eps decays linearly over `exploration_fraction` of the
    run's total steps. Experience comes from a `gymnasium.vector.SyncVectorEnv` of `n_envs`
    environments with same-step autoreset (the true final observation is stored, and truncation
    by the time limit still bootstraps)."""

    def __init__(self, hp: dict[str, Any], info: dict[str, Any], net: torch.nn.Module, device: torch.device,
                 seed: int, total_steps: int, salt: int = 0) -> None:
        import gymnasium as gym

        self.hp, self.info, self.net, self.device = hp, info, net, device
        self.total_steps = total_steps
        self.target = models.build(hp, info).to(device)
        self.target.load_state_dict(unwrap(net).state_dict())
        self.target.eval()
        self.optimizer = torch.optim.Adam(net.parameters(), lr=hp["lr"])
        self.buffer = models.make_buffer(hp, int(info["obs_dim"]), seed)
        self.rng = np.random.default_rng([seed, 1])
        self.double = hp["model"] in ("double_dqn", "dueling_dqn")
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

    def act(self, step: int) -> tuple[np.ndarray, float]:
        eps = models.linear_epsilon(step, self.total_steps, self.hp)
        n = self.hp["n_envs"]
        with torch.no_grad():
            q = self.net(torch.from_numpy(np.asarray(self.obs, np.float32)).to(self.device)).cpu()
        actions = models.greedy(q).numpy()
        explore = self.rng.random(n) < eps
        if explore.any():
            actions = np.where(explore, self.rng.integers(0, int(self.info["n_actions"]), n), actions)
        return actions, eps

    def update(self, progress: Progress) -> float:
        hp = self.hp
        beta = models.per_beta(progress.env_steps, self.total_steps, hp["per_beta0"])
        batch, idx, weights = self.buffer.sample(hp["batch_size"], beta)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        y = models.td_targets(self.net, self.target, batch["rewards"], batch["next_obs"], batch["terminated"],
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

    def run_epoch(self, n_steps: int, progress: Progress) -> dict[str, float]:
        hp, n = self.hp, self.hp["n_envs"]
        losses: list[float] = []
        eps = 0.0
        for _ in range(max(1, n_steps // n)):
            actions, eps = self.act(progress.env_steps)
            next_obs, rewards, term, trunc, infos = self.envs.step(actions)
            done = np.logical_or(term, trunc)
            real_next = np.array(next_obs, np.float32, copy=True)
            if done.any():
                for i in np.flatnonzero(done):
                    real_next[i] = infos["final_obs"][i]
            self.buffer.add(np.asarray(self.obs, np.float32), actions, rewards.astype(np.float32), real_next,
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


def validate_policy(net: torch.nn.Module, info: dict[str, Any], device: torch.device) -> float:
    returns, _ = run_episodes(unwrap(net), info["env_id"], list(info["val_seeds"]), greedy=True, device=device)
    return float(np.mean(returns))


# ----------------------------------------------------------------------------- the loop
def train_loop(config: dict[str, Any]) -> list[dict[str, float]]:
    """The per-worker loop (Ray Train worker, Tune trial or plain process); returns the history."""
    launcher = config.get("launcher", "plain")
    hp, info = config["hparams"], config["info"]
    seed, epochs = int(config["seed"]), int(config["epochs"])
    torch.set_num_threads(int(config.get("threads", 1)))
    set_seeds(seed)
    device = loop_device(config)
    rank, world_size = world(config)
    net = models.build(hp, info).to(device)
    if launcher == "train":
        import ray.train.torch

        net = ray.train.torch.prepare_model(net)
    restored = restore_checkpoint() if launcher == "train" else None
    start, history, best = 0, [], None
    if restored is not None:
        state, history, best = restored
        start = int(state["epoch"]) + 1
    total_steps = epochs * hp["steps_per_epoch"]
    # A resumed run salts its environment seeds with the epoch (see the module docstring).
    if models.is_dqn(hp):
        agent: Agent = DQN(hp, info, net, device, seed + rank, total_steps, salt=start)
    else:
        agent = Reinforce(hp, info, net, device, seed + rank + start)
    progress = Progress(info["solve_threshold"], info.get("solve_window", 100))
    if restored is not None:
        agent.load_state(state["agent"])
        progress = Progress(info["solve_threshold"], info.get("solve_window", 100), state["progress"])
        set_rng_states(state["rng"], agent.rng)
    best_value = max((h["val_return_mean"] for h in history), default=-float("inf"))
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            agent.net.train()
            stats = agent.run_epoch(hp["steps_per_epoch"], progress)
            train_time = time.perf_counter() - t0
            agent.net.eval()
            val = validate_policy(agent.net, info, device)
            if progress.steps_to_solve_greedy < 0 and val >= progress.threshold:
                progress.steps_to_solve_greedy = progress.env_steps
            if val > best_value or best is None:
                best_value, best = val, _state_copy(agent.net)
            metrics = {
                "epoch": epoch, "env_steps": progress.env_steps, "episodes": progress.episodes,
                "train_return_mean": progress.train_return_mean, "val_return_mean": val,
                "best_val_return_mean": best_value, **stats, "steps_to_solve": progress.steps_to_solve,
                "steps_to_solve_greedy": progress.steps_to_solve_greedy, "epoch_time_s": train_time,
                "epoch_wall_s": time.perf_counter() - t0, "resumed_at_epoch": start, "world_size": world_size,
            }
            history.append(metrics)
            log.info("epoch %d: steps %d, train %.1f, val %.1f (best %.1f)", epoch, progress.env_steps,
                     metrics["train_return_mean"], val, best_value)

            def write_checkpoint(d: Path, epoch: int = epoch, best_now: dict = best) -> None:
                train_state = {"epoch": epoch, "agent": agent.state(), "progress": progress.state(),
                               "rng": rng_states(agent.rng)}
                write_checkpoint_dir(d, {**config["model_config"], "epoch": epoch}, history, best_now, train_state)

            report_epoch(launcher, metrics, write_checkpoint)
            if hp["stop_when_solved"] and progress.steps_to_solve >= 0:
                log.info("solved after %d env steps: stopping", progress.steps_to_solve)
                break
    finally:
        if isinstance(agent, DQN):
            agent.close()
    finish_plain(config, history, best)
    return history


# ----------------------------------------------------------------------------- evaluation
def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return train.load_model(model_dir, models.build)


def _learning_curve(history: list[dict[str, Any]], plots_dir: Path, threshold: float, title: str) -> None:
    keys = ("epoch", "env_steps", "episodes", "train_return_mean", "val_return_mean", "loss", "epsilon")
    with open(plots_dir / "learning_curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for h in history:
            w.writerow([f"{float(h.get(k, 0.0)):.6g}" for k in keys])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["env_steps"] for h in history]
    ax.plot(steps, [h["train_return_mean"] for h in history], "b.-", label="train (last 100 episodes)")
    ax.plot(steps, [h["val_return_mean"] for h in history], "go-", label="validation (greedy)")
    ax.axhline(threshold, color="r", ls="--", label=f"solve threshold {threshold:g}")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(plots_dir / "learning_curve.png", dpi=80)
    plt.close(fig)


def save_gif(frames: list[Any], path: Path, scale: float, fps: int) -> None:
    from PIL import Image

    images = [Image.fromarray(np.asarray(f)) for f in frames]
    if scale != 1.0:
        size = (max(1, int(images[0].width * scale)), max(1, int(images[0].height * scale)))
        images = [im.resize(size, Image.Resampling.BILINEAR) for im in images]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0, optimize=False)


def evaluate(model_dir: Path, prepared_dir: Path, plots_dir: Path, params: dict[str, Any]) -> dict[str, float]:
    """Greedy returns on the validation seeds and the 100 fixed test seeds; curve + one GIF.

    params (`families.rl.<task>.evaluate`): gif_max_frames (300), gif_every (2: every 2nd frame),
    gif_scale (0.5), gif_fps (25)."""
    net, config = load_model(model_dir)
    info = read_json(Path(prepared_dir) / "info.json")
    if info["task"] != config["task"]:
        from components.data import DataError

        raise DataError(f"{prepared_dir / 'info.json'}: task {info['task']!r} but the model was trained on {config['task']!r}")
    test_seeds = read_test_seeds(Path(prepared_dir))
    val_returns, _ = run_episodes(net, info["env_id"], list(info["val_seeds"]))
    test_returns, _ = run_episodes(net, info["env_id"], test_seeds)
    history = config.get("history", [])
    last = history[-1] if history else {}
    threshold = float(info["solve_threshold"])
    test_mean = float(np.mean(test_returns))
    metrics = {
        "val_return_mean": float(np.mean(val_returns)),
        "test_return_mean": test_mean,
        "test_return_std": float(np.std(test_returns)),
        "eval_return_mean": test_mean,
        "eval_return_std": float(np.std(test_returns)),
        "eval_return_min": float(np.min(test_returns)),
        "eval_episodes": float(len(test_returns)),
        "solved": float(test_mean >= threshold and len(test_returns) >= int(info.get("solve_window", 100))),
        "steps_to_solve": float(last.get("steps_to_solve", -1)),
        "steps_to_solve_greedy": float(last.get("steps_to_solve_greedy", -1)),
        "epochs_trained": float(len(history)),
        "env_steps": float(last.get("env_steps", 0)),
    }
    plots_dir.mkdir(parents=True, exist_ok=True)
    with open(plots_dir / "test_returns.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", "seed", "return"])
        w.writerows([[i, s, f"{r:.6g}"] for i, (s, r) in enumerate(zip(test_seeds, test_returns))])
    if history:
        _learning_curve(history, plots_dir, threshold, f"{config['model']} on {info['env_id']}")
    frames, _ = render_episode(net, info["env_id"], test_seeds[0], int(params.get("gif_max_frames", 300)),
                               int(params.get("gif_every", 2)))
    save_gif(frames, plots_dir / "episode.gif", float(params.get("gif_scale", 0.5)), int(params.get("gif_fps", 25)))
    return metrics


# ----------------------------------------------------------------------------- serving
# Finite and within float32: a larger value would become inf in the network and NaN Q-values.
FLOAT32_MAX = 3.4e38
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]


class ActRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="environment id, e.g. 'CartPole-v1' or 'LunarLander-v3'")
    observations: list[list[Finite]] = Field(
        description="batch of observations, each the environment's observation vector",
        min_length=1, max_length=MAX_OBSERVATIONS_PER_REQUEST,
    )


class ActResponse(BaseModel):
    task: str
    model_version: str | None = None
    actions: list[int] = Field(description="greedy action per observation")
    action_values: list[list[float]] = Field(description="action probabilities (reinforce) or Q-values (DQNs)")
    value_kind: str = Field(description="'probabilities' or 'q_values'")


class Predictor:
    """Loads a model dir; greedy actions plus the values they come from, for a batch of observations."""

    request_model = ActRequest
    response_model = ActResponse

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.net, self.config = load_model(Path(model_dir))
        self.info = self.config["info"]
        self.task = self.config["task"]
        self.model_version = model_version
        self.obs_dim = int(self.info["obs_dim"])
        self.value_kind = "q_values" if models.is_dqn(self.config["hparams"]) else "probabilities"

    def _check(self, req: ActRequest) -> None:
        if req.task != self.task:
            raise RequestError(f"this model acts in {self.task!r}, not {req.task!r}")
        bad = sorted({len(o) for o in req.observations if len(o) != self.obs_dim})
        if bad:
            raise RequestError(
                f"task {self.task!r} expects observations of {self.obs_dim} values, got {bad[0] if len(bad) == 1 else bad}"
            )

    def act(self, req: ActRequest) -> ActResponse:
        return self.act_batch([req])[0]

    def act_batch(self, reqs: list[ActRequest]) -> list[ActResponse]:
        """All observations of all requests in one forward pass (Serve batches requests)."""
        for r in reqs:
            self._check(r)
        obs = torch.tensor([o for r in reqs for o in r.observations], dtype=torch.float32)
        with torch.no_grad():
            values = self.net.action_values(obs)
        if not torch.isfinite(values).all():  # inputs far outside the training range overflow float32
            raise RequestError("observations too large for this model: its action values overflow (not finite)")
        actions = models.greedy(values)
        out, start = [], 0
        for r in reqs:
            n = len(r.observations)
            out.append(ActResponse(
                task=r.task, model_version=self.model_version, actions=actions[start : start + n].tolist(),
                action_values=values[start : start + n].double().tolist(), value_kind=self.value_kind,
            ))
            start += n
        return out

    predict = act
    predict_batch = act_batch


def input_example(model_dir: Path) -> dict[str, Any]:
    """A valid request: the first observation of the first validation episode."""
    config = read_json(Path(model_dir) / "config.json")
    info = config["info"]
    env = make_env(info["env_id"])
    try:
        obs, _ = env.reset(seed=int(info["val_seeds"][0]))
    finally:
        env.close()
    return {"task": config["task"], "observations": [np.asarray(obs, np.float64).round(6).tolist()]}
