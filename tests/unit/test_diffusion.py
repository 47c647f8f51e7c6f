"""The diffusion pieces (families/generative/diffusion.py) against closed forms and an oracle.

The oracle: for data x0 ~ N(mu, s^2) the noised x_t is N(sqrt(abar) mu, abar s^2 + 1 - abar), so the
best noise prediction is known in closed form, eps*(x_t, t) = sqrt(1 - abar) (x_t - sqrt(abar) mu) /
(abar s^2 + 1 - abar). A sampler given eps* must land on the data's distribution; the tolerances
below are stated beside each check (20,000 scalar samples: a standard error of 0.3/141 ~ 0.002 on
the mean).
"""

from __future__ import annotations

import math

import pytest
import torch

from components.config import ConfigError
from families.generative import FAMILY, diffusion as d, models

MU, S, N = 0.5, 0.3, 20_000


def oracle(sched: d.Schedule, mu: float = MU, s: float = S):
    """eps*(x, t) for x0 ~ N(mu, s^2); with labels, class k's data is N(k, s^2) ("no label": N(4.5, s^2))."""

    def eps(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        a = sched.abar[t].to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
        m = torch.tensor(mu) if labels is None else torch.where(labels < 0, torch.tensor(4.5), labels.float())
        m = m.view(-1, *([1] * (x.dim() - 1))) if m.dim() else m
        return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * s * s + 1 - a)

    return eps


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- the forward process
@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_iterated_forward_steps_match_the_closed_form(kind: str) -> None:
    """Iterating q(x_t | x_{t-1}) from x0 gives the closed form's N(sqrt(abar_t) x0, 1 - abar_t):
    mean within 5 standard errors, variance within 5% (20,000 chains)."""
    sched = d.make_schedule(100, kind)
    x0 = torch.full((N,), 0.8, dtype=torch.float64)
    x, g = x0.clone(), gen(1)
    for t in range(100):
        x = d.q_step(sched, x, t, torch.randn(N, generator=g, dtype=torch.float64))
        if t in (0, 9, 49, 99):
            mean, var = math.sqrt(float(sched.abar[t])) * 0.8, 1 - float(sched.abar[t])
            assert float(x.mean()) == pytest.approx(mean, abs=5 * math.sqrt(var / N)), t
            assert float(x.var()) == pytest.approx(var, rel=0.05), t
            closed = d.q_sample(sched, x0, torch.full((N,), t), torch.randn(N, generator=g, dtype=torch.float64))
            assert float(closed.mean()) == pytest.approx(mean, abs=5 * math.sqrt(var / N))
            assert float(closed.var()) == pytest.approx(var, rel=0.05)
    # and the closed form itself: no noise -> exactly sqrt(abar) x0; abar decreasing to ~0 at T
    t = torch.tensor([0, 50, 99])
    assert torch.allclose(d.q_sample(sched, x0[:3], t, torch.zeros(3, dtype=torch.float64)),
                          sched.abar[t].sqrt() * 0.8)
    assert bool((sched.abar[1:] < sched.abar[:-1]).all()) and float(sched.abar[-1]) < 1e-3


def test_linear_schedule_is_ddpm_s_at_1000_and_rescaled_below() -> None:
    s = d.make_schedule(1000)
    assert float(s.betas[0]) == pytest.approx(1e-4) and float(s.betas[-1]) == pytest.approx(0.02)
    short = d.make_schedule(100)
    assert float(short.betas[0]) == pytest.approx(1e-3) and float(short.abar[-1]) < 1e-3  # still ends near noise
    with pytest.raises(ValueError, match="unknown schedule"):
        d.make_schedule(10, "quadratic")


# ----------------------------------------------------------------------------- samplers on the oracle
def test_ddim_with_all_steps_and_eta_1_is_ddpm() -> None:
    """Same seed: DDIM(eta=1, all T steps) draws the same noise and takes the same steps as DDPM's
    ancestral sampler (equal to 1e-4); both land on N(MU, S^2) (mean +-0.01, std within 3%; T=1000:
    at T=200 the discrete chain itself ends at 0.94x the std, measured)."""
    sched = d.make_schedule(1000)
    ddpm = d.ddpm_sample(oracle(sched), sched, (N, 1), gen())
    ddim = d.ddim_sample(oracle(sched), sched, (N, 1), gen(), steps=1000, eta=1.0, clip=None)
    assert torch.allclose(ddpm, ddim, atol=1e-4)
    for x in (ddpm, ddim):
        assert float(x.mean()) == pytest.approx(MU, abs=0.01)
        assert float(x.std()) == pytest.approx(S, rel=0.03)
    other = d.ddim_sample(oracle(sched), sched, (N, 1), gen(1), steps=1000, eta=1.0, clip=None)
    assert not torch.allclose(other, ddim)  # a different seed is a different draw ...
    assert float(other.mean()) == pytest.approx(float(ddim.mean()), abs=0.01)  # ... of the same distribution


@pytest.mark.parametrize("kind, steps, std_rel", [("linear", 50, 0.05), ("cosine", 25, 0.07), ("cosine", 10, 0.16)])
def test_ddim_with_few_steps_lands_on_the_data(kind: str, steps: int, std_rel: float) -> None:
    """Deterministic DDIM (eta 0) with few steps of T=1000: the mean within 0.01; the std within
    `std_rel` (few large steps shrink it: measured 0.97x at 50 linear, 0.95x at 25 cosine, 0.86x at 10)."""
    sched = d.make_schedule(1000, kind)
    x = d.ddim_sample(oracle(sched), sched, (N, 1), gen(), steps=steps, eta=0.0, clip=None)
    assert float(x.mean()) == pytest.approx(MU, abs=0.01)
    assert float(x.std()) == pytest.approx(S, rel=std_rel)
    again = d.ddim_sample(oracle(sched), sched, (N, 1), gen(), steps=steps, eta=0.0, clip=None)
    assert torch.equal(x, again)


def test_ddim_timesteps_are_distinct_and_span_the_chain() -> None:
    for T, steps in [(1000, 10), (1000, 1000), (50, 49), (5, 2)]:
        ts = d.ddim_timesteps(T, steps)
        assert len(ts) == steps and ts == sorted(set(ts)) and (ts[0], ts[-1]) == (0, T - 1)
    assert d.ddim_timesteps(10, 1) == [9]
    for bad in (0, 11):
        with pytest.raises(ValueError, match=r"steps must be in 1\.\.10"):
            d.ddim_timesteps(10, bad)


# ----------------------------------------------------------------------------- guidance, labels
def test_classifier_free_guidance_formula() -> None:
    """eps = eps_u + w (eps_c - eps_u): w=0 -> unconditional, w=1 -> conditional, w=3 -> extrapolated."""
    calls = []

    def toy(x, t, labels):
        calls.append(None if labels is None else labels.tolist())
        return torch.zeros_like(x) if labels is None else torch.where(labels < 0, 10.0, labels + 1.0).view(-1, 1) + 0 * x

    x, t, y = torch.zeros(3, 1), torch.zeros(3, dtype=torch.long), torch.tensor([0, 1, 2])
    uncond = torch.full((3, 1), 10.0)  # the toy's "no label" value
    cond = torch.tensor([[1.0], [2.0], [3.0]])
    assert torch.equal(d.guided_eps(toy, x, t, y, 0.0), uncond)
    assert torch.equal(d.guided_eps(toy, x, t, y, 1.0), cond)
    assert torch.allclose(d.guided_eps(toy, x, t, y, 3.0), uncond + 3 * (cond - uncond))
    calls.clear()
    assert torch.equal(d.guided_eps(toy, x, t, None, 3.0), torch.zeros(3, 1))  # no label: eps_u, one pass
    assert calls == [None]


def test_the_conditional_sampler_honours_labels() -> None:
    """Toy data: class k is N(k, S^2). Sampling with label k (w=1) lands on mean k (+-0.02), the
    same seed gives the same images, another label other images."""
    sched = d.make_schedule(200, "cosine")
    labels = torch.arange(10).repeat_interleave(2000)
    x = d.ddim_sample(oracle(sched), sched, (len(labels), 1), gen(), steps=50, labels=labels, clip=None)
    means = torch.stack([x[labels == k].mean() for k in range(10)])
    assert torch.allclose(means, torch.arange(10.0), atol=0.02)
    again = d.ddim_sample(oracle(sched), sched, (len(labels), 1), gen(), steps=50, labels=labels, clip=None)
    assert torch.equal(x, again)
    shifted = d.ddim_sample(oracle(sched), sched, (len(labels), 1), gen(), steps=50, labels=(labels + 1) % 10, clip=None)
    assert not torch.allclose(shifted, x, atol=0.5)
    # guidance w=2 pushes each class away from the "no label" mean 4.5: class 0 below 0, class 9 above 9
    w2 = d.ddim_sample(oracle(sched), sched, (len(labels), 1), gen(), steps=50, labels=labels, guidance=2.0, clip=None)
    assert float(w2[labels == 0].mean()) < -0.5 and float(w2[labels == 9].mean()) > 9.5


def test_label_dropping_rate() -> None:
    y = torch.zeros(20_000, dtype=torch.long)
    dropped = d.drop_labels(y, 0.1, 10, gen())
    assert float((dropped == 10).float().mean()) == pytest.approx(0.1, abs=0.01)
    assert torch.equal(d.drop_labels(y, 0.0, 10, gen()), y)


# ----------------------------------------------------------------------------- the U-Net and the zoo entry
def test_unet_output_shape_and_label_embedding() -> None:
    torch.manual_seed(0)
    net = d.UNet(channels=8, num_classes=10)
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0, 999])
    assert net(x, t).shape == (2, 1, 28, 28)
    assert net.label.num_embeddings == 11 and net.null_label == 10  # the extra "no label" row
    a, b = net(x, t, torch.tensor([1, 1])), net(x, t, torch.tensor([2, 2]))
    assert not torch.allclose(a, b)
    assert torch.equal(net(x, t), net(x, t, torch.tensor([10, 10])))  # None = the null label
    assert d.UNet(channels=8).label is None and d.UNet(channels=8)(x, t).shape == (2, 1, 28, 28)


def test_the_loss_is_eps_mse_and_trains() -> None:
    torch.manual_seed(0)
    net = d.UNet(channels=8, num_classes=10)
    sched = d.make_schedule(50)
    x0 = torch.rand(16, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (16,))
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    first = float(d.loss(net, sched, x0, y, 0.1, generator=gen()).detach())
    assert first == pytest.approx(1.0, rel=0.5)  # an untrained net predicts ~0 noise: MSE ~ Var(eps) = 1
    for _ in range(30):
        opt.zero_grad()
        d.loss(net, sched, x0, y, 0.1).backward()
        opt.step()
    assert float(d.loss(net, sched, x0, y, 0.1, generator=gen()).detach()) < 0.6 * first


def ddpm(**hp) -> models.DDPM:
    torch.manual_seed(0)
    return models.build(FAMILY.validate_hparams({"model": "ddpm", "channels": 8, "timesteps": 20, "sample_steps": 4,
                                                 **hp})).eval()


def test_ddpm_sampling_is_seeded_bounded_and_chunk_independent() -> None:
    model = ddpm()
    a = models.sample(model, 3, gen(7))
    assert a.shape == (3, 1, 28, 28) and 0 <= float(a.min()) and float(a.max()) <= 1
    assert torch.equal(a, models.sample(model, 3, gen(7))) and not torch.equal(a, models.sample(model, 3, gen(8)))
    sched = model.schedule
    small = d.ddim_sample(d.net_eps_fn(model.net, chunk=1), sched, (3, 1, 28, 28), gen(7), 4)
    assert torch.allclose(((small + 1) / 2).clamp(0, 1), a, atol=1e-5)  # chunks of 1 = one batch
    assert not torch.equal(models.sample(model, 3, gen(7), steps=2), a)  # steps are honoured
    labelled = models.sample(model, 3, gen(7), labels=torch.tensor([7, 7, 7]))
    assert not torch.equal(labelled, a) and torch.equal(labelled, models.sample(model, 3, gen(7), labels=torch.tensor([7] * 3)))
    assert models.is_conditional(model) and models.max_steps(model) == 20
    plain = ddpm(conditional=False)
    assert not models.is_conditional(plain) and plain.net.label is None
    with pytest.raises(ValueError, match="not conditional"):
        models.sample(plain, 2, gen(), labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"steps must be in 1\.\.20"):
        models.sample(model, 2, gen(), steps=21)


@pytest.mark.parametrize("raw, key", [
    ({"timesteps": 50, "sample_steps": 51}, "sample_steps"),
    ({"channels": 10}, "channels"),
    ({"conditional": True, "p_uncond": 0.0}, "p_uncond"),
    ({"eta": 1.5}, "eta"),
    ({"timesteps": 1}, "timesteps"),
])
def test_ddpm_hparams_are_validated(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"generative hparams \(ddpm\): {key}"):
        FAMILY.validate_hparams({"model": "ddpm", **raw})


def test_ddpm_is_a_generator_only() -> None:
    assert FAMILY.validate_hparams({"model": "ddpm"}, "fashion-mnist")["timesteps"] == 1000
    with pytest.raises(ConfigError, match="'ddpm' cannot be trained for task 'fashion-mnist-autoencoder'"):
        FAMILY.validate_hparams({"model": "ddpm"}, "fashion-mnist-autoencoder")
    assert models.can_sample("ddpm") and not models.can_reconstruct("ddpm")
