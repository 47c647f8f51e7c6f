"""How the RL agents learn: the family's loop (the environment replaces the DataLoader).

**One epoch = `steps_per_epoch` environment steps** per worker (summed over the parallel
environments; REINFORCE finishes the episodes it started, so its epochs can run a little over;
PPO/A2C play whole rollouts, ceil(steps_per_epoch / (n_envs * n_steps)) of them, so theirs run over
by less than one rollout, none when steps_per_epoch is a multiple of n_envs * n_steps).
Tune's ASHA schedules on `training_iteration`, i.e. on epochs, so ASHA here *is* ASHA on
environment steps: a trial stopped at grace_period 2 has seen 2 x steps_per_epoch steps.

Each epoch reports: epoch, env_steps, episodes, train_return_mean (last 100 training episodes),
val_return_mean (greedy, the prepared validation seeds), best_val_return_mean (what Tune ranks),
loss, epsilon, updates, steps_to_solve (-1 until the last 100 training episodes average the
solve threshold), steps_to_solve_greedy (env steps at the first epoch whose greedy validation
mean reached it), epoch_time_s. PPO/A2C add value_loss, entropy, approx_kl, clipfrac and lr.

**Steps to solve, one rule for the tables: `steps_to_solve_greedy`** — env steps at the end of
the first epoch whose greedy validation mean (the prepared `val_seeds`) reached the threshold.
Why that one: greedy is the policy that is evaluated, registered and served, and it is the same
measurement for every agent (SB3's EvalCallback / rl-zoo report it). The strict rule
(`steps_to_solve`: gymnasium's "mean of the last 100 *training* episodes >= threshold") is
reported beside it and is half of what `stop_when_solved` asks, but it judges the exploring policy
(eps-greedy, sampled softmax) and needs 100 solved episodes after learning, so it lags by tens
of thousands of steps (CartPole: never within 50k while the greedy rule is met at ~20k). Caveats
of the greedy rule: its resolution is one epoch, and it is only as trustworthy as the validation
set is big: 5 episodes has a standard error of ~25 on LunarLander (returns' std ~ 50-60), so a
lucky epoch can "solve"; use >= 10-20 validation episodes where the number goes in a table
(bench/rl.py uses 10), and the 100-episode test return says whether it really holds. Every checkpoint's weights.pt is the best policy/Q network so far
(by val_return_mean, first best kept on ties).

Checkpoints (under Ray Train) hold the epoch, counters, online and target nets, the optimizer,
the replay buffer (filled part, as tensors) and every RNG state (torch, numpy, python, buffer).
The environments are not picklable mid-episode: a resumed run starts fresh episodes with seeds
salted by the epoch, so it continues learning from the same state but does not replay the exact
trajectory an uninterrupted run would have taken.

With several workers (DDP) each rank plays its own environments (seeded by rank) and the
gradients are averaged; the reported counters are rank 0's. `stop_when_solved` (default on) ends
the run after the epoch by which rank 0 met both rules (the 100-episode mean of training returns
and, in some epoch so far, the greedy validation mean >= threshold, so the kept weights solve
validation), on every rank at once; Tune sees a shorter trial. The training rule alone is not
enough: the sampled policy can average 200 while the greedy one it keeps scores 147 on test
(measured: PPO on LunarLander, 36 epochs, seed 42).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import numpy as np
import torch

from components.session import Best, LoopConfig, Session, unwrap
from families.rl import models
from families.rl.agents import Progress, make_agent
from families.rl.data import train_env_seeds
from families.rl.episodes import run_episodes

log = logging.getLogger(__name__)


def rng_states(np_rng: np.random.Generator) -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np_rng.bit_generator.state, "python": random.getstate()}


def set_rng_states(states: dict[str, Any], np_rng: np.random.Generator) -> None:
    torch.set_rng_state(states["torch"])
    np_rng.bit_generator.state = states["numpy"]
    random.setstate(states["python"])


def validate_policy(net: torch.nn.Module, info: dict[str, Any], device: torch.device) -> float:
    """Mean greedy return over the prepared validation seeds (every rank plays them, no collective)."""
    returns, _ = run_episodes(unwrap(net), info["env_id"], list(info["val_seeds"]), greedy=True, device=device)
    return float(np.mean(returns))


def loop(config: LoopConfig, session: Session) -> list[dict[str, Any]]:
    """Train `config.hparams["model"]` for `config.epochs` epochs of environment steps; returns the history."""
    hp, info, device = config.hparams, config.info, session.device
    seed, epochs, rank = config.seed, config.epochs, session.rank
    net = session.prepare(models.build(hp, info))
    start, history, best = 0, [], Best(config.metric)
    restored = session.restore()
    if restored is not None:
        start, history = restored.next_epoch, restored.history
        best = Best(config.metric, history, restored.best_weights)
    agent = make_agent(hp, info, net, device, seed + rank, epochs * hp["steps_per_epoch"], start)
    progress = Progress(info["solve_threshold"], info.get("solve_window", 100))
    if restored is not None:
        agent.load_state(restored.state["agent"])
        progress = Progress(info["solve_threshold"], info.get("solve_window", 100), restored.state["progress"])
        set_rng_states(restored.state["rng"], agent.rng)
        if rank > 0:  # the checkpoint holds rank 0's random streams: this rank gets its own back
            agent.reseed(train_env_seeds(seed + rank, 1, salt=start)[0])
    try:
        for epoch in range(start, epochs):
            t0 = time.perf_counter()
            agent.net.train()
            stats = agent.run_epoch(hp["steps_per_epoch"], progress, session)
            train_time = time.perf_counter() - t0
            agent.net.eval()
            val = validate_policy(agent.net, info, device)
            if progress.steps_to_solve_greedy < 0 and val >= progress.threshold:
                progress.steps_to_solve_greedy = progress.env_steps
            metrics = {
                "epoch": epoch, "env_steps": progress.env_steps, "episodes": progress.episodes,
                "train_return_mean": progress.train_return_mean, "val_return_mean": val, **stats,
                "steps_to_solve": progress.steps_to_solve, "steps_to_solve_greedy": progress.steps_to_solve_greedy,
                "epoch_time_s": train_time, "epoch_wall_s": time.perf_counter() - t0, "resumed_at_epoch": start,
                "world_size": session.world_size,
            }
            history.append(metrics)
            best.update(metrics, agent.net)
            log.info("epoch %d: steps %d, train %.1f, val %.1f (best %.1f)", epoch, progress.env_steps,
                     metrics["train_return_mean"], val, best.value)
            session.report(metrics, history, best, lambda epoch=epoch: {
                "epoch": epoch, "agent": agent.state(), "progress": progress.state(), "rng": rng_states(agent.rng)})
            # solved by both rules: the exploring policy's last 100 episodes and (for the kept,
            # greedy policy) a validation mean; the first alone stopped PPO whose greedy policy
            # scored 147. Rank 0's verdict on every rank: a rank that stopped alone would hang the others.
            solved = progress.steps_to_solve >= 0 and progress.steps_to_solve_greedy >= 0
            if hp["stop_when_solved"] and session.agree_flag(solved):
                log.info("solved (last 100 training episodes at %d env steps, greedy validation at %d): stopping",
                         progress.steps_to_solve, progress.steps_to_solve_greedy)
                break
    finally:
        agent.close()
    return session.finish(history, best)
