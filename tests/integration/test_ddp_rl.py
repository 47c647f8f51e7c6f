"""The RL loop under Ray Train: 2 gloo workers play their own CartPole episodes and average
REINFORCE gradients (the ranks agree on each epoch's number of updates, or DDP would hang); one
worker is killed mid-run, the run resumes from its last checkpoint, and the model dir it writes
answers the act route."""

from __future__ import annotations

from pathlib import Path

import pytest

from families.rl import FAMILY, data, serve
from quartet import api
from tests.integration.faults import assert_resumed, fit_killing_a_worker

pytestmark = pytest.mark.integration

TASK = "CartPole-v1"
EPOCHS = 4
# Tiny: episodes of an untrained policy last ~20 steps, so each epoch is a few updates of 3
# episodes per rank whose lengths differ between the ranks.
HPARAMS = {"model": "reinforce", "hidden": 16, "layers": 1, "steps_per_epoch": 300, "episodes_per_update": 3,
           "lr": 0.01}


def test_two_workers_resume_reinforce_after_a_killed_worker_and_serve(ray_local, tmp_path: Path) -> None:
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    data.ingest(raw, 42)
    data.prepare(TASK, {"val_episodes": 2, "test_episodes": 3}, raw, prepared, 42)
    config = api.loop_config("rl", TASK, HPARAMS, prepared, EPOCHS)
    # These epochs take a fraction of a second, less than Ray Train's 2 s poll, so the kill waits
    # for epoch 2's checkpoint dir: a worker's report queue holds one report, so that dir exists
    # only once the controller has taken epoch 0's (killed earlier, the run could restart from
    # scratch), and the run cannot finish before two more polls.
    result = fit_killing_a_worker(FAMILY.loop, config, tmp_path, num_workers=2, kill_after_epoch=2)
    assert_resumed(result.history, EPOCHS, 2)
    assert all(h["updates"] >= 1 for h in result.history)
    predictor = serve.Predictor(result.model_dir, model_version="1")
    (answer,) = predictor.act_batch([serve.ActRequest(**serve.input_example(result.model_dir))])
    assert answer.value_kind == "probabilities" and answer.actions[0] in (0, 1) and answer.model_version == "1"
