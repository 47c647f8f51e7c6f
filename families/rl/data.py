"""RL "data": the environment definitions (ingest) and the evaluation seeds (prepare).

An RL family has no dataset; the environment replaces it. What must still be pinned is *which*
environment the numbers are about, so:

- `ingest` writes `data/rl/envs.json`: for every task the gymnasium version and the specs that
  change the meaning of a return (max_episode_steps, reward_threshold, observation/action sizes).
  No downloads: the simulators come with the pinned `gymnasium[box2d,classic-control]`. If a
  gymnasium upgrade changes a spec, `data.dvc` no longer matches and `make data` says so.
- `prepare` writes `info.json` (what the loop and the Predictor need: obs size, number of
  actions, solve threshold, episode cap, validation seeds) and `test_seeds.json` (the fixed
  seeds of the 100 greedy test episodes; the registry fingerprints files named `test*`, so two
  models are compared on the same episodes).

Seeds are disjoint by construction: validation seeds start at `val_seed`, test seeds at
`test_seed` (checked not to overlap), and training environments draw 32-bit seeds from the run
seed (`train_env_seeds`), which almost surely miss both ranges.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.config import ConfigError, validate_model
from components.data import DataError, read_json, write_json
from families.rl import atari

log = logging.getLogger(__name__)

ENVS_FILE = "envs.json"
TEST_SEEDS_FILE = "test_seeds.json"
TASKS = ("CartPole-v1", "LunarLander-v3", *atari.ATARI_TASKS)
# The solve criterion of each task: mean return over 100 consecutive episodes (gymnasium's
# reward_threshold; CartPole-v1 475, LunarLander-v3 200). The ALE defines none: an Atari task's
# threshold is the human score of Mnih et al. 2015 (Breakout 31.8; random play 1.7), compared
# with greedy game scores (`steps_to_solve_greedy`, evaluate's `solved`). Its *training*
# episodes are single lives with sign-clipped rewards, so the training-return `steps_to_solve`
# is conservative there (a life's clipped return is below the game score).
SOLVE_WINDOW = 100


# ----------------------------------------------------------------------------- ingest
def atari_spec(task: str) -> dict[str, Any]:
    """An Atari task's spec: the evaluation env after preprocessing (what the policy sees), its
    step cap (Nature's 5 minutes, atari.EVAL_MAX_STEPS; ALE v5's own cap is 108,000 frames =
    27,000 steps, 6x longer than any table here needs) and the human score as the threshold.
    `ale_py` is pinned too: the emulator and its ROMs define the game."""
    import ale_py
    import gymnasium as gym

    env = atari.make_atari_env(task, training=False)
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise DataError(f"{task}: only discrete action spaces are supported, got {env.action_space}")
        shape = [int(d) for d in env.observation_space.shape]
        return {
            "env_id": atari.env_id_of(task),
            "ale_py": ale_py.__version__,
            "max_episode_steps": atari.EVAL_MAX_STEPS,
            "reward_threshold": float(atari.REFERENCE_SCORES[task]["human"]),
            "random_score": float(atari.REFERENCE_SCORES[task]["random"]),
            "obs_dim": int(np.prod(shape)),
            "obs_shape": shape,
            "n_actions": int(env.action_space.n),
        }
    finally:
        env.close()


def env_spec(env_id: str) -> dict[str, Any]:
    """The parts of a gymnasium env spec that define what a return means."""
    import gymnasium as gym

    if env_id in atari.ATARI_TASKS:
        return atari_spec(env_id)
    env = gym.make(env_id)
    try:
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(act_space, gym.spaces.Discrete):
            raise DataError(f"{env_id}: only discrete action spaces are supported, got {act_space}")
        spec = env.spec
        return {
            "env_id": env_id,
            "max_episode_steps": int(spec.max_episode_steps),
            "reward_threshold": float(spec.reward_threshold),
            "obs_dim": int(np.prod(obs_space.shape)),
            "n_actions": int(act_space.n),
        }
    finally:
        env.close()


def ingest(raw_dir: Path, seed: int) -> None:
    """Write `envs.json` (deterministic: no timestamps; same bytes for the same gymnasium)."""
    import gymnasium as gym

    raw_dir.mkdir(parents=True, exist_ok=True)
    payload = {"gymnasium": gym.__version__, "envs": {t: env_spec(t) for t in TASKS}}
    write_json(raw_dir / ENVS_FILE, payload)
    log.info("rl env specs written to %s", raw_dir / ENVS_FILE)


# ----------------------------------------------------------------------------- prepare
class PrepareParams(BaseModel):
    """`families.rl.<task>.prepare`: how many fixed-seed episodes judge a policy, and their seeds."""

    model_config = ConfigDict(extra="forbid")

    val_episodes: int = Field(5, gt=0, le=1000, description="greedy episodes after every epoch")
    test_episodes: int = Field(100, gt=0, le=10_000, description="greedy episodes in evaluate (100: the solve rule)")
    val_seed: int = Field(10_000, ge=0, description="first validation episode seed")
    test_seed: int = Field(20_000, ge=0, description="first test episode seed")

    @model_validator(mode="after")
    def _disjoint(self) -> "PrepareParams":
        val = range(self.val_seed, self.val_seed + self.val_episodes)
        test = range(self.test_seed, self.test_seed + self.test_episodes)
        if max(val.start, test.start) < min(val.stop, test.stop):
            raise ValueError(f"validation seeds {val.start}..{val.stop - 1} overlap test seeds {test.start}..{test.stop - 1}")
        return self


def read_envs(raw_dir: Path, task: str) -> dict[str, Any]:
    """The pinned spec of `task`, checked against the installed gymnasium."""
    import gymnasium as gym

    path = raw_dir / ENVS_FILE
    envs = read_json(path)
    if not isinstance(envs, dict) or "envs" not in envs or "gymnasium" not in envs:
        raise DataError(f"{path}: expected keys 'gymnasium' and 'envs' (rerun `quartet data --force`)")
    if task not in envs["envs"]:
        raise DataError(f"{path}: no environment {task!r} (has {sorted(envs['envs'])})")
    spec = envs["envs"][task]
    missing = [k for k in ("max_episode_steps", "reward_threshold", "obs_dim", "n_actions") if k not in spec]
    if missing:
        raise DataError(f"{path}: envs.{task} is missing {missing}")
    live = env_spec(task)
    changed = {k: (spec.get(k), live[k]) for k in live if spec.get(k) != live[k]}
    if changed:
        raise DataError(
            f"{path}: envs.{task} was pinned with gymnasium {envs['gymnasium']} but gymnasium {gym.__version__} "
            f"defines it differently: {changed} (rerun `quartet data --force` and `dvc add data` if intended)"
        )
    return spec


def seeds(first: int, n: int) -> list[int]:
    return list(range(first, first + n))


def train_env_seeds(seed: int, n_envs: int, salt: int = 0) -> list[int]:
    """Seeds of the training environments: 32-bit draws from the run seed (and a resume salt)."""
    return [int(s) for s in np.random.SeedSequence([seed, salt]).generate_state(n_envs)]


def prepare(task: str, params: dict[str, Any], raw_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    """Write `info.json` and `test_seeds.json` into out_dir; return info."""
    if task not in TASKS:
        raise ConfigError(f"rl prepare: unknown task {task!r} (tasks: {list(TASKS)})")
    p = validate_model(PrepareParams, params or {}, f"params: families.rl.{task}.prepare")
    spec = read_envs(raw_dir, task)
    test = seeds(p.test_seed, p.test_episodes)
    info = {
        "task": task,
        "env_id": spec["env_id"],
        "obs_dim": spec["obs_dim"],
        **({"obs_shape": spec["obs_shape"]} if "obs_shape" in spec else {}),
        "n_actions": spec["n_actions"],
        "max_episode_steps": spec["max_episode_steps"],
        "solve_threshold": spec["reward_threshold"],
        "solve_window": SOLVE_WINDOW,
        "val_seeds": seeds(p.val_seed, p.val_episodes),
        "test_seeds": test,
        "counts": {"val_episodes": p.val_episodes, "test_episodes": p.test_episodes},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "info.json", info)
    write_json(out_dir / TEST_SEEDS_FILE, {"task": task, "seeds": test})
    return info


def read_test_seeds(prepared_dir: Path) -> list[int]:
    path = prepared_dir / TEST_SEEDS_FILE
    obj = read_json(path)
    if not isinstance(obj, dict) or not isinstance(obj.get("seeds"), list) or not obj["seeds"]:
        raise DataError(f"{path}: expected {{'task': ..., 'seeds': [int, ...]}} with at least one seed")
    if not all(isinstance(s, int) and s >= 0 for s in obj["seeds"]):
        raise DataError(f"{path}: column 'seeds' must hold non-negative integers")
    return list(obj["seeds"])
