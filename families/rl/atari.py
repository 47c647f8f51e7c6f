"""Atari (the book's Breakout, ch. 18 with TF-Agents): the standard preprocessing and the Nature CNN.

The environment stack follows Mnih et al. 2015 ("Nature DQN") and Machado et al. 2018's list of
what it contains, built from ale-py 0.12's `ALE/<Game>-v5` with `frameskip=1` so the skipping is
ours:

- **no sticky actions** (`repeat_action_probability=0`, the Nature protocol, not v5's default
  0.25): with seeded no-op starts an episode is a function of its seed and the policy, so the
  fixed validation/test seeds mean the same episodes for every model.
- up to 30 random **no-ops** after a real reset (drawn from the env's seeded RNG);
- **frame skip 4** (the action is repeated 4 emulator frames, rewards summed) with a **max over
  the last two frames** (Atari sprites flicker between frames);
- **grey** (the ALE's own luminance screen) **84x84** (area averaging: PIL's box filter, the same
  kernel as OpenCV's INTER_AREA that gymnasium's `AtariPreprocessing` uses; gymnasium's wrapper
  needs opencv, which the project does not install);
- **FIRE** after every reset for games that need it (Breakout), so the agent need not learn to
  launch the ball;
- a **stack of the last 4 frames**, newest last (gymnasium's `FrameStackObservation`, uint8
  (4, 84, 84)).

Training env only: **episodic life** (a lost life is terminal for the learner; the next
`reset()` continues the same game, Nature's trick) and **rewards clipped to their sign**.
Evaluation env (validation, test, serving): the full game, raw rewards (the numbers the tables
report are game scores), the same observations, FIRE again after a lost life (the training env
fired after each life loss through its reset, so a greedy policy that never learnt FIRE would
otherwise stall forever), and a cap of `EVAL_MAX_STEPS` = 4,500 agent steps = 18,000 frames = 5
minutes of play (Nature's evaluation cap), which also bounds a policy that loops without losing.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

ATARI_TASKS = {"Breakout": "ALE/Breakout-v5"}
FRAME_SKIP, SCREEN, STACK, NOOP_MAX = 4, 84, 4, 30
OBS_SHAPE = (STACK, SCREEN, SCREEN)
# Nature DQN's evaluation: at most 5 minutes of emulator time (18,000 frames) per episode.
EVAL_MAX_STEPS = 18_000 // FRAME_SKIP
# What a Breakout return means (no reward_threshold in the ALE): Mnih et al. 2015, Extended Data
# Table 2: random play 1.7, professional human tester 31.8 (game scores, 5-minute episodes).
REFERENCE_SCORES = {"Breakout": {"random": 1.7, "human": 31.8}}


def is_atari(env_id_or_task: str) -> bool:
    """An ALE env id (`ALE/...`) or one of the Atari task names."""
    return env_id_or_task.startswith("ALE/") or env_id_or_task in ATARI_TASKS


def env_id_of(env_id_or_task: str) -> str:
    return ATARI_TASKS.get(env_id_or_task, env_id_or_task)


# ----------------------------------------------------------------------------- wrappers
def _wrappers() -> Any:
    """The wrapper classes, defined on first use (gymnasium is imported lazily, as elsewhere)."""
    global _W
    if _W is not None:
        return _W
    import gymnasium as gym
    from PIL import Image

    class NoopReset(gym.Wrapper):
        """1..noop_max no-op actions after a real reset (Nature's random starts), from the env's seeded RNG."""

        def __init__(self, env: gym.Env, noop_max: int) -> None:
            super().__init__(env)
            self.noop_max = noop_max

        def reset(self, **kwargs: Any) -> tuple[Any, dict]:
            obs, info = self.env.reset(**kwargs)
            for _ in range(int(self.env.unwrapped.np_random.integers(1, self.noop_max + 1))):
                obs, _, term, trunc, info = self.env.step(0)
                if term or trunc:
                    obs, info = self.env.reset()
            return obs, info

    class MaxSkip(gym.Wrapper):
        """Repeat the action `skip` frames, sum the rewards, observe the max of the last two frames."""

        def __init__(self, env: gym.Env, skip: int) -> None:
            super().__init__(env)
            self.skip = skip

        def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
            total, frames = 0.0, []
            for _ in range(self.skip):
                obs, r, term, trunc, info = self.env.step(action)
                total += float(r)
                frames = [frames[-1], obs] if frames else [obs]
                if term or trunc:
                    break
            return np.maximum.reduce(frames), total, term, trunc, info

    class Resize(gym.ObservationWrapper):
        """(210, 160) grey -> (84, 84) uint8 by area averaging."""

        def __init__(self, env: gym.Env, size: int) -> None:
            super().__init__(env)
            self.size = size
            self.observation_space = gym.spaces.Box(0, 255, (size, size), np.uint8)

        def observation(self, obs: np.ndarray) -> np.ndarray:
            img = Image.fromarray(np.asarray(obs, np.uint8)).resize((self.size, self.size), Image.Resampling.BOX)
            return np.asarray(img, np.uint8)

    class EpisodicLife(gym.Wrapper):
        """A lost life ends the learner's episode; reset() then continues the game (no-op step)."""

        def __init__(self, env: gym.Env) -> None:
            super().__init__(env)
            self.lives, self.game_over = 0, True

        def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
            obs, r, term, trunc, info = self.env.step(action)
            self.game_over = bool(term or trunc)
            lives = self.env.unwrapped.ale.lives()
            if 0 < lives < self.lives:
                term = True
            self.lives = lives
            return obs, r, term, trunc, info

        def reset(self, **kwargs: Any) -> tuple[Any, dict]:
            if self.game_over:
                obs, info = self.env.reset(**kwargs)
            else:
                obs, _, term, trunc, info = self.env.step(0)
                if term or trunc:
                    obs, info = self.env.reset(**kwargs)
            self.game_over = False
            self.lives = self.env.unwrapped.ale.lives()
            return obs, info

    class FireReset(gym.Wrapper):
        """Press FIRE after each reset (and, with `on_life_loss`, after each lost life)."""

        def __init__(self, env: gym.Env, on_life_loss: bool) -> None:
            super().__init__(env)
            self.on_life_loss, self.lives = on_life_loss, 0

        def _fire(self) -> tuple[Any, float, bool, bool, dict]:
            return self.env.step(1)

        def reset(self, **kwargs: Any) -> tuple[Any, dict]:
            self.env.reset(**kwargs)
            obs, _, term, trunc, info = self._fire()
            if term or trunc:
                obs, info = self.env.reset(**kwargs)
            self.lives = self.env.unwrapped.ale.lives()
            return obs, info

        def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
            obs, r, term, trunc, info = self.env.step(action)
            lives = self.env.unwrapped.ale.lives()
            if self.on_life_loss and lives < self.lives and not (term or trunc):
                obs, r2, term, trunc, info = self._fire()
                r = float(r) + float(r2)
            self.lives = lives
            return obs, r, term, trunc, info

    class W:  # a namespace
        pass

    for cls in (NoopReset, MaxSkip, Resize, EpisodicLife, FireReset):
        setattr(W, cls.__name__, cls)
    _W = W
    return W


_W: Any = None


def make_atari_env(env_id: str, training: bool, render: bool = False, max_steps: int = EVAL_MAX_STEPS) -> Any:
    """The standard stack (module docstring). `training`: episodic life + sign-clipped rewards;
    otherwise the full game, raw scores, capped at `max_steps` agent steps. `render`: the base env
    renders rgb_array frames (the GIFs show the real screen, not the 84x84 input)."""
    import ale_py
    import gymnasium as gym
    from gymnasium.wrappers import FrameStackObservation, TimeLimit, TransformReward

    gym.register_envs(ale_py)
    if render:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    w = _wrappers()
    env = gym.make(env_id_of(env_id), frameskip=1, repeat_action_probability=0.0, obs_type="grayscale",
                   render_mode="rgb_array" if render else None)
    env = w.NoopReset(env, NOOP_MAX)
    env = w.MaxSkip(env, FRAME_SKIP)
    if training:
        env = w.EpisodicLife(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = w.FireReset(env, on_life_loss=not training)
    env = w.Resize(env, SCREEN)
    if training:
        env = TransformReward(env, lambda r: float(np.sign(r)))
    env = FrameStackObservation(env, STACK)
    if not training:
        env = TimeLimit(env, max_episode_steps=int(max_steps))
    return env


# ----------------------------------------------------------------------------- networks
def nature_torso(in_channels: int = STACK) -> nn.Sequential:
    """Mnih et al. 2015: conv 32 8x8 s4, 64 4x4 s2, 64 3x3 s1 (ReLU), flattened: 64*7*7 = 3136 for 84x84."""
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, 8, stride=4), nn.ReLU(),
        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
        nn.Flatten(),
    )


def _flat_size(torso: nn.Module, shape: tuple[int, ...]) -> int:
    with torch.no_grad():
        return int(torso(torch.zeros(1, *shape)).shape[1])


def _scale(obs: torch.Tensor) -> torch.Tensor:
    """uint8 or float 0..255 -> float 0..1 (the net scales, so buffers and requests stay uint8-sized)."""
    return obs.to(torch.float32) / 255.0


class NatureQNetwork(nn.Module):
    """(batch, 4, 84, 84) 0..255 -> Q(s, a): the torso, fc `hidden` (512 in Nature), a linear head."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int) -> None:
        super().__init__()
        self.torso = nature_torso(obs_shape[0])
        self.fc = nn.Sequential(nn.Linear(_flat_size(self.torso, obs_shape), hidden), nn.ReLU())
        self.head = nn.Linear(hidden, n_actions)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.fc(self.torso(_scale(obs))))

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class NaturePolicyNetwork(NatureQNetwork):
    """The same network read as action logits (policy-gradient agents); serves probabilities."""

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(obs), dim=-1)


class NatureDuelingQNetwork(nn.Module):
    """Wang et al. 2016: the Nature torso, then two fc streams, V(s) and A(s, a);
    Q = V + A - mean_a A (or max, `aggregator`) so V and A are identifiable."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int, aggregator: str = "mean") -> None:
        super().__init__()
        self.torso = nature_torso(obs_shape[0])
        flat = _flat_size(self.torso, obs_shape)
        self.value = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.advantage = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.Linear(hidden, n_actions))
        self.aggregator = aggregator

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        h = self.torso(_scale(obs))
        a = self.advantage(h)
        baseline = a.mean(dim=-1, keepdim=True) if self.aggregator == "mean" else a.max(dim=-1, keepdim=True).values
        return self.value(h) + a - baseline

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        return self(obs)


class NatureActorCritic(nn.Module):
    """CleanRL's ppo_atari network: one Nature torso and fc `hidden` *shared* by a policy head
    and a value head (the MLP ActorCritic keeps two torsos; here the convolutions are most of the
    cost and the features are the same). Orthogonal init, gain sqrt(2) in the torso, 0.01 for the
    policy head (near-uniform start), 1 for the value head.

    `forward(obs)` -> logits (greedy evaluation, serving); `forward(obs, with_value=True)` ->
    (logits, V(s)), one call so DDP sees every parameter."""

    def __init__(self, obs_shape: tuple[int, ...], n_actions: int, hidden: int) -> None:
        super().__init__()
        self.torso = nature_torso(obs_shape[0])
        self.fc = nn.Sequential(nn.Linear(_flat_size(self.torso, obs_shape), hidden), nn.ReLU())
        self.actor = nn.Linear(hidden, n_actions)
        self.critic = nn.Linear(hidden, 1)
        for module, gain in ((self.torso, 2 ** 0.5), (self.fc, 2 ** 0.5), (self.actor, 0.01), (self.critic, 1.0)):
            for layer in module.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    nn.init.orthogonal_(layer.weight, gain)
                    nn.init.zeros_(layer.bias)

    def forward(self, obs: torch.Tensor, with_value: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.fc(self.torso(_scale(obs)))
        logits = self.actor(h)
        if not with_value:
            return logits
        return logits, self.critic(h).squeeze(-1)

    def action_values(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self(obs), dim=-1)


def build_network(hp: dict[str, Any], info: dict[str, Any]) -> nn.Module:
    """The network of `hp["model"]` for image observations `info["obs_shape"]` (4, 84, 84).

    DQN models get a Q network (dueling when their hparams have `dueling_aggregator`); agents
    with a critic (PPO, A2C, REINFORCE with a baseline) the shared-torso actor-critic; plain
    REINFORCE the Q network's shape read as logits."""
    from families.rl import models  # models.build calls this: import at call time, not at import

    shape = tuple(int(s) for s in info["obs_shape"])
    n_actions, hidden = int(info["n_actions"]), int(hp["hidden"])
    if models.has_critic(hp):
        return NatureActorCritic(shape, n_actions, hidden)
    if not models.is_dqn(hp):
        return NaturePolicyNetwork(shape, n_actions, hidden)
    if "dueling_aggregator" in hp:
        return NatureDuelingQNetwork(shape, n_actions, hidden, hp["dueling_aggregator"])
    return NatureQNetwork(shape, n_actions, hidden)
