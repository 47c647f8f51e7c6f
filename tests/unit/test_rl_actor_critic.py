"""PPO / A2C and REINFORCE with a baseline: GAE against hand computations (and its two limits),
truncation bootstraps while termination does not, the clipped surrogate on a hand example, the
baseline's advantage, a short PPO run on CartPole that beats random, and a resume that is
bit-identical."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from families.rl import FAMILY, actor_critic, agents, models
from families.rl.actor_critic import gae, policy_loss, rollouts_per_epoch, value_loss
from families.rl.episodes import run_episodes

INFO = {"env_id": "CartPole-v1", "obs_dim": 4, "n_actions": 2}
CPU = torch.device("cpu")


def column(x: list[float]) -> np.ndarray:
    """A (T, 1) rollout of one environment."""
    return np.asarray(x, np.float64)[:, None]


# ----------------------------------------------------------------------------- GAE
def test_gae_matches_a_hand_computed_example() -> None:
    # T=3, no episode end; gamma 0.9, lambda 0.5
    r, v, nv = column([1.0, 0.0, 2.0]), column([0.5, 1.0, 1.5]), column([1.0, 1.5, 3.0])
    zeros = column([0, 0, 0])
    adv, ret = gae(r, v, zeros, zeros, nv, gamma=0.9, lam=0.5)
    d = [1 + 0.9 * 1.0 - 0.5, 0 + 0.9 * 1.5 - 1.0, 2 + 0.9 * 3.0 - 1.5]  # 1.4, 0.35, 3.2
    a2 = d[2]
    a1 = d[1] + 0.45 * a2
    a0 = d[0] + 0.45 * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2])
    np.testing.assert_allclose(ret, adv + v)
    np.testing.assert_allclose(adv[:, 0], [2.2055, 1.79, 3.2])


def test_gae_lambda_one_is_discounted_return_minus_value_and_lambda_zero_the_td_error() -> None:
    rng = np.random.default_rng(0)
    T, n, gamma = 6, 3, 0.95
    r, v = rng.normal(size=(T, n)), rng.normal(size=(T, n))
    last = rng.normal(size=n)
    nv = np.vstack([v[1:], last])  # no episode ends: V(s_{t+1}) is the next row
    zeros = np.zeros((T, n))
    mc = np.zeros((T, n))
    running = last
    for t in range(T - 1, -1, -1):
        running = r[t] + gamma * running
        mc[t] = running
    adv1, _ = gae(r, v, zeros, zeros, nv, gamma, 1.0)
    np.testing.assert_allclose(adv1, mc - v)
    adv0, _ = gae(r, v, zeros, zeros, nv, gamma, 0.0)
    np.testing.assert_allclose(adv0, r + gamma * nv - v)


def test_truncation_bootstraps_from_the_final_value_termination_does_not() -> None:
    # step 1 ends the episode; step 2 belongs to the next one. next_values[1] = V(final obs) = 10.
    r, v, nv = column([1.0, 1.0, 1.0]), column([0.0, 0.0, 0.0]), column([0.0, 10.0, 5.0])
    ended = column([0, 1, 0])
    none = column([0, 0, 0])
    adv_trunc, _ = gae(r, v, none, ended, nv, gamma=0.5, lam=1.0)
    adv_term, _ = gae(r, v, ended, ended, nv, gamma=0.5, lam=1.0)
    assert adv_trunc[1, 0] == pytest.approx(1 + 0.5 * 10)  # bootstraps
    assert adv_term[1, 0] == pytest.approx(1.0)  # cut
    # in both, the trace stops at the boundary: step 0 does not see step 2's reward
    assert adv_trunc[0, 0] == pytest.approx(1 + 0.5 * 6.0)
    assert adv_term[0, 0] == pytest.approx(1 + 0.5 * 1.0)
    assert adv_trunc[2, 0] == adv_term[2, 0] == pytest.approx(1 + 0.5 * 5.0)


# ----------------------------------------------------------------------------- the losses
def test_clipped_surrogate_on_a_hand_example() -> None:
    old = torch.zeros(4)
    ratio = torch.tensor([1.5, 0.5, 1.1, 0.7])
    adv = torch.tensor([1.0, 1.0, -2.0, -1.0])
    new = torch.log(ratio)
    # per sample max(-A r, -A clip(r, 0.8, 1.2)): [-1.2, -0.5, 2.2, 0.8] -> mean 0.325
    assert float(policy_loss(new, old, adv, 0.2)) == pytest.approx(0.325, rel=1e-6)
    # unclipped (A2C): -mean(A r) = mean([-1.5, -0.5, 2.2, 0.7]) = 0.225
    assert float(policy_loss(new, old, adv, None)) == pytest.approx(0.225, rel=1e-6)
    # the clipped sample whose ratio went too far gets no gradient
    new.requires_grad_(True)
    policy_loss(new, old, adv, 0.2).backward()
    assert new.grad[0] == 0 and new.grad[1] != 0


def test_clipped_value_loss_takes_the_worse_error() -> None:
    new, old, ret = torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([3.0])
    assert float(value_loss(new, old, ret, None)) == pytest.approx(0.5)
    assert float(value_loss(new, old, ret, 0.5)) == pytest.approx(0.5 * 2.5 ** 2)


def test_reinforce_baseline_advantage_is_return_minus_value() -> None:
    g, v = np.array([3.0, 1.0, -2.0]), np.array([1.0, 1.5, 0.0])
    np.testing.assert_allclose(agents.baseline_advantages(g, v, normalize=False), [2.0, -0.5, -2.0])
    a = agents.baseline_advantages(g, v, normalize=True)
    np.testing.assert_allclose(a, (g - v - (g - v).mean()) / (g - v).std(), rtol=1e-6)


def test_an_epoch_is_whole_rollouts_rounded_up() -> None:
    hp = {"n_envs": 4, "n_steps": 128}
    assert [rollouts_per_epoch(hp, s) for s in (1, 512, 513, 2048)] == [1, 1, 2, 4]


# ----------------------------------------------------------------------------- the agents
def ppo_hp(**kw: object) -> dict:
    return FAMILY.validate_hparams({"model": "ppo", "hidden": 32, "n_envs": 4, "n_steps": 128, "batch_size": 128,
                                    "steps_per_epoch": 1024, "lr": 3e-3, "update_epochs": 4, **kw}, "CartPole-v1")


def make(hp: dict, seed: int = 0, total_steps: int = 4096, start_epoch: int = 0) -> agents.Agent:
    torch.manual_seed(seed)
    return agents.make_agent(hp, INFO, models.build(hp, INFO), CPU, seed, total_steps, start_epoch)


def test_make_agent_dispatches_the_new_models() -> None:
    for name, kind, clipped in [("ppo", actor_critic.ActorCriticAgent, True), ("a2c", actor_critic.ActorCriticAgent, False),
                                ("reinforce_baseline", agents.ReinforceBaseline, None)]:
        hp = FAMILY.validate_hparams({"model": name, "hidden": 8}, "CartPole-v1")
        agent = make(hp)
        try:
            assert type(agent) is kind and getattr(agent, "clipped", None) == clipped
            assert isinstance(agent.net, models.ActorCritic)
        finally:
            agent.close()


def test_actor_critic_forward_gives_logits_or_logits_and_value_in_one_call() -> None:
    hp = ppo_hp()
    net = models.build(hp, INFO)
    obs = torch.randn(5, 4)
    logits = net(obs)
    both = net(obs, with_value=True)
    assert logits.shape == (5, 2) and torch.equal(both[0], logits) and both[1].shape == (5,)
    torch.testing.assert_close(net.action_values(obs).sum(-1), torch.ones(5))


def test_a_short_ppo_run_on_cartpole_beats_random() -> None:
    hp = ppo_hp()
    agent = make(hp, total_steps=4 * 1024)
    progress = agents.Progress(475.0, 100)
    try:
        stats = [agent.run_epoch(1024, progress, None) for _ in range(4)]
    finally:
        agent.close()
    assert progress.env_steps == 4 * 1024
    assert all(np.isfinite(s["loss"]) for s in stats) and stats[0]["updates"] == 2 * 4 * 4
    seeds = list(range(10_000, 10_010))
    trained, _ = run_episodes(agent.net, "CartPole-v1", seeds, greedy=True)
    random_net = models.build(hp, INFO)  # orthogonal init with a 0.01-gain head: a near-uniform policy
    untrained, _ = run_episodes(random_net, "CartPole-v1", seeds, greedy=False, rng=np.random.default_rng(0))
    assert np.mean(trained) > 2 * np.mean(untrained) and np.mean(trained) > 100


@pytest.mark.parametrize("name", ["ppo", "a2c"])
def test_state_round_trips_bit_identically(name: str) -> None:
    """The next epoch after load_state is fully determined by the state (plus the salted seeds
    of the fresh environments every resume starts): two resumes from one state agree bit for bit,
    and differ from an agent that did not load it."""
    hp = ppo_hp() if name == "ppo" else FAMILY.validate_hparams(
        {"model": "a2c", "hidden": 16, "n_envs": 4, "n_steps": 8, "steps_per_epoch": 256}, "CartPole-v1")
    spe = hp["steps_per_epoch"]
    first = make(hp, total_steps=3 * spe)
    first.run_epoch(spe, agents.Progress(475.0, 100), None)
    saved = copy.deepcopy(first.state())
    first.close()

    def resumed(load: bool) -> tuple[dict, dict]:
        agent = make(hp, seed=0, total_steps=3 * spe, start_epoch=1)
        if load:
            agent.load_state(copy.deepcopy(saved))
        try:
            stats = agent.run_epoch(spe, agents.Progress(475.0, 100), None)
            return stats, {k: v.clone() for k, v in agent.net.state_dict().items()}
        finally:
            agent.close()

    (s1, w1), (s2, w2), (_, w3) = resumed(True), resumed(True), resumed(False)
    assert s1 == s2 and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)
    assert saved["rollouts_done"] == rollouts_per_epoch(hp, spe)


def test_reinforce_baseline_fits_its_value_to_the_scaled_returns() -> None:
    hp = FAMILY.validate_hparams({"model": "reinforce_baseline", "hidden": 16, "lr": 0.01}, "CartPole-v1")
    agent = make(hp)
    _, trajs = run_episodes(agent.net, "CartPole-v1", [1, 2, 3, 4], greedy=False, rng=np.random.default_rng(0),
                            record=True)
    agent.close()
    obs = torch.from_numpy(np.concatenate([np.stack(t["obs"]) for t in trajs]))
    actions = torch.tensor([a for t in trajs for a in t["actions"]])
    rewards = [t["rewards"] for t in trajs]
    target = torch.from_numpy(np.concatenate([agents.discount_rewards(r, hp["gamma"]) for r in rewards])).float()

    def value_error() -> float:
        with torch.no_grad():
            return float((agent.net(obs, with_value=True)[1] - hp["value_scale"] * target).pow(2).mean())

    before = value_error()
    for _ in range(30):
        agent.optimizer.zero_grad()
        loss = agent.loss(obs, actions, rewards)
        loss.backward()
        agent.optimizer.step()
    assert np.isfinite(float(loss.detach())) and value_error() < 0.5 * before
