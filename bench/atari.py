"""Atari benchmark (issue 7): a short CPU run on Breakout, Double Dueling DQN + prioritised
replay (`--agent dueling_dqn`, the Breakout task's agent) or PPO (`--agent ppo`, CleanRL's
ppo_atari settings, the `breakout-ppo` profile's agent), judged against the random policy (and
the same network untrained) with the same evaluation protocol.

Why this exists: the issue asks for "a short CPU run that shows learning" and a GPU run where a
GPU is available. The run is the library's own code path: `quartet.api.train_plain` (the rl
family's loop in this process, the agent on the Atari training env, episodic life and clipped
rewards) then the family's evaluate stage (greedy episodes on the prepared test seeds on the
evaluation env: full game, raw scores, capped at 4,500 agent steps = 5 minutes).

The random policy plays the *same* test seeds on the *same* evaluation env (uniform actions from
a seeded RNG), so the two means are comparable. "Shows learning" is stated as: greedy test mean
> random mean + 2 standard errors of the difference (sqrt(se_learned^2 + se_random^2)).

    python -m bench.atari [--agent dueling_dqn|ppo] [--steps N] [--test-episodes N] [--threads 1]
                          [--device cpu|cuda] [--seed S] [--out bench/results/atari.json]
                          [--phase train|eval --work DIR]

Measured (2 CPU cores, 2026-12-02):
- `--agent ppo --steps 409600 --steps-per-epoch 16384 --threads 2 --out bench/results/atari_ppo.json`
  (seed 1): **shows learning**: greedy 13.73 +- 10.18 over 30 test games vs random 1.07 +- 1.28
  (margin 3.75), with the best validation epoch's weights (epoch 9 of 25, 163,840 steps: 37 on 3
  validation games, later epochs 11-19); 1,638 s of training; the training lives' clipped return
  rose from 0.28 to 2.05.
- `--agent dueling_dqn --steps 28000` (1 thread): did NOT: greedy 1.10 +- 3.36, identical to the
  untrained network (a constant-action policy). An update of the Nature CNN costs ~85 ms on one
  CPU thread, so 442 s bought 3,250 updates; DQN on Breakout needs 10^5..10^6 (the GPU profile
  holds that run). PPO reuses each 1,024-step rollout for 16 minibatches of 256: 6,400 updates
  over 409,600 steps, and it is on-policy, so no replay warm-up.

Writes bench/results/atari.json (or `--out`) and the learning curve beside it (.png); it never writes BENCHMARKS.md.
Run it flock'd on the shared machine: `flock /tmp/helpers/cpu.lock nice -n 10 timeout 600 ...`.
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components import cluster
from components.config import REPO_ROOT
from components.data import read_json, write_json
from families.rl import FAMILY, data, evaluate, models
from families.rl.episodes import run_episodes
from quartet import api

log = logging.getLogger("bench.atari")

RESULTS = REPO_ROOT / "bench" / "results" / "atari.json"
TASK = "Breakout"
# A short-run Double Dueling DQN + PER. Nature's architecture (fc 512); Adam at 2.5e-4 (Nature's
# RMSProp rate); the schedule compressed for a CPU budget: learning after 2k steps, eps 1 -> 0.05
# over the first quarter, one minibatch per 8 env steps (an update of the Nature CNN costs ~85 ms
# on one CPU thread here), target sync every 2k steps.
CPU_AGENT: dict[str, Any] = {
    "model": "dueling_dqn", "hidden": 512, "lr": 2.5e-4, "gamma": 0.99, "n_envs": 4, "batch_size": 32,
    "buffer_size": 40_000, "learning_starts": 2000, "train_freq": 8, "gradient_steps": 1, "target_update": 2000,
    "exploration_fraction": 0.25, "eps_start": 1.0, "eps_end": 0.05, "loss": "huber", "max_grad_norm": 10.0,
    "prioritized": True, "per_alpha": 0.6, "per_beta0": 0.4, "stop_when_solved": False,
}

# CleanRL's ppo_atari.py hyperparameters (Huang et al. 2022, "The 37 implementation details of
# PPO"): 8 envs x 128 steps, 4 minibatches of 256, 4 epochs, clip 0.1 (value clipped too),
# entropy 0.01, Adam 2.5e-4 decaying to 0 over the run, gradient norm 0.5; the shared-torso
# Nature actor-critic (families/rl/atari.py: NatureActorCritic).
PPO_AGENT: dict[str, Any] = {
    "model": "ppo", "hidden": 512, "lr": 2.5e-4, "gamma": 0.99, "n_envs": 8, "n_steps": 128, "batch_size": 256,
    "update_epochs": 4, "gae_lambda": 0.95, "clip_coef": 0.1, "clip_vloss": True, "ent_coef": 0.01, "vf_coef": 0.5,
    "max_grad_norm": 0.5, "norm_adv": True, "anneal_lr": True, "stop_when_solved": False,
}
AGENTS = {"dueling_dqn": CPU_AGENT, "ppo": PPO_AGENT}
AGENT_TITLES = {"dueling_dqn": "Double Dueling DQN + PER", "ppo": "PPO (shared-torso Nature CNN)"}


class Uniform(torch.nn.Module):
    """Equal logits: run_episodes(greedy=False) then samples uniform actions from its seeded rng."""

    def __init__(self, n_actions: int) -> None:
        super().__init__()
        self.n_actions = n_actions

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(obs), self.n_actions)


def summary(returns: Sequence[float]) -> dict[str, float]:
    r = np.asarray(returns, np.float64)
    return {"mean": float(r.mean()), "std": float(r.std(ddof=1)) if len(r) > 1 else 0.0,
            "se": float(r.std(ddof=1) / math.sqrt(len(r))) if len(r) > 1 else 0.0, "n": int(len(r))}


def shows_learning(learned: dict[str, float], random: dict[str, float]) -> tuple[bool, float]:
    """(learned mean > random mean + 2 SE of the difference, that margin)."""
    margin = 2.0 * math.sqrt(learned["se"] ** 2 + random["se"] ** 2)
    return learned["mean"] > random["mean"] + margin, margin


def plot(history: list[dict[str, Any]], random_mean: float, path: Path, title: str) -> None:
    evaluate.plot_learning_curve(history, path, title, random_mean, f"random policy {random_mean:.2f}",
                                 train_label="training (per life, clipped)",
                                 val_label="greedy validation (game score)", xlabel="agent steps (4 frames each)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.atari", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=36_000, help="agent steps (x4 frames)")
    p.add_argument("--steps-per-epoch", type=int, default=4000)
    p.add_argument("--val-episodes", type=int, default=3)
    p.add_argument("--test-episodes", type=int, default=30, help="Nature evaluated 30 episodes per game")
    p.add_argument("--buffer-size", type=int, help="dueling_dqn only (default {})".format(CPU_AGENT["buffer_size"]))
    p.add_argument("--learning-starts", type=int, help="dueling_dqn only (default {})".format(CPU_AGENT["learning_starts"]))
    p.add_argument("--train-freq", type=int, help="dueling_dqn only (default {})".format(CPU_AGENT["train_freq"]))
    p.add_argument("--agent", choices=sorted(AGENTS), default="dueling_dqn",
                   help="dueling_dqn: the Breakout task's Double Dueling DQN + PER; ppo: CleanRL's ppo_atari")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--phase", choices=("all", "train", "eval"), default="all",
                   help="train and eval in separate processes keep each under the shared machine's 10-minute slot")
    p.add_argument("--work", type=Path, help="keep the prepared data, model dir and train.json here (needed "
                                             "with --phase); default: a temporary directory")
    return p.parse_args(argv)


def train_phase(args: argparse.Namespace, hp: dict[str, Any], work: Path) -> None:
    """Ingest, prepare and train into work/ (the model dir keeps the per-epoch history)."""
    data.ingest(work / "raw", 42)
    data.prepare(TASK, {"val_episodes": args.val_episodes, "test_episodes": args.test_episodes},
                 work / "raw", work / "prepared", 42)
    epochs = max(1, args.steps // args.steps_per_epoch)
    t0 = time.perf_counter()
    result = api.train_plain(FAMILY, TASK, hp, work / "prepared", epochs, seed=args.seed, out_dir=work / "model",
                             threads=args.threads, use_gpu=args.device == "cuda")
    write_json(work / "train.json", {"train_s": round(time.perf_counter() - t0, 1), "epochs": epochs,
                                     "history": result.history})


def eval_phase(args: argparse.Namespace, hp: dict[str, Any], work: Path) -> dict[str, Any]:
    """The learned policy (the evaluate stage), the random policy and the untrained network on the same test seeds."""
    info = read_json(work / "prepared" / "info.json")
    trained = read_json(work / "train.json")
    history = trained["history"]
    t1 = time.perf_counter()
    metrics = api.evaluate(FAMILY, work / "model", work / "prepared", work / "plots", {"gif_max_frames": 2})
    eval_s = time.perf_counter() - t1
    with open(work / "plots" / "test_returns.csv") as f:  # evaluate's greedy test returns, per seed
        learned_returns = [float(row["return"]) for row in csv.DictReader(f)]
    t2 = time.perf_counter()
    random_returns, _ = run_episodes(Uniform(int(info["n_actions"])), info["env_id"], list(info["test_seeds"]),
                                     greedy=False, rng=np.random.default_rng(0), training=False)
    random_s = time.perf_counter() - t2
    # the same network before any update: a fixed untrained net is a near-constant policy, which
    # in Breakout (FIRE automatic) can itself score above uniform play
    torch.manual_seed(args.seed)
    untrained_net = models.build(api.loop_config(FAMILY, TASK, hp, work / "prepared", 1).hparams, info).eval()
    untrained_returns, _ = run_episodes(untrained_net, info["env_id"], list(info["test_seeds"]), greedy=True)
    learned, random, untrained = summary(learned_returns), summary(random_returns), summary(untrained_returns)
    ok, margin = shows_learning(learned, random)
    ok_untrained, margin_untrained = shows_learning(learned, untrained)
    out = {
        "command": "python -m bench.atari " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}", "threads": args.threads,
        "device": args.device, "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "task": TASK, "env_id": info["env_id"], "hparams": {**hp, "epochs": trained["epochs"], "seed": args.seed},
        "protocol": {"test_seeds": [info["test_seeds"][0], info["test_seeds"][-1]], "episodes": len(info["test_seeds"]),
                     "env": "evaluation env: full game, raw scores, no sticky actions, up to 30 no-ops, "
                            "FIRE after reset and life loss, cap 4500 agent steps",
                     "learned": "greedy (best-validation epoch's weights)", "random": "uniform actions, numpy rng seed 0",
                     "shows_learning": "learned mean > random mean + 2 * sqrt(se_learned^2 + se_random^2)"},
        "env_steps": history[-1]["env_steps"], "train_s": trained["train_s"], "evaluate_s": round(eval_s, 1),
        "random_s": round(random_s, 1),
        "learned": learned, "random": random, "untrained": untrained, "shows_learning": ok, "margin_2se": margin,
        "beats_untrained": ok_untrained, "margin_2se_untrained": margin_untrained,
        "evaluate_metrics": {k: metrics[k] for k in ("test_return_mean", "test_return_std", "val_return_mean")},
        "learned_returns": learned_returns, "random_returns": random_returns, "untrained_returns": untrained_returns,
        "curve": [{k: h[k] for k in ("epoch", "env_steps", "train_return_mean", "val_return_mean", "loss", "epsilon",
                                     "epoch_time_s")} for h in history],
    }
    write_json(args.out, out)
    plot(history, random["mean"], args.out.with_suffix(".png"),
         f"{AGENT_TITLES[args.agent]} on Breakout, {history[-1]['env_steps']:,} steps ({args.device})")
    print(f"learned {learned['mean']:.2f} ± {learned['std']:.2f} vs random {random['mean']:.2f} ± {random['std']:.2f} "
          f"(n={learned['n']}); margin {margin:.2f}; shows learning: {ok}; untrained {untrained['mean']:.2f} "
          f"(beaten: {ok_untrained}); train {trained['train_s']:.0f} s", flush=True)
    log.info("wrote %s", args.out)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    cluster.apply_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.phase != "all" and args.work is None:
        raise SystemExit("--phase train/eval needs --work DIR (the eval phase reads what the train phase wrote)")
    torch.set_num_threads(args.threads)
    dqn_flags = {"buffer_size": args.buffer_size, "train_freq": args.train_freq, "learning_starts": args.learning_starts}
    given = {k: v for k, v in dqn_flags.items() if v is not None}
    if given and args.agent != "dueling_dqn":
        raise SystemExit(f"--{next(iter(given)).replace('_', '-')} is a replay setting: only --agent dueling_dqn takes it")
    hp = {**AGENTS[args.agent], "steps_per_epoch": args.steps_per_epoch, **given}
    with tempfile.TemporaryDirectory(prefix="quartet-bench-atari-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        if args.phase in ("train", "all"):
            train_phase(args, hp, work)
        if args.phase in ("eval", "all"):
            eval_phase(args, hp, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
