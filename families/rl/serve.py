"""Serving an agent: POST /rl/act answers greedy actions and the values they come from;
POST /rl/episode plays one greedy episode on the server and returns it as an animated GIF (what
the demo page shows: LunarLander's Box2D physics cannot be stepped in a browser)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components.data import read_json
from components.family import RequestError
from families.rl import models
from families.rl.episodes import make_env
from families.rl.evaluate import gif_bytes, load_model, render_episode

MAX_OBSERVATIONS_PER_REQUEST = 256
# An episode is rendered on the replica's one inference thread: its steps and frames are bounded
# (measured here: 78 LunarLander steps play, render and encode in 0.5 s, about 6 s for the full
# 1000 by extrapolation; the GIF keeps every 3rd frame, at most 350, at 0.5 scale).
MAX_EPISODE_STEPS, GIF_MAX_FRAMES, GIF_EVERY, GIF_SCALE, GIF_FPS = 1000, 350, 3, 0.5, 20
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


class EpisodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="environment id, e.g. 'CartPole-v1' or 'LunarLander-v3'")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="the environment's reset seed (same seed, same episode)")
    max_steps: int = Field(MAX_EPISODE_STEPS, ge=1, le=MAX_EPISODE_STEPS, description="stop the episode after this many steps")


class EpisodeResponse(BaseModel):
    task: str
    model_version: str | None = None
    seed: int
    total_reward: float
    steps: int
    terminated: bool = Field(description="the episode ended (landed, crashed, pole fell)")
    truncated: bool = Field(description="cut by the time limit or max_steps")
    gif: str = Field(description="base64-encoded animated GIF of the episode")


class Predictor:
    """Loads a model dir; greedy actions plus the values they come from, for a batch of observations."""

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


    def episode_batch(self, reqs: list[EpisodeRequest]) -> list[EpisodeResponse]:
        """The "episode" route: one greedy episode per request, rendered (one at a time)."""
        out = []
        for r in reqs:
            if r.task != self.task:
                raise RequestError(f"this model acts in {self.task!r}, not {r.task!r}")
            ep = render_episode(self.net, self.info["env_id"], r.seed, GIF_MAX_FRAMES, GIF_EVERY, max_steps=r.max_steps)
            out.append(EpisodeResponse(task=r.task, model_version=self.model_version, seed=r.seed,
                                       total_reward=ep.total_reward, steps=ep.steps, terminated=ep.terminated,
                                       truncated=ep.truncated,
                                       gif=base64.b64encode(gif_bytes(ep.frames, GIF_SCALE, GIF_FPS)).decode()))
        return out


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
