"""Atari (Breakout): the preprocessing stack, the Nature CNN, uint8 frame replay, and serving frames."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from components.family import RequestError
from families.rl import atari, buffers, data, serve
from families.rl.episodes import make_env
from quartet import api

TASK = "Breakout"


def wrapper_chain(env) -> list:
    chain = [env]
    while hasattr(chain[-1], "env"):
        chain.append(chain[-1].env)
    return chain


# ----------------------------------------------------------------------------- preprocessing
def test_an_observation_is_four_stacked_84x84_grey_frames_of_four_skipped_frames_newest_last() -> None:
    env = atari.make_atari_env(TASK, training=False)
    try:
        obs, _ = env.reset(seed=3)
        assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
        ale, action = env.unwrapped.ale, env.unwrapped._action_set[3]  # LEFT
        state, frame0 = ale.cloneState(), ale.getEpisodeFrameNumber()
        nxt, *_ = env.step(3)
        assert ale.getEpisodeFrameNumber() - frame0 == atari.FRAME_SKIP == 4
        np.testing.assert_array_equal(nxt[:3], obs[1:])  # the stack shifts: newest frame last
        # replay the 4 frames on the emulator: newest frame = 84x84 area-resized max of the last two grey screens
        ale.restoreState(state)
        screens = []
        for _ in range(4):
            ale.act(action)
            screens.append(ale.getScreenGrayscale())
        expected = np.asarray(Image.fromarray(np.maximum(screens[-2], screens[-1])).resize((84, 84), Image.Resampling.BOX))
        np.testing.assert_array_equal(nxt[-1], expected)
    finally:
        env.close()


def test_training_rewards_are_clipped_to_their_sign_and_evaluation_rewards_are_raw() -> None:
    train, evaluation = atari.make_atari_env(TASK, training=True), atari.make_atari_env(TASK, training=False)
    try:
        (clip,) = [w for w in wrapper_chain(train) if type(w).__name__ == "TransformReward"]
        assert [clip.reward(r) for r in (7.0, 4.0, 1.0, 0.0, -3.0)] == [1.0, 1.0, 1.0, 0.0, -1.0]
        assert not [w for w in wrapper_chain(evaluation) if type(w).__name__ == "TransformReward"]
        # and the clipped stream is what the learner sees
        train.reset(seed=0)
        rng = np.random.default_rng(0)
        rewards = {train.step(int(rng.integers(4)))[1] for _ in range(300)}
        assert rewards <= {0.0, 1.0}
    finally:
        train.close()
        evaluation.close()


def test_a_lost_life_ends_a_training_episode_but_not_an_evaluation_episode() -> None:
    for training in (True, False):
        env = atari.make_atari_env(TASK, training=training)
        try:
            _, info = env.reset(seed=1)
            assert info["lives"] == 5
            rng = np.random.default_rng(1)
            for _ in range(2000):  # a random life in Breakout lasts ~25 steps
                _, _, term, trunc, info = env.step(int(rng.integers(4)))
                if term or info["lives"] < 5:
                    break
            assert info["lives"] == 4 and term == training and not trunc
            if training:  # reset continues the same game: the next life, not a new game
                assert env.reset()[1]["lives"] == 4
        finally:
            env.close()


def test_make_env_is_the_training_stack_unless_asked_and_the_evaluation_env_is_capped() -> None:
    names = lambda env: [type(w).__name__ for w in wrapper_chain(env)]  # noqa: E731
    train, evaluation = make_env(TASK), make_env("ALE/Breakout-v5", training=False)
    try:
        assert "EpisodicLife" in names(train) and "TimeLimit" not in names(train)
        assert "EpisodicLife" not in names(evaluation)
        assert evaluation.spec.max_episode_steps == atari.EVAL_MAX_STEPS == 4500  # 18,000 frames: 5 minutes
    finally:
        train.close()
        evaluation.close()


# ----------------------------------------------------------------------------- networks
INFO = {"obs_shape": [4, 84, 84], "obs_dim": 28224, "n_actions": 4}


def test_the_nature_cnn_maps_stacked_frames_to_one_q_value_per_action() -> None:
    torch.manual_seed(0)
    net = atari.build_network({"model": "double_dqn", "hidden": 512}, INFO)
    convs = [(m.out_channels, m.kernel_size[0], m.stride[0]) for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs == [(32, 8, 4), (64, 4, 2), (64, 3, 1)]
    assert net.fc[0].in_features == 64 * 7 * 7 and net.fc[0].out_features == 512
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    q = net(frames.float())
    assert q.shape == (3, 4)
    torch.testing.assert_close(net(frames), q)  # uint8 or float 0..255: the net scales by 1/255 itself


def test_the_dueling_head_is_value_plus_centred_advantage() -> None:
    torch.manual_seed(0)
    net = atari.build_network({"model": "dueling_dqn", "hidden": 32, "dueling_aggregator": "mean"}, INFO)
    assert isinstance(net, atari.NatureDuelingQNetwork)
    x = torch.randint(0, 256, (2, 4, 84, 84)).float()
    h = net.torso(x / 255.0)
    q = net(x)
    torch.testing.assert_close(q.mean(dim=1, keepdim=True), net.value(h))  # mean_a (Q - V) = 0
    torch.testing.assert_close(q - q.mean(dim=1, keepdim=True), net.advantage(h) - net.advantage(h).mean(1, True))


@pytest.mark.parametrize("model", ["ppo", "a2c", "reinforce_baseline"])
def test_agents_with_a_critic_get_one_shared_torso_with_policy_and_value_heads(model: str) -> None:
    torch.manual_seed(0)
    net = atari.build_network({"model": model, "hidden": 32}, INFO)
    assert isinstance(net, atari.NatureActorCritic)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 3  # one torso, not one per head
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    logits, value = net(frames, with_value=True)
    assert logits.shape == (3, 4) and value.shape == (3,)
    torch.testing.assert_close(net(frames.float()), logits)  # forward(obs) is the logits alone, uint8 or float
    # the policy head's gain 0.01: a near-uniform policy at the start, as CleanRL's
    torch.testing.assert_close(net.action_values(frames), torch.full((3, 4), 0.25), atol=0.01, rtol=0)
    # orthogonal rows of norm = gain: 0.01 (policy), 1 (value), sqrt(2) (the fc's ReLU layer)
    torch.testing.assert_close(net.actor.weight.norm(dim=1), torch.full((4,), 0.01))
    torch.testing.assert_close(net.critic.weight.norm(dim=1), torch.ones(1))
    torch.testing.assert_close(net.fc[0].weight.norm(dim=1), torch.full((32,), 2 ** 0.5))


def test_a_ppo_rollout_keeps_breakout_frames_uint8_and_updates_the_actor_critic(tmp_path: Path) -> None:
    from families.rl.actor_critic import ActorCriticAgent
    from families.rl.agents import Progress

    data.ingest(tmp_path / "raw", 42)
    data.prepare(TASK, {"val_episodes": 1, "test_episodes": 1}, tmp_path / "raw", tmp_path / "prepared", 42)
    hp = {"model": "ppo", "hidden": 16, "n_envs": 2, "n_steps": 8, "batch_size": 8, "steps_per_epoch": 16}
    config = api.loop_config("rl", TASK, hp, tmp_path / "prepared", 1, seed=0)
    torch.manual_seed(0)
    net = atari.build_network(config.hparams, config.info)
    before = [p.detach().clone() for p in net.parameters()]
    agent = ActorCriticAgent(config.hparams, config.info, net, torch.device("cpu"), seed=0, total_steps=16)
    try:
        roll = agent.collect(Progress(0.0, 100))
        assert roll["obs"].dtype == np.uint8 and roll["obs"].shape == (8, 2, 4, 84, 84)
        assert roll["obs"].any()  # real screens, not the zeros the buffer started as
        stats = agent.update(roll)
    finally:
        agent.close()
    assert stats["updates"] == 4 * 2  # update_epochs x (16 transitions / minibatch 8)
    assert all(np.isfinite(v) for v in stats.values())
    assert all(not torch.equal(a, b) for a, b in zip(before, net.parameters()))  # both heads and the torso moved


# ----------------------------------------------------------------------------- frame replay
def stacks(n: int, shape=(4, 6, 5), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n consecutive frame-stack transitions: next_obs = obs shifted by one + a new frame."""
    frames = np.random.default_rng(seed).integers(0, 256, (n + shape[0], *shape[1:]), dtype=np.uint8)
    obs = np.stack([frames[i : i + shape[0]] for i in range(n)])
    return obs, np.stack([frames[i + 1 : i + 1 + shape[0]] for i in range(n)])


@pytest.mark.parametrize("prioritized", [False, True])
def test_frame_replay_stores_uint8_rebuilds_next_obs_and_round_trips(prioritized: bool) -> None:
    hp = {"prioritized": prioritized, "buffer_size": 8, "per_alpha": 0.6, "per_eps": 1e-6}
    buf = buffers.make_buffer(hp, [4, 6, 5], seed=0)
    assert buf.obs.dtype == np.uint8 and buf.obs.shape == (8, 4, 6, 5) and buf.next_frame.shape == (8, 6, 5)
    assert buf.obs.nbytes + buf.next_frame.nbytes == 8 * (4 * 30 + 30)  # obs + one new frame per transition
    obs, nxt = stacks(6)
    buf.add(obs, np.arange(6) % 4, np.ones(6, np.float32), nxt, np.zeros(6, np.float32))
    batch, idx, weights = buf.sample(5, 0.4)
    assert batch["obs"].dtype == torch.uint8 and batch["obs"].shape == (5, 4, 6, 5)
    np.testing.assert_array_equal(batch["next_obs"].numpy(), nxt[idx])
    np.testing.assert_array_equal(batch["obs"].numpy(), obs[idx])
    buf.update_priorities(idx, np.arange(5, dtype=np.float64))
    copy = buffers.make_buffer(hp, (4, 6, 5), seed=9)
    copy.load_state_dict(buf.state_dict())
    a, b = copy.sample(5, 0.4), buf.sample(5, 0.4)
    assert np.array_equal(a[1], b[1]) and torch.equal(a[0]["next_obs"], b[0]["next_obs"])
    with pytest.raises(ValueError, match="frame stack"):
        buf.add(obs[:1], np.zeros(1, np.int64), np.zeros(1, np.float32), obs[:1][:, ::-1], np.zeros(1, np.float32))


def test_frame_replay_memory_per_transition_is_stated_for_atari() -> None:
    assert buffers.frame_bytes_per_transition(atari.OBS_SHAPE) == 28_224 + 7_056 + 16
    buf = buffers.ReplayBuffer(3, atari.OBS_SHAPE, seed=0)
    assert buf.obs.nbytes + buf.next_frame.nbytes == 3 * (28_224 + 7_056)


def test_vector_observations_keep_float32_storage() -> None:
    buf = buffers.make_buffer({"prioritized": False, "buffer_size": 4}, 3, seed=0)
    same = buffers.make_buffer({"prioritized": False, "buffer_size": 4}, [3], seed=0)
    assert buf.obs.dtype == same.obs.dtype == np.float32 and buf.next_obs.shape == same.next_obs.shape == (4, 3)


# ----------------------------------------------------------------------------- serving
TINY = {"model": "dueling_dqn", "hidden": 16, "steps_per_epoch": 48, "n_envs": 1, "learning_starts": 24,
        "batch_size": 8, "buffer_size": 64, "train_freq": 8, "prioritized": True, "stop_when_solved": False}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("rl-atari")
    data.ingest(tmp / "raw", 42)
    data.prepare(TASK, {"val_episodes": 1, "test_episodes": 1}, tmp / "raw", tmp / "prepared", 42)
    api.train_plain("rl", TASK, TINY, tmp / "prepared", 1, seed=3, out_dir=tmp / "model")
    return tmp / "model"


def frames(n: int, shape=(4, 84, 84), value: int = 0) -> list:
    return np.full((n, *shape), value, np.int64).tolist()


def test_act_takes_stacked_frames_and_answers_q_values(model_dir: Path) -> None:
    predictor = serve.Predictor(model_dir)
    example = serve.input_example(model_dir)
    (one, two) = predictor.act_batch([serve.ActRequest(**example), serve.ActRequest(task=TASK, frames=frames(2, value=9))])
    assert len(one.actions) == 1 and len(two.actions) == 2 and two.value_kind == "q_values"
    assert np.shape(two.action_values) == (2, 4) and two.actions == [int(np.argmax(v)) for v in two.action_values]
    assert two.action_values[0] == pytest.approx(two.action_values[1])  # the same frames, the same values


def test_bad_frames_are_refused_naming_the_expected_shape(model_dir: Path) -> None:
    predictor = serve.Predictor(model_dir)
    with pytest.raises(RequestError, match=r"expects frames of shape 4x84x84 .*got 4x84x83 at frames\[0\]"):
        predictor.act_batch([serve.ActRequest(task=TASK, frames=frames(1, (4, 84, 83)))])
    with pytest.raises(RequestError, match=r"got 3x84x84"):
        predictor.act_batch([serve.ActRequest(task=TASK, frames=frames(1, (3, 84, 84)))])
    ragged = frames(1)
    ragged[0][2][5] = ragged[0][2][5][:10]
    with pytest.raises(RequestError, match="ragged"):
        predictor.act_batch([serve.ActRequest(task=TASK, frames=ragged)])
    with pytest.raises(RequestError, match="takes 'frames'"):
        predictor.act_batch([serve.ActRequest(task=TASK, observations=[[0.0] * 4])])


def test_frames_out_of_range_too_many_or_mixed_with_observations_fail_the_schema() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 255"):
        serve.ActRequest(task=TASK, frames=frames(1, value=256))
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        serve.ActRequest(task=TASK, frames=frames(1, value=-1))
    with pytest.raises(ValidationError, match="at most 8"):
        serve.ActRequest(task=TASK, frames=frames(serve.MAX_FRAME_OBSERVATIONS + 1))
    with pytest.raises(ValidationError, match="exactly one"):
        serve.ActRequest(task=TASK, frames=frames(1), observations=[[0.0]])
    with pytest.raises(ValidationError, match="exactly one"):
        serve.ActRequest(task=TASK)


def test_a_maximal_frames_request_fits_the_body_limit() -> None:
    from components.config import ServeParams

    body = json.dumps({"task": TASK, "frames": frames(serve.MAX_FRAME_OBSERVATIONS, value=255)})
    assert len(body.encode()) < ServeParams().max_body_bytes


def test_a_breakout_episode_is_played_bounded_and_returned_as_a_gif(model_dir: Path) -> None:
    import base64
    import io

    (ep,) = serve.Predictor(model_dir).episode_batch([serve.EpisodeRequest(task=TASK, seed=2, max_steps=30)])
    assert ep.steps <= 30 and (ep.terminated or ep.truncated)
    gif = Image.open(io.BytesIO(base64.b64decode(ep.gif)))
    assert gif.format == "GIF" and gif.size == (80, 105)  # the real 160x210 RGB screen at 0.5 scale


# ----------------------------------------------------------------------------- the CPU profile
def test_the_breakout_ppo_profile_has_the_hparams_bench_atari_measured() -> None:
    """`--profile breakout-ppo` is the README's Breakout for a CPU: its tune and train hparams,
    validated as the rl family validates them (params.yaml's DQN keys dropped), are the PPO
    settings bench.atari measured, and the sweep can only pick that learning rate. (The seed and
    the process differ: the task runs the pipeline's seed on Ray Train.)"""
    from bench.atari import PPO_AGENT
    from components import config
    from components.config import REPO_ROOT

    task = config.load(REPO_ROOT, "breakout-ppo").task("rl", TASK)
    assert task.tune.models == ["ppo"] and task.tune.search_space["ppo"]["lr"].choice == [PPO_AGENT["lr"]]
    family = api.family("rl")
    expected = family.validate_hparams({**PPO_AGENT, "steps_per_epoch": 16_384})  # bench: --steps-per-epoch 16384
    for hparams in (task.tune.hparams, task.train.hparams):
        assert "buffer_size" in hparams  # the merged base (DQN) keys are there ...
        assert family.validate_hparams({**hparams, "model": "ppo"}) == expected  # ... and dropped for PPO
    assert task.train.epochs * task.train.hparams["steps_per_epoch"] == 409_600 and task.train.cpus_per_worker == 2
