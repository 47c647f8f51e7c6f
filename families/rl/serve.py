"""Serving an agent: POST /rl/act answers greedy actions and the values they come from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components.data import read_json
from components.family import RequestError
from families.rl import models
from families.rl.episodes import make_env
from families.rl.evaluate import load_model

MAX_OBSERVATIONS_PER_REQUEST = 256
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
