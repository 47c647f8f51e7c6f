"""The RL zoo: each agent's own validated hparams, what its class says about training, the
networks' shapes, and that every key params.yaml and the profiles use is known to some model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from components import config
from components.config import ConfigError
from components.tune import check_space, representative_samples
from families.rl import FAMILY, models

INFO = {"obs_dim": 4, "n_actions": 2}
REPO = Path(__file__).resolve().parents[2]


def validate(raw: dict) -> dict:
    return FAMILY.validate_hparams(raw, "CartPole-v1")


@pytest.mark.parametrize(
    ("raw", "key"),
    [({"model": "sac"}, "model"), ({"model": "ppo", "gae_lambda": 1.5}, "gae_lambda"),
     ({"model": "ppo", "n_envs": 2, "n_steps": 16, "batch_size": 64}, "batch_size"),
     ({"model": "reinforce_baseline", "vf_coef": -1}, "vf_coef"), ({"model": "dqn", "lr": -1}, "lr"), ({"model": "dqn", "hiden": 3}, "hiden"),
     ({"model": "dqn", "eps_start": 0.1, "eps_end": 0.5}, "eps_end"),
     ({"model": "dqn", "batch_size": 512, "buffer_size": 100}, "batch_size"),
     ({"model": "reinforce", "episodes_per_update": 0}, "episodes_per_update"),
     ({"model": "dueling_dqn", "dueling_aggregator": "sum"}, "dueling_aggregator")],
)
def test_bad_hparams_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^rl hparams.*{key}"):
        validate(raw)


def test_each_model_keeps_only_its_own_keys() -> None:
    shared = {"lr": 0.01, "batch_size": 32, "episodes_per_update": 4, "dueling_aggregator": "max", "n_envs": 2}
    pg = validate({"model": "reinforce", **shared})
    assert pg["episodes_per_update"] == 4 and pg["lr"] == 0.01
    assert not {"batch_size", "n_envs", "dueling_aggregator", "eps_start"} & set(pg)
    dqn = validate({"model": "dqn", **shared})
    assert dqn["batch_size"] == 32 and dqn["n_envs"] == 2 and not {"episodes_per_update", "dueling_aggregator"} & set(dqn)
    assert validate({"model": "dueling_dqn", **shared})["dueling_aggregator"] == "max"
    # a DQN-only constraint does not apply to REINFORCE, which has no replay buffer
    validate({"model": "reinforce", "batch_size": 512, "buffer_size": 100})


def test_the_training_algorithm_is_a_property_of_the_model_class() -> None:
    kinds = {name: (spec.hparams.is_dqn, getattr(spec.hparams, "double_q", False)) for name, spec in FAMILY.models.items()}
    assert kinds == {"reinforce": (False, False), "reinforce_baseline": (False, False), "ppo": (False, False),
                     "a2c": (False, False), "dqn": (True, False), "double_dqn": (True, True),
                     "dueling_dqn": (True, True)}
    assert models.is_dqn(validate({"model": "dqn"})) and not models.is_dqn(validate({"model": "reinforce"}))
    actor_critics = {name for name in FAMILY.models if models.is_actor_critic(validate({"model": name}))}
    assert actor_critics == {"ppo", "a2c"}
    assert models.MODELS["ppo"].hparams.clipped and not models.MODELS["a2c"].hparams.clipped


def test_a2c_accepts_the_shared_ppo_keys_it_does_not_use() -> None:
    # a task's hparams are shared by its models: PPO's minibatch size must not break A2C
    hp = validate({"model": "a2c", "n_envs": 2, "n_steps": 4, "batch_size": 256, "update_epochs": 4})
    assert hp["n_steps"] == 4


@pytest.mark.parametrize("name", list(models.MODELS))
def test_every_agent_network_maps_observations_to_one_value_per_action(name: str) -> None:
    torch.manual_seed(0)
    net = models.build(validate({"model": name, "hidden": 8}), INFO)
    values = net.action_values(torch.randn(5, 4))
    assert values.shape == (5, 2)
    if name in ("reinforce", "reinforce_baseline", "ppo", "a2c"):  # softmax policies serve probabilities
        torch.testing.assert_close(values.sum(-1), torch.ones(5))


def test_build_picks_each_models_network() -> None:
    nets = {name: type(models.build(validate({"model": name, "hidden": 8}), INFO)) for name in models.MODELS}
    assert nets == {"reinforce": models.PolicyNetwork, "reinforce_baseline": models.ActorCritic,
                    "ppo": models.ActorCritic, "a2c": models.ActorCritic, "dqn": models.QNetwork,
                    "double_dqn": models.QNetwork, "dueling_dqn": models.DuelingQNetwork}
    assert models.build(validate({"model": "dueling_dqn", "dueling_aggregator": "max"}), INFO).aggregator == "max"


def test_image_observations_get_the_atari_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """An obs_shape of rank 3 (stacked frames) goes to atari.build_network; vectors do not."""
    import sys
    import types

    calls = []
    fake = types.ModuleType("families.rl.atari")
    fake.build_network = lambda hp, info: calls.append((hp["model"], tuple(info["obs_shape"]))) or "conv-net"
    monkeypatch.setitem(sys.modules, "families.rl.atari", fake)
    import families.rl

    monkeypatch.setattr(families.rl, "atari", fake, raising=False)
    hp = validate({"model": "dueling_dqn", "hidden": 8})
    assert models.build(hp, {**INFO, "obs_shape": [4, 84, 84]}) == "conv-net"
    assert calls == [("dueling_dqn", (4, 84, 84))]
    assert isinstance(models.build(hp, {**INFO, "obs_shape": [4]}), models.DuelingQNetwork)


@pytest.mark.parametrize("aggregator", ["mean", "max"])
def test_dueling_head_centres_advantages(aggregator: str) -> None:
    torch.manual_seed(0)
    net = models.DuelingQNetwork(4, 3, 8, 1, "relu", aggregator)
    obs = torch.randn(6, 4)
    q = net(obs)
    h = net.body(obs)
    v = net.value(h).squeeze(1)
    reduce = q.mean(-1) if aggregator == "mean" else q.max(-1).values
    torch.testing.assert_close(reduce, v)  # V(s) is the mean (or max) of Q(s, .)


@pytest.mark.parametrize("profile", [None, "tiny", "full"])
def test_params_and_profiles_use_only_keys_the_models_take(profile: str | None) -> None:
    params = config.load(REPO, profile)
    for task, tp in params.families["rl"].items():
        def check(raw: dict, task: str = task) -> dict:
            return FAMILY.validate_hparams(raw, task)

        check_space(tp, tp.tune.hparams, check, f"families.rl.{task}")
        for model in tp.tune.models:
            check({**tp.train.hparams, "model": model})


def test_default_search_spaces_validate() -> None:
    spaces = {name: {k: config.SpaceSpec(**v) for k, v in spec.space.items()} for name, spec in models.MODELS.items()}
    for sample in representative_samples(list(models.MODELS), spaces):
        model = sample["model"]
        validate({"model": model, **{k.split(".", 1)[1]: v for k, v in sample.items() if k != "model"}})
