"""Serving an agent: POST /rl/act answers greedy actions and the values they come from;
POST /rl/episode plays one greedy episode on the server and returns it as an animated GIF (what
the demo page shows: LunarLander's Box2D physics cannot be stepped in a browser).

Vector tasks (CartPole, LunarLander) take `observations`: flat float vectors. Atari tasks
(Breakout) take `frames`: stacked preprocessed frames, each a nested array (stack, height, width)
= (4, 84, 84) of integers 0..255, newest frame last, exactly what the evaluation env returns
(`obs.tolist()`). Nested arrays rather than base64 bytes: the shape is visible in the request,
a wrong one is refused naming the expected shape, and out-of-range pixels are refused by the
schema. At most MAX_FRAME_OBSERVATIONS = 8 per request: 8 x 28,224 numbers is ~0.9 MB of JSON
compact, ~1.1 MB with spaces (`json.dumps` default), under serve.max_body_bytes (2 MB).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from components.data import read_json
from components.family import RequestError
from families.rl import models
from families.rl.episodes import make_env
from families.rl.evaluate import gif_bytes, load_model, render_episode

MAX_OBSERVATIONS_PER_REQUEST = 256
# Stacked Atari frames per request; each nesting level is bounded (a loose bound: the exact shape
# depends on the model, and the Predictor names it when it differs).
MAX_FRAME_OBSERVATIONS, MAX_FRAME_STACK, MAX_FRAME_SIDE = 8, 16, 256
# An episode is rendered on the replica's one inference thread: its steps and frames are bounded
# (measured here: 78 LunarLander steps play, render and encode in 0.5 s, about 6 s for the full
# 1000 by extrapolation; the GIF keeps every 3rd frame, at most 350, at 0.5 scale).
MAX_EPISODE_STEPS, GIF_MAX_FRAMES, GIF_EVERY, GIF_SCALE, GIF_FPS = 1000, 350, 3, 0.5, 20
# Finite and within float32: a larger value would become inf in the network and NaN Q-values.
FLOAT32_MAX = 3.4e38
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
Pixel = Annotated[int, Field(ge=0, le=255)]
Row = Annotated[list[Pixel], Field(max_length=MAX_FRAME_SIDE)]
Frame = Annotated[list[Row], Field(max_length=MAX_FRAME_SIDE)]
Stack = Annotated[list[Frame], Field(max_length=MAX_FRAME_STACK)]


class ActRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="task name, e.g. 'CartPole-v1', 'LunarLander-v3' or 'Breakout'")
    observations: list[list[Finite]] | None = Field(
        None, description="vector tasks: batch of observations, each the environment's observation vector",
        min_length=1, max_length=MAX_OBSERVATIONS_PER_REQUEST,
    )
    frames: list[Stack] | None = Field(
        None, description="Atari tasks: batch of stacked frames, each (4, 84, 84) integers 0..255, newest frame last",
        min_length=1, max_length=MAX_FRAME_OBSERVATIONS,
    )

    @model_validator(mode="after")
    def _one_kind(self) -> "ActRequest":
        if (self.observations is None) == (self.frames is None):
            raise ValueError("give exactly one of 'observations' (vector tasks) or 'frames' (Atari tasks)")
        return self

    @property
    def size(self) -> int:
        return len(self.observations if self.observations is not None else self.frames)


class ActResponse(BaseModel):
    task: str
    model_version: str | None = None
    actions: list[int] = Field(description="greedy action per observation")
    action_values: list[list[float]] = Field(description="action probabilities (reinforce) or Q-values (DQNs)")
    value_kind: str = Field(description="'probabilities' or 'q_values'")


class EpisodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="task name, e.g. 'CartPole-v1', 'LunarLander-v3' or 'Breakout'")
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


def nested_shape(stack: list[list[list[int]]]) -> tuple[int, int, int] | None:
    """(stack, height, width) of a nested frame stack; None when it is ragged."""
    heights = {len(f) for f in stack}
    widths = {len(row) for f in stack for row in f}
    if len(heights) > 1 or len(widths) > 1:
        return None
    return len(stack), next(iter(heights), 0), next(iter(widths), 0)


class Predictor:
    """Loads a model dir; greedy actions plus the values they come from, for a batch of observations."""

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.net, self.config = load_model(Path(model_dir))
        self.info = self.config["info"]
        self.task = self.config["task"]
        self.model_version = model_version
        self.obs_dim = int(self.info["obs_dim"])
        # image tasks (Atari) have an obs_shape (stack, height, width); vector tasks do not
        shape = self.info.get("obs_shape")
        self.obs_shape = tuple(int(d) for d in shape) if shape and len(shape) > 1 else None
        self.value_kind = "q_values" if models.is_dqn(self.config["hparams"]) else "probabilities"

    def _check(self, req: ActRequest) -> None:
        if req.task != self.task:
            raise RequestError(f"this model acts in {self.task!r}, not {req.task!r}")
        if self.obs_shape is not None:
            self._check_frames(req)
            return
        if req.observations is None:
            raise RequestError(f"task {self.task!r} takes 'observations' (vectors of {self.obs_dim} values), not 'frames'")
        bad = sorted({len(o) for o in req.observations if len(o) != self.obs_dim})
        if bad:
            raise RequestError(
                f"task {self.task!r} expects observations of {self.obs_dim} values, got {bad[0] if len(bad) == 1 else bad}"
            )

    def _check_frames(self, req: ActRequest) -> None:
        expected = "x".join(map(str, self.obs_shape))
        if req.frames is None:
            raise RequestError(f"task {self.task!r} takes 'frames': stacked frames of shape {expected} (0..255), "
                               "not 'observations'")
        for i, stack in enumerate(req.frames):
            got = nested_shape(stack)
            if got != self.obs_shape:
                shown = "x".join(map(str, got)) if got is not None else "ragged (rows of different lengths)"
                raise RequestError(f"task {self.task!r} expects frames of shape {expected} (stack x height x width), "
                                   f"got {shown} at frames[{i}]")

    def _inputs(self, reqs: list[ActRequest]) -> torch.Tensor:
        if self.obs_shape is not None:
            return torch.from_numpy(np.array([s for r in reqs for s in r.frames], np.uint8)).to(torch.float32)
        return torch.tensor([o for r in reqs for o in r.observations], dtype=torch.float32)

    def act_batch(self, reqs: list[ActRequest]) -> list[ActResponse]:
        """All observations of all requests in one forward pass (Serve batches requests)."""
        for r in reqs:
            self._check(r)
        obs = self._inputs(reqs)
        with torch.no_grad():
            values = self.net.action_values(obs)
        if not torch.isfinite(values).all():  # inputs far outside the training range overflow float32
            raise RequestError("observations too large for this model: its action values overflow (not finite)")
        actions = models.greedy(values)
        out, start = [], 0
        for r in reqs:
            n = r.size
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
    env = make_env(info["env_id"], training=False)
    try:
        obs, _ = env.reset(seed=int(info["val_seeds"][0]))
    finally:
        env.close()
    if np.asarray(obs).ndim > 1:  # stacked frames
        return {"task": config["task"], "frames": [np.asarray(obs, np.uint8).tolist()]}
    return {"task": config["task"], "observations": [np.asarray(obs, np.float64).round(6).tolist()]}
