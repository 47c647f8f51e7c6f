"""The rl Predictor: one route (act), batched, with the values behind each greedy action; bad requests refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from components.family import RequestError
from families.rl import FAMILY, data, serve
from quartet import api

TASK = "CartPole-v1"
TINY_DQN = {"model": "dqn", "hidden": 16, "steps_per_epoch": 150, "learning_starts": 50, "batch_size": 16,
            "buffer_size": 1000}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("rl-serve")
    data.ingest(tmp / "raw", 42)
    data.prepare(TASK, {"val_episodes": 2, "test_episodes": 3}, tmp / "raw", tmp / "prepared", 42)
    hps = {"dqn": TINY_DQN, "reinforce": {"model": "reinforce", "hidden": 16, "steps_per_epoch": 100}}
    for name, hp in hps.items():
        api.train_plain("rl", TASK, hp, tmp / "prepared", 1, seed=7, out_dir=tmp / name)
    return {name: tmp / name for name in hps}


def test_each_route_names_its_predictor_method() -> None:
    act, episode = FAMILY.routes
    assert (act.name, act.request, act.response, act.method) == ("act", serve.ActRequest, serve.ActResponse, "act_batch")
    assert (episode.name, episode.method) == ("episode", "episode_batch")
    assert FAMILY.route_for(TASK) is act  # what the registered pyfunc answers
    methods = {m for m in vars(serve.Predictor) if not m.startswith("_")}
    assert methods == {"act_batch", "episode_batch"}  # one explicit method per route, no aliases


def test_an_episode_is_played_on_the_server_and_returned_as_a_gif(model_dirs: dict[str, Path]) -> None:
    import base64
    import io

    from PIL import Image

    from families.rl.episodes import run_episodes

    predictor = serve.Predictor(model_dirs["dqn"], model_version="2")
    first, again, short = predictor.episode_batch([serve.EpisodeRequest(task=TASK, seed=5),
                                                   serve.EpisodeRequest(task=TASK, seed=5),
                                                   serve.EpisodeRequest(task=TASK, seed=5, max_steps=3)])
    (expected,), _ = run_episodes(predictor.net, TASK, [5])  # the evaluate stage's greedy return
    assert first.total_reward == pytest.approx(expected) and first.steps == int(expected)  # CartPole: +1 per step
    assert first == again and first.model_version == "2"  # the same seed plays the same episode
    assert (first.terminated or first.truncated) and first.steps <= serve.MAX_EPISODE_STEPS
    gif = Image.open(io.BytesIO(base64.b64decode(first.gif)))
    assert gif.format == "GIF" and gif.n_frames == min(serve.GIF_MAX_FRAMES, -(-first.steps // serve.GIF_EVERY)) + 1
    assert (short.steps, short.total_reward, short.truncated) == (3, 3.0, not short.terminated)
    with pytest.raises(ValidationError):
        serve.EpisodeRequest(task=TASK, max_steps=serve.MAX_EPISODE_STEPS + 1)
    with pytest.raises(RequestError, match="acts in 'CartPole-v1'"):
        predictor.episode_batch([serve.EpisodeRequest(task="LunarLander-v3")])


def test_predictor_acts_in_batches(model_dirs: dict[str, Path]) -> None:
    predictor = FAMILY.predictor(model_dirs["dqn"], model_version="3")
    example = FAMILY.input_example(model_dirs["dqn"])
    reqs = [serve.ActRequest(**example), serve.ActRequest(task=TASK, observations=[[0.0, 0.1, -0.02, 0.3]] * 3)]
    out = getattr(predictor, FAMILY.route_for(TASK).method)(reqs)
    assert [len(o.actions) for o in out] == [1, 3] and out[0].model_version == "3"
    assert np.shape(out[1].action_values) == (3, 2) and out[1].value_kind == "q_values"
    assert out[1].actions == [int(np.argmax(v)) for v in out[1].action_values]
    # alone == inside a batch, up to float32 rounding (a 3-row and a 4-row matmul may take
    # different kernel paths: observed 1e-9 apart on this CPU)
    np.testing.assert_allclose(predictor.act_batch(reqs[1:])[0].action_values, out[1].action_values, rtol=1e-5)


def test_a_policy_serves_probabilities(model_dirs: dict[str, Path]) -> None:
    (out,) = serve.Predictor(model_dirs["reinforce"]).act_batch([serve.ActRequest(task=TASK, observations=[[0.0] * 4])])
    assert out.value_kind == "probabilities" and sum(out.action_values[0]) == pytest.approx(1.0)


def test_predictor_rejects_bad_requests(model_dirs: dict[str, Path]) -> None:
    predictor = serve.Predictor(model_dirs["dqn"])
    with pytest.raises(RequestError, match="expects observations of 4 values, got 8"):
        predictor.act_batch([serve.ActRequest(task=TASK, observations=[[0.0] * 8])])
    with pytest.raises(RequestError, match="acts in 'CartPole-v1', not 'LunarLander-v3'"):
        predictor.act_batch([serve.ActRequest(task="LunarLander-v3", observations=[[0.0] * 4])])
    with pytest.raises(ValidationError, match="finite number"):
        serve.ActRequest(task=TASK, observations=[[0.0, float("nan"), 0.0, 0.0]])
    with pytest.raises(ValidationError, match="at most 256"):
        serve.ActRequest(task=TASK, observations=[[0.0] * 4] * 257)
    with pytest.raises(ValidationError, match="at least 1"):
        serve.ActRequest(task=TASK, observations=[])
