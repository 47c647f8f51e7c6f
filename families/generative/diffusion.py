"""DDPM / DDIM diffusion (the book's 3rd edition, ch. 17; Ho et al. 2020, Song et al. 2021) on 1x28x28.

Pieces, each a small pure function of tensors so the tests can check them against closed forms:

- `make_schedule(T, kind)`: the noise schedule (DDPM's linear betas, rescaled so any T ends near
  pure noise; or the cosine schedule of Nichol & Dhariwal). `q_sample` is the closed form
  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps.
- `UNet`: a small noise predictor eps(x_t, t, label): sinusoidal time embedding, an optional class
  embedding whose last index means "no label" (classifier-free guidance), resolutions 28/14/7.
- `loss`: the eps-prediction MSE, with the label dropped to "no label" with probability p_uncond.
- `ddpm_sample` (ancestral, all T steps) and `ddim_sample` (`steps` <= T, `eta`): both ask one
  function `eps_fn(x, t, labels)`, so the tests can run them on an oracle noise predictor.
  `guided_eps` is classifier-free guidance: eps = eps_u + w (eps_c - eps_u).

Images live in [-1, 1] inside the process (x = 2 * pixel - 1). Every random draw of a sampler comes
from the torch.Generator passed in, drawn for the whole batch before the network is applied in
chunks, so the same seed gives the same images whatever the chunk size.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

NUM_CLASSES = 10
EpsFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]


# ----------------------------------------------------------------------------- the schedule
@dataclass(frozen=True)
class Schedule:
    """betas, alphas = 1 - betas, abar = prod(alphas) (index t = 0..T-1, float64 for exactness)."""

    betas: torch.Tensor
    alphas: torch.Tensor
    abar: torch.Tensor

    @property
    def T(self) -> int:
        return len(self.betas)


def make_schedule(T: int = 1000, kind: str = "linear") -> Schedule:
    """linear: DDPM's 1e-4..0.02 over 1000 steps, both ends scaled by 1000/T (improved-DDPM's rule) so a
    short chain still ends near N(0, I); cosine: abar(t) = cos^2((t/T + s)/(1 + s) pi/2), betas <= 0.999."""
    if T < 1:
        raise ValueError(f"T must be >= 1, got {T}")
    if kind == "linear":
        scale = 1000.0 / T
        betas = torch.linspace(1e-4 * scale, min(0.02 * scale, 0.999), T, dtype=torch.float64)
    elif kind == "cosine":
        s = 0.008
        f = torch.cos((torch.arange(T + 1, dtype=torch.float64) / T + s) / (1 + s) * math.pi / 2) ** 2
        betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    else:
        raise ValueError(f"unknown schedule {kind!r} (linear, cosine)")
    alphas = 1 - betas
    return Schedule(betas, alphas, torch.cumprod(alphas, 0))


@functools.lru_cache(maxsize=8)
def schedule(T: int, kind: str) -> Schedule:
    """make_schedule, cached: the training loss asks for it every batch."""
    return make_schedule(T, kind)


def _at(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] shaped (batch, 1, 1, ...) to broadcast over `like`, in its dtype and device."""
    out = values.to(like.device)[t.to(like.device)].to(like.dtype)
    return out.view(-1, *([1] * (like.dim() - 1)))


def q_sample(sched: Schedule, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The closed-form forward process: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""
    abar = _at(sched.abar, t, x0)
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps


def q_step(sched: Schedule, x_prev: torch.Tensor, t: int, eps: torch.Tensor) -> torch.Tensor:
    """One forward step q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t I) (for the tests' iteration)."""
    return math.sqrt(float(sched.alphas[t])) * x_prev + math.sqrt(float(sched.betas[t])) * eps


# ----------------------------------------------------------------------------- the U-Net
def time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of integer steps: (batch,) -> (batch, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    angles = t.float()[:, None] * freqs[None]
    emb = torch.cat([angles.sin(), angles.cos()], dim=1)
    return nn.functional.pad(emb, (0, dim - 2 * half))


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-Conv, + the (time, class) embedding as a per-channel shift, GroupNorm-SiLU-Conv, residual."""

    def __init__(self, cin: int, cout: int, emb: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(_groups(cin), cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb, cout)
        self.norm2, self.conv2 = nn.GroupNorm(_groups(cout), cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(nn.functional.silu(self.norm1(x)))
        h = h + self.emb(e)[:, :, None, None]
        h = self.conv2(nn.functional.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """eps(x_t, t, label) for 1x28x28: channels c at 28x28, 2c at 14x14 and 7x7, skips by concatenation.

    `num_classes` > 0 adds a class embedding with num_classes + 1 rows, the last one "no label"
    (what `labels=None` and the dropped labels of classifier-free training use)."""

    def __init__(self, channels: int = 32, num_classes: int = 0) -> None:
        super().__init__()
        c, e = channels, 4 * channels
        self.channels, self.num_classes = c, num_classes
        self.time = nn.Sequential(nn.Linear(c, e), nn.SiLU(), nn.Linear(e, e))
        self.label = nn.Embedding(num_classes + 1, e) if num_classes else None
        self.inc = nn.Conv2d(1, c, 3, padding=1)
        self.down1, self.pool1 = ResBlock(c, c, e), nn.Conv2d(c, c, 3, stride=2, padding=1)  # 28 -> 14
        self.down2, self.pool2 = ResBlock(c, 2 * c, e), nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1)  # 14 -> 7
        self.mid = ResBlock(2 * c, 2 * c, e)
        self.up2 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, 2 * c, 3, padding=1))
        self.dec2 = ResBlock(4 * c, 2 * c, e)
        self.up1 = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(2 * c, 2 * c, 3, padding=1))
        self.dec1 = ResBlock(3 * c, c, e)
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, 1, 3, padding=1))

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        e = self.time(time_embedding(t, self.channels))
        if self.label is not None:
            if labels is None:
                labels = torch.full((len(x),), self.null_label, dtype=torch.long, device=x.device)
            e = e + self.label(labels)
        h0 = self.inc(x)
        h1 = self.down1(h0, e)
        h2 = self.down2(self.pool1(h1), e)
        h = self.mid(self.pool2(h2), e)
        h = self.dec2(torch.cat([self.up2(h), h2], 1), e)
        h = self.dec1(torch.cat([self.up1(h), h1], 1), e)
        return self.out(h)


# ----------------------------------------------------------------------------- training
def drop_labels(labels: torch.Tensor, p_uncond: float, null_label: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Classifier-free training: each label becomes "no label" with probability p_uncond."""
    if p_uncond <= 0:
        return labels
    keep = torch.rand(labels.shape, generator=generator, device=labels.device) >= p_uncond
    return torch.where(keep, labels, torch.full_like(labels, null_label))


def loss(net: nn.Module, sched: Schedule, x0: torch.Tensor, labels: torch.Tensor | None,
         p_uncond: float = 0.0, null_label: int = NUM_CLASSES, generator: torch.Generator | None = None) -> torch.Tensor:
    """The DDPM "simple" loss: t ~ U{0..T-1}, eps ~ N(0, I), MSE(eps_theta(x_t, t, label), eps).
    x0 in [-1, 1]; `labels` None trains an unconditional net. `net` may be DDP-wrapped (forward only)."""
    t = torch.randint(0, sched.T, (len(x0),), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    x_t = q_sample(sched, x0, t, eps)
    if labels is not None:
        labels = drop_labels(labels, p_uncond, null_label, generator)
    return nn.functional.mse_loss(net(x_t, t, labels), eps)


# ----------------------------------------------------------------------------- sampling
def guided_eps(eps_fn: EpsFn, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None,
               guidance: float) -> torch.Tensor:
    """Classifier-free guidance: eps_u + w (eps_c - eps_u). No labels: eps_u alone (one pass);
    w = 1: eps_c alone (one pass); otherwise both, in one batch."""
    if labels is None:
        return eps_fn(x, t, None)
    if guidance == 1.0:
        return eps_fn(x, t, labels)
    null = torch.full_like(labels, -1)  # -1: "no label", mapped by net_eps_fn to the net's null index
    both = eps_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([null, labels]))
    eps_u, eps_c = both.chunk(2)
    return eps_u + guidance * (eps_c - eps_u)


def net_eps_fn(net: UNet, chunk: int = 256) -> EpsFn:
    """The U-Net as an eps_fn: label -1 means "no label"; applied in chunks of `chunk` images (the
    result does not depend on the chunk size: every random draw was made before)."""

    def eps(x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        if labels is not None:
            labels = torch.where(labels < 0, torch.full_like(labels, net.null_label), labels)
        outs = []
        for i in range(0, len(x), chunk):
            lab = None if labels is None else labels[i:i + chunk]
            outs.append(net(x[i:i + chunk], t[i:i + chunk], lab))
        return torch.cat(outs) if outs else x.new_zeros(x.shape)

    return eps


def ddim_timesteps(T: int, steps: int) -> list[int]:
    """`steps` distinct increasing timesteps in 0..T-1, from 0 to T-1, spaced quadratically (the DDIM
    paper's choice for small images: dense where little noise is left). Why not uniform: with an
    oracle noise predictor on Gaussian data (tests/unit/test_diffusion.py), 10 uniform steps of the
    linear schedule land at 0.62x the data's std, 10 quadratic ones at 0.82x, 50 at 0.97x."""
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in 1..{T} (the model's T), got {steps}")
    if steps == 1:
        return [T - 1]
    ts: list[int] = []
    for i in range(steps):
        q = round((i / (steps - 1)) ** 2 * (T - 1))
        ts.append(max(q, ts[-1] + 1) if ts else q)
    return [min(t, T - steps + i) for i, t in enumerate(ts)]  # room for the rest: distinct, <= T-1


def _noise(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=like.device, dtype=like.dtype)


@torch.no_grad()
def ddim_sample(eps_fn: EpsFn, sched: Schedule, shape: tuple[int, ...], generator: torch.Generator,
                steps: int, eta: float = 0.0, labels: torch.Tensor | None = None, guidance: float = 1.0,
                device: torch.device | None = None, clip: float | None = 1.0) -> torch.Tensor:
    """DDIM (Song et al. eq. 12) over `steps` timesteps from x_T ~ N(0, I) drawn with `generator`
    (see `ddim_from`). eta = 1 with all T steps is DDPM's ancestral sampler with the posterior
    variance; eta = 0 is deterministic given x_T. `clip` bounds the predicted x0 (images live in
    [-1, 1]); None for unbounded data."""
    x = _noise(shape, generator, torch.empty(0, device=device))
    return ddim_from(eps_fn, sched, x, ddim_timesteps(sched.T, steps), generator, eta, labels, guidance, clip)


@torch.no_grad()
def ddim_from(eps_fn: EpsFn, sched: Schedule, x: torch.Tensor, ts: list[int], generator: torch.Generator | None = None,
              eta: float = 0.0, labels: torch.Tensor | None = None, guidance: float = 1.0,
              clip: float | None = 1.0) -> torch.Tensor:
    """The DDIM chain from a given x_T over increasing timesteps `ts`: predict x0 from eps, step to
    the previous timestep with sigma = eta sqrt((1 - abar') / (1 - abar)) sqrt(1 - abar / abar')."""
    if eta > 0 and generator is None:
        raise ValueError("eta > 0 draws noise: pass a generator")
    abar, shape = sched.abar, tuple(x.shape)
    for i in range(len(ts) - 1, -1, -1):
        t = ts[i]
        a_t = float(abar[t])
        a_prev = float(abar[ts[i - 1]]) if i > 0 else 1.0
        tt = torch.full((shape[0],), t, dtype=torch.long, device=x.device)
        eps = guided_eps(eps_fn, x, tt, labels, guidance)
        x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)  # consistent with the clipped x0
        sigma = eta * math.sqrt(max((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev), 0.0))
        x = math.sqrt(a_prev) * x0 + math.sqrt(max(1 - a_prev - sigma**2, 0.0)) * eps
        if sigma > 0:
            x = x + sigma * _noise(shape, generator, x)
    return x


@torch.no_grad()
def ddpm_sample(eps_fn: EpsFn, sched: Schedule, shape: tuple[int, ...], generator: torch.Generator,
                labels: torch.Tensor | None = None, guidance: float = 1.0,
                device: torch.device | None = None) -> torch.Tensor:
    """DDPM's ancestral sampler (Ho et al. algorithm 2) over all T steps: x_{t-1} = 1/sqrt(alpha_t)
    (x_t - beta_t / sqrt(1 - abar_t) eps) + sigma_t z, sigma_t^2 = the posterior variance
    beta_t (1 - abar_{t-1}) / (1 - abar_t) (0 at t = 0)."""
    x = _noise(shape, generator, torch.empty(0, device=device))
    for t in range(sched.T - 1, -1, -1):
        beta, alpha, a_t = float(sched.betas[t]), float(sched.alphas[t]), float(sched.abar[t])
        a_prev = float(sched.abar[t - 1]) if t > 0 else 1.0
        tt = torch.full((shape[0],), t, dtype=torch.long, device=x.device)
        eps = guided_eps(eps_fn, x, tt, labels, guidance)
        mean = (x - beta / math.sqrt(1 - a_t) * eps) / math.sqrt(alpha)
        var = beta * (1 - a_prev) / (1 - a_t)
        x = mean + math.sqrt(var) * _noise(shape, generator, x) if t > 0 else mean
    return x
