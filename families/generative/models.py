"""The generative zoo (book ch. 17, ml3 variants): autoencoders, the VAE, the DCGAN and a DDPM.

Conventions (ml3): ReLU hidden layers, a linear output, MSE on pixels in [0, 1]. Every
autoencoder's `forward(x)` returns `(reconstruction, penalty)`: the penalty is the model's own
regulariser (sparsity, the VAE's KL term; 0 for the others), so the loss is always
`mse(recon, x) + penalty` and every gradient flows through `forward` (what DDP needs).
Images are (batch, 1, 28, 28) everywhere.

The DCGAN is a container of a generator and a discriminator; its own loop lives in train.py.
With `conditional: true` it is the book's cGAN: a label embedding joins G's codings and D's image.
The DDPM (`ddpm`, diffusion.py) is a U-Net noise predictor; `conditional: true` adds a class
embedding trained with classifier-free guidance. `sample(model, n, generator, steps, labels)` is
the one sampling path of validation, evaluate and serving; `is_conditional(model)` says whether a
model honours labels.

Which model does which task is declared once, in its ModelSpec's `tasks`: the generator task
(`fashion-mnist`, judged on FID) takes the models that can sample new images (vae, dcgan, ddpm);
the autoencoder task takes every model that reconstructs (all but dcgan and ddpm).

New model: write the nn.Module, its hparams class and its ModelSpec in MODELS (constructor,
default search space, tasks).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from torch import nn

from components.family import ModelSpec, zoo
from families.generative import diffusion
from families.generative.data import AUTOENCODER_TASK, GENERATOR_TASK

SIDE = 28
PIXELS = SIDE * SIDE
LABEL_DIM = 10  # the cGAN generator's label embedding


# ----------------------------------------------------------------------------- hyperparameters
class HParams(BaseModel):
    """What every generative model takes: the optimiser's rate and schedule, the batch, the init."""

    model_config = ConfigDict(extra="forbid")

    lr: float = Field(1e-3, gt=0, lt=1)
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant: a fixed rate, as the book's Keras fits; cosine: half-cosine decay over "
                                "the run's epochs (both DCGAN optimisers too)")
    batch_size: int = Field(32, gt=0, le=4096)
    init: Literal["glorot", "torch"] = Field(
        "glorot", description="glorot: Keras' Glorot-uniform weights + zero biases (the book's); torch: PyTorch defaults")


def fid_samples_field() -> Any:
    """The generators' knob: how many images each epoch's validation FID is measured on."""
    return Field(1000, ge=16, le=20000, description="generated images per validation FID")


class AutoencoderHParams(HParams):
    """The autoencoders train in the supervised loop (components.train.run_supervised)."""

    codings: int = Field(30, gt=0, le=1024, description="coding size (the book's: 30)")
    clip_norm: float | None = Field(None, gt=0)


class DenseHParams(AutoencoderHParams):
    hidden: int = Field(100, gt=0, le=2048, description="first hidden layer")


class StackedHParams(DenseHParams):
    """stacked: 784-100-30 / 30-100-784."""


class TiedHParams(DenseHParams):
    """tied: the stacked shape, the decoder reusing the encoder's weights."""


class ConvHParams(AutoencoderHParams):
    """conv: convolutional encoder and decoder (no dense hidden layer)."""


class DenoisingHParams(DenseHParams):
    """denoising: the stacked AE fed corrupted images while training."""

    noise: Literal["gaussian", "dropout"] = Field("dropout", description="corruption kind")
    noise_std: float = Field(0.2, gt=0, le=2, description="gaussian: noise std")
    dropout: float = Field(0.5, gt=0, lt=1, description="dropout: drop rate")


class SparseL1HParams(DenseHParams):
    codings: int = Field(300, gt=0, le=1024, description="coding size (the book's: 300)")
    l1: float = Field(1e-4, ge=0, le=1, description="activity L1 weight")


class SparseKLHParams(DenseHParams):
    codings: int = Field(300, gt=0, le=1024, description="coding size (the book's: 300)")
    kl_weight: float = Field(5e-3, ge=0, le=10, description="KL weight")
    kl_target: float = Field(0.1, gt=0, lt=1, description="target mean activation")


class VAEHParams(DenseHParams):
    hidden: int = Field(150, gt=0, le=2048, description="first hidden layer (the book's: 150)")
    codings: int = Field(10, gt=0, le=1024, description="latent size (the book's: 10)")
    fid_samples: int = fid_samples_field()


class DCGANHParams(HParams):
    """dcgan: its own two-optimiser loop (train.py), so no clip_norm."""

    codings: int = Field(100, gt=0, le=1024, description="latent size (the book's: 100)")
    beta1: float = Field(0.5, ge=0, lt=1, description="Adam beta1 of both optimisers")
    d_dropout: float = Field(0.4, ge=0, lt=1, description="discriminator dropout")
    conditional: bool = Field(False, description="cGAN (the book's answers): a label embedding joins G's codings "
                                                 "and D's image; unlabelled sampling draws labels uniformly")
    fid_samples: int = fid_samples_field()


class DDPMHParams(HParams):
    """ddpm: a small U-Net eps-predictor (diffusion.py), trained in the supervised loop."""

    lr: float = Field(1e-3, gt=0, lt=1)
    batch_size: int = Field(64, gt=0, le=4096)
    init: Literal["glorot", "torch"] = Field("torch", description="torch: PyTorch's defaults (the U-Net's usual init)")
    timesteps: int = Field(1000, ge=2, le=4000, description="T, the diffusion chain's length (DDPM: 1000)")
    schedule: Literal["linear", "cosine"] = Field("linear", description="linear betas (DDPM, scaled by 1000/T) or cosine")
    channels: int = Field(32, ge=4, le=256, description="U-Net width at 28x28 (2x at 14x14 and 7x7)")
    sample_steps: int = Field(25, ge=1, le=4000, description="DDIM steps for validation FID and default serving (<= T)")
    eta: float = Field(0.0, ge=0, le=1, description="DDIM noise: 0 deterministic, 1 = DDPM's ancestral sampler")
    conditional: bool = Field(True, description="a class embedding trained with classifier-free guidance")
    p_uncond: float = Field(0.1, ge=0, le=1, description="training: probability a label is dropped to 'no label'")
    guidance: float = Field(2.0, ge=0, le=20, description="CFG weight w: eps_u + w (eps_c - eps_u); 1 = plain conditional")
    clip_norm: float | None = Field(1.0, gt=0, description="gradient clipping (None: off)")
    fid_samples: int = Field(500, ge=16, le=20000, description="generated images per validation FID")

    @field_validator("sample_steps")
    @classmethod
    def _steps_within_chain(cls, v: int, info: ValidationInfo) -> int:
        T = info.data.get("timesteps")
        if T is not None and v > T:
            raise ValueError(f"sample_steps {v} exceeds timesteps (T = {T})")
        return v

    @field_validator("channels")
    @classmethod
    def _channels_even(cls, v: int) -> int:
        if v % 4:
            raise ValueError(f"channels must be a multiple of 4 (GroupNorm), got {v}")
        return v

    @field_validator("p_uncond")
    @classmethod
    def _uncond_trained(cls, v: float, info: ValidationInfo) -> float:
        if info.data.get("conditional") and v <= 0:
            raise ValueError("a conditional ddpm needs p_uncond > 0 (its 'no label' embedding serves unlabelled "
                             "sampling and guidance)")
        if info.data.get("conditional") and v >= 1:
            raise ValueError("p_uncond 1 never trains the labels: use conditional: false")
        return v


# ----------------------------------------------------------------------------- autoencoders
class Autoencoder(nn.Module):
    """Base: `encode`, `decode`, optional input corruption (training only) and coding penalty."""

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def penalty(self, codings: torch.Tensor) -> torch.Tensor:
        return codings.new_zeros(())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        codings = self.encode(self.corrupt(x))
        return self.decode(codings), self.penalty(codings)


class Stacked(Autoencoder):
    """784-100-30 / 30-100-784 (ml3 [30]); with `noise` it is the denoising AE (ml3 [66])."""

    def __init__(self, hidden: int = 100, codings: int = 30, noise: str | None = None, noise_std: float = 0.2,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.noise, self.noise_std = noise, noise_std
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, codings), nn.ReLU())
        self.decoder = nn.Sequential(nn.Linear(codings, hidden), nn.ReLU(), nn.Linear(hidden, PIXELS),
                                     nn.Unflatten(1, (1, SIDE, SIDE)))

    def corrupt(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.noise is None:
            return x
        if self.noise == "gaussian":
            return x + self.noise_std * torch.randn_like(x)
        return self.drop(x)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class Tied(Autoencoder):
    """Tied weights (ml3 [44], DenseTranspose): the decoder reuses the encoder's W^T, own biases."""

    def __init__(self, hidden: int = 100, codings: int = 30) -> None:
        super().__init__()
        self.enc1, self.enc2 = nn.Linear(PIXELS, hidden), nn.Linear(hidden, codings)
        self.dec_bias1 = nn.Parameter(torch.zeros(hidden))
        self.dec_bias2 = nn.Parameter(torch.zeros(PIXELS))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.enc2(torch.relu(self.enc1(x.flatten(1)))))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        h = torch.relu(z @ self.enc2.weight + self.dec_bias1)
        return (h @ self.enc1.weight + self.dec_bias2).view(-1, 1, SIDE, SIDE)


class Conv(Autoencoder):
    """ml3 [57]: Conv 16/32/64 + max-pools -> 3x3x64 -> Conv 30 -> global average pool (30);
    decoder Dense(3*3*16) -> ConvT 32 (valid, 7x7) -> ConvT 16 (14x14) -> ConvT 1 (28x28)."""

    def __init__(self, codings: int = 30) -> None:
        super().__init__()

        def block(i: int, o: int) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]

        self.encoder = nn.Sequential(*block(1, 16), *block(16, 32), *block(32, 64),
                                     nn.Conv2d(64, codings, 3, padding=1), nn.ReLU(),
                                     nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.decoder = nn.Sequential(
            nn.Linear(codings, 3 * 3 * 16), nn.Unflatten(1, (16, 3, 3)),
            nn.ConvTranspose2d(16, 32, 3, stride=2), nn.ReLU(),  # 3 -> 7 ("valid")
            nn.ConvTranspose2d(32, 16, 3, stride=2, padding=1, output_padding=1), nn.ReLU(),  # 7 -> 14
            nn.ConvTranspose2d(16, 1, 3, stride=2, padding=1, output_padding=1),  # 14 -> 28
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)


class Sparse(Autoencoder):
    """ml3 [71]/[76]: 784-100 ReLU -> 300 sigmoid codings with an activity penalty.

    The penalties follow Keras exactly (the book's numbers depend on it): an activity
    regulariser's value is divided by the batch size, so L1 is `l1 * sum|h| / B` and the KL
    penalty is `weight * (KL(t||rho) + KL(1-t||1-rho)) / B` with rho the batch-mean activation.
    """

    def __init__(self, kind: str, hidden: int = 100, codings: int = 300, l1: float = 1e-4, kl_weight: float = 5e-3,
                 kl_target: float = 0.1) -> None:
        super().__init__()
        self.kind, self.l1, self.kl_weight, self.kl_target = kind, l1, kl_weight, kl_target
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, codings), nn.Sigmoid())
        self.decoder = nn.Sequential(nn.Linear(codings, hidden), nn.ReLU(), nn.Linear(hidden, PIXELS),
                                     nn.Unflatten(1, (1, SIDE, SIDE)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def penalty(self, codings: torch.Tensor) -> torch.Tensor:
        batch = codings.shape[0]
        if self.kind == "sparse_l1":
            return self.l1 * codings.abs().sum() / batch
        return self.kl_weight * kl_sparsity(codings, self.kl_target) / batch


def kl_sparsity(codings: torch.Tensor, target: float, eps: float = 1e-7) -> torch.Tensor:
    """Sum over units of KL(t || rho) + KL(1 - t || 1 - rho), rho = mean activation (Keras clips)."""
    rho = codings.mean(dim=0).clamp(eps, 1.0)
    rho_c = (1 - codings.mean(dim=0)).clamp(eps, 1.0)
    t = torch.as_tensor(target, dtype=codings.dtype)
    return (t * torch.log(t / rho) + (1 - t) * torch.log((1 - t) / rho_c)).sum()


class VAE(Autoencoder):
    """ml3 [81]: enc 150-100 ReLU -> mu, gamma = log sigma^2 (latent 10); dec 100-150 -> 784 linear.

    Penalty = mean over the batch of -1/2 sum(1 + gamma - exp(gamma) - mu^2), divided by 784 (the
    book's scaling, since the MSE is a per-pixel mean). Training samples z; eval mode uses z = mu
    unless `sample=True` (the book's val_loss samples)."""

    def __init__(self, hidden: int = 150, codings: int = 10) -> None:
        super().__init__()
        inner = max(1, (hidden * 2) // 3)  # 150 -> 100, the book's second layer
        self.codings = codings
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, hidden), nn.ReLU(), nn.Linear(hidden, inner), nn.ReLU())
        self.mu, self.gamma = nn.Linear(inner, codings), nn.Linear(inner, codings)
        self.decoder = nn.Sequential(nn.Linear(codings, inner), nn.ReLU(), nn.Linear(inner, hidden), nn.ReLU(),
                                     nn.Linear(hidden, PIXELS), nn.Unflatten(1, (1, SIDE, SIDE)))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.mu(self.encoder(x))

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor, sample: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        mu, gamma = self.mu(h), self.gamma(h)
        z = mu + torch.exp(gamma / 2) * torch.randn_like(mu) if (self.training if sample is None else sample) else mu
        latent = -0.5 * (1 + gamma - gamma.exp() - mu.square()).sum(dim=1)
        return self.decoder(z), latent.mean() / PIXELS


# ----------------------------------------------------------------------------- DCGAN
class Generator(nn.Module):
    """ml3 [104]: z (100) -> Dense 7*7*128 -> BN -> ConvT 64 (5, s2) ReLU -> BN -> ConvT 1 (5, s2) tanh.
    Conditional (cGAN): z is concatenated with a learnt 10-d embedding of the label."""

    def __init__(self, codings: int = 100, conditional: bool = False) -> None:
        super().__init__()
        self.label = nn.Embedding(diffusion.NUM_CLASSES, LABEL_DIM) if conditional else None
        self.net = nn.Sequential(
            nn.Linear(codings + (LABEL_DIM if conditional else 0), 7 * 7 * 128), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128),
            nn.ConvTranspose2d(128, 64, 5, stride=2, padding=2, output_padding=1), nn.ReLU(), nn.BatchNorm2d(64),
            nn.ConvTranspose2d(64, 1, 5, stride=2, padding=2, output_padding=1), nn.Tanh(),
        )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            z = torch.cat([z, self.label(_need_labels(labels))], 1)
        return self.net(z)


def _need_labels(labels: torch.Tensor | None) -> torch.Tensor:
    if labels is None:
        raise ValueError("a conditional net needs labels")
    return labels


class Discriminator(nn.Module):
    """ml3 [104]: Conv 64 (5, s2) LeakyReLU .2 -> Dropout -> Conv 128 (5, s2) LeakyReLU -> Dropout -> 1 logit.
    Conditional (cGAN): a learnt 28x28 map of the label is a second input channel."""

    def __init__(self, dropout: float = 0.4, conditional: bool = False) -> None:
        super().__init__()
        self.label = nn.Embedding(diffusion.NUM_CLASSES, PIXELS) if conditional else None
        self.net = nn.Sequential(
            nn.Conv2d(2 if conditional else 1, 64, 5, stride=2, padding=2), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Conv2d(64, 128, 5, stride=2, padding=2), nn.LeakyReLU(0.2), nn.Dropout(dropout),
            nn.Flatten(), nn.Linear(7 * 7 * 128, 1),
        )

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            x = torch.cat([x, self.label(_need_labels(labels)).view(-1, 1, SIDE, SIDE)], 1)
        return self.net(x).squeeze(1)  # a logit (BCEWithLogits instead of the book's sigmoid + BCE)


class DCGAN(nn.Module):
    """Both nets in one module, so one state_dict (weights.pt) holds the whole GAN."""

    def __init__(self, codings: int = 100, d_dropout: float = 0.4, conditional: bool = False) -> None:
        super().__init__()
        self.codings, self.conditional = codings, conditional
        self.generator = Generator(codings, conditional)
        self.discriminator = Discriminator(d_dropout, conditional)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, labels)


# ----------------------------------------------------------------------------- DDPM
class DDPM(nn.Module):
    """The U-Net noise predictor plus what sampling needs from the hparams (T, schedule, DDIM steps,
    eta, guidance). The schedule is rebuilt from hparams, never stored in the weights."""

    def __init__(self, channels: int = 32, timesteps: int = 1000, schedule: str = "linear", conditional: bool = True,
                 sample_steps: int = 25, eta: float = 0.0, guidance: float = 2.0) -> None:
        super().__init__()
        self.net = diffusion.UNet(channels, diffusion.NUM_CLASSES if conditional else 0)
        self.timesteps, self.schedule_kind, self.conditional = timesteps, schedule, conditional
        self.sample_steps, self.eta, self.guidance = sample_steps, eta, guidance

    @property
    def schedule(self) -> diffusion.Schedule:
        return diffusion.schedule(self.timesteps, self.schedule_kind)

    def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x, t, labels)


# ----------------------------------------------------------------------------- the zoo
def glorot_init(model: nn.Module) -> nn.Module:
    """Keras' defaults (what the book's numbers were trained from): Glorot-uniform kernels, zero
    biases. Measured here: stacked AE, 5 epochs on 20k images, val MSE 0.0162 vs 0.0176 with
    PyTorch's default (Kaiming-uniform a=sqrt(5)) init. BatchNorm layers keep their (1, 0)."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def initialised(make: Callable[[dict[str, Any]], nn.Module], hp: dict[str, Any],
                info: dict[str, Any] | None = None) -> nn.Module:
    """A ModelSpec's build: the module `make(hp)` makes, with the init hp asks for (Glorot or PyTorch's)."""
    model = make(hp)
    return glorot_init(model) if hp.get("init", "torch") == "glorot" else model


def _stacked(hp: dict[str, Any]) -> nn.Module:
    return Stacked(hp["hidden"], hp["codings"])


def _tied(hp: dict[str, Any]) -> nn.Module:
    return Tied(hp["hidden"], hp["codings"])


def _conv(hp: dict[str, Any]) -> nn.Module:
    return Conv(hp["codings"])


def _denoising(hp: dict[str, Any]) -> nn.Module:
    return Stacked(hp["hidden"], hp["codings"], noise=hp["noise"], noise_std=hp["noise_std"], dropout=hp["dropout"])


def _sparse_l1(hp: dict[str, Any]) -> nn.Module:
    return Sparse("sparse_l1", hp["hidden"], hp["codings"], l1=hp["l1"])


def _sparse_kl(hp: dict[str, Any]) -> nn.Module:
    return Sparse("sparse_kl", hp["hidden"], hp["codings"], kl_weight=hp["kl_weight"], kl_target=hp["kl_target"])


def _vae(hp: dict[str, Any]) -> nn.Module:
    return VAE(hp["hidden"], hp["codings"])


def _dcgan(hp: dict[str, Any]) -> nn.Module:
    return DCGAN(hp["codings"], hp["d_dropout"], bool(hp.get("conditional", False)))


def _ddpm(hp: dict[str, Any]) -> nn.Module:
    return DDPM(hp["channels"], hp["timesteps"], hp["schedule"], hp["conditional"], hp["sample_steps"], hp["eta"],
                hp["guidance"])


def _lr(low: float, high: float) -> dict[str, dict[str, Any]]:
    return {"lr": {"loguniform": [low, high]}}


def _spec(name: str, hparams: type[HParams], make: Callable[[dict[str, Any]], nn.Module],
          space: dict[str, dict[str, Any]], tasks: tuple[str, ...], doc: str) -> ModelSpec:
    return ModelSpec(name, hparams, functools.partial(initialised, make), space=space, tasks=tasks, doc=doc)


AE_ONLY, BOTH = (AUTOENCODER_TASK,), (GENERATOR_TASK, AUTOENCODER_TASK)
MODELS = zoo(
    _spec("stacked", StackedHParams, _stacked, _lr(5e-4, 5e-3), AE_ONLY, "784-100-30 dense autoencoder (ml3 [30])"),
    _spec("tied", TiedHParams, _tied, _lr(5e-4, 5e-3), AE_ONLY, "tied weights (ml3 [44])"),
    _spec("conv", ConvHParams, _conv, _lr(3e-4, 3e-3), AE_ONLY, "convolutional autoencoder (ml3 [57])"),
    _spec("denoising", DenoisingHParams, _denoising, {**_lr(5e-4, 5e-3), "noise": {"choice": ["gaussian", "dropout"]}},
          AE_ONLY, "denoising autoencoder (ml3 [66])"),
    _spec("sparse_l1", SparseL1HParams, _sparse_l1, {**_lr(3e-4, 3e-3), "l1": {"loguniform": [1e-5, 1e-3]}},
          AE_ONLY, "sparse autoencoder, L1 activity penalty (ml3 [71])"),
    _spec("sparse_kl", SparseKLHParams, _sparse_kl, {**_lr(5e-4, 5e-3), "kl_weight": {"loguniform": [1e-3, 2e-2]}},
          AE_ONLY, "sparse autoencoder, KL sparsity penalty (ml3 [76])"),
    _spec("vae", VAEHParams, _vae, _lr(5e-4, 3e-3), BOTH, "variational autoencoder (ml3 [81]): reconstructs and samples"),
    _spec("dcgan", DCGANHParams, _dcgan, _lr(2e-4, 1e-3), (GENERATOR_TASK,),
          "DCGAN (ml3 [104]): samples new images, cannot reconstruct"),
    _spec("ddpm", DDPMHParams, _ddpm, {**_lr(3e-4, 2e-3), "guidance": {"uniform": [1.0, 3.0]}}, (GENERATOR_TASK,),
          "DDPM (3rd ed. ch. 17): U-Net noise predictor, DDIM sampling, classifier-free guidance"),
)


def build(hparams: dict[str, Any], info: dict[str, Any] | None = None) -> nn.Module:
    """hparams (validated, with "model") -> that model's initialised module."""
    return MODELS[hparams["model"]].build(hparams, info)


def declared_for(model: str, task: str) -> bool:
    """Whether `model` is declared for `task` (ModelSpec.tasks)."""
    return task in MODELS[model].tasks


def can_sample(model: str) -> bool:
    return declared_for(model, GENERATOR_TASK)


def can_reconstruct(model: str) -> bool:
    return declared_for(model, AUTOENCODER_TASK)


# ----------------------------------------------------------------------------- sampling
def latent_size(model: nn.Module) -> int:
    return int(model.codings)


def is_diffusion(model: nn.Module) -> bool:
    return isinstance(model, DDPM)


def is_conditional(model: nn.Module) -> bool:
    """Whether `sample(..., labels=...)` honours labels (a cGAN, a conditional DDPM)."""
    return bool(getattr(model, "conditional", False))


def max_steps(model: nn.Module) -> int | None:
    """The most sampling steps the model takes (its T), None for a one-pass generator."""
    return int(model.timesteps) if is_diffusion(model) else None


def _device(model: nn.Module, device: torch.device | None) -> torch.device:
    return device if device is not None else next(model.parameters()).device


@torch.no_grad()
def decode_codings(model: nn.Module, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Latent codes -> images in [0, 1] (the VAE's linear output is clipped; the GAN's tanh rescaled)."""
    if isinstance(model, DCGAN):
        return (model.generator(z, labels) + 1) / 2
    return model.decode(z).clamp(0.0, 1.0)


def _labels_for(model: nn.Module, n: int, generator: torch.Generator,
                labels: torch.Tensor | None) -> torch.Tensor | None:
    """The labels a sample uses: as given (checked), uniform from the seed for an unlabelled cGAN,
    None (the "no label" embedding) for an unlabelled DDPM or an unconditional model."""
    if labels is not None:
        if not is_conditional(model):
            raise ValueError(f"this {type(model).__name__} is not conditional: it cannot honour labels")
        labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        if len(labels) != n:
            raise ValueError(f"{len(labels)} labels for {n} images")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= diffusion.NUM_CLASSES):
            raise ValueError(f"labels must lie in 0..{diffusion.NUM_CLASSES - 1}")
        return labels
    if isinstance(model, DCGAN) and model.conditional:
        return torch.randint(0, diffusion.NUM_CLASSES, (n,), generator=generator)
    return None


@torch.no_grad()
def sample(model: nn.Module, n: int, generator: torch.Generator, device: torch.device | None = None,
           steps: int | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """n new images in [0, 1], every random draw from `generator` (same seed, same images).

    VAE/DCGAN: z ~ N(0, I) decoded (`steps` ignored). DDPM: DDIM with `steps` (default the model's
    sample_steps, <= T) and its eta, guided by `labels` when given. `labels` (n ints in 0..9) only
    for a conditional model; an unlabelled cGAN draws them uniformly from `generator`."""
    if is_diffusion(model):
        dev = _device(model, device)
        steps = int(model.sample_steps if steps is None else steps)
        lab = _labels_for(model, n, generator, labels)
        x = diffusion.ddim_sample(diffusion.net_eps_fn(model.net), model.schedule, (n, 1, SIDE, SIDE), generator,
                                  steps, eta=float(model.eta), labels=None if lab is None else lab.to(dev),
                                  guidance=float(model.guidance), device=dev)
        return ((x + 1) / 2).clamp(0.0, 1.0)
    z = torch.randn(n, latent_size(model), generator=generator)
    lab = _labels_for(model, n, generator, labels)
    if device is not None:
        z, lab = z.to(device), None if lab is None else lab.to(device)
    return decode_codings(model, z, lab)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of Gaussian noise (keeps its norm, so every point is a typical x_T)."""
    a_f, b_f = a.flatten(1), b.flatten(1)
    cos = (a_f * b_f).sum(1) / (a_f.norm(dim=1) * b_f.norm(dim=1)).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1, 1))[:, None, None]
    s = torch.sin(theta).clamp_min(1e-6)
    out = (torch.sin((1 - t) * theta) / s) * a_f[:, None] + (torch.sin(t * theta) / s) * b_f[:, None]
    return out


@torch.no_grad()
def interpolate(model: nn.Module, pairs: int, steps: int, generator: torch.Generator) -> torch.Tensor:
    """`pairs` rows of `steps` images between two random codes: linear in latent space (VAE, GAN; a
    cGAN keeps one label per row); for the DDPM, slerp between two x_T decoded by deterministic DDIM."""
    if is_diffusion(model):
        dev = next(model.parameters()).device
        shape = (pairs, SIDE * SIDE)
        a, b = torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)
        x_T = slerp(a, b, torch.linspace(0, 1, steps)[None, :, None]).reshape(pairs * steps, 1, SIDE, SIDE)
        sched, ts = model.schedule, diffusion.ddim_timesteps(model.timesteps, int(model.sample_steps))
        x = diffusion.ddim_from(diffusion.net_eps_fn(model.net), sched, x_T.to(dev), ts)
        return ((x + 1) / 2).clamp(0.0, 1.0)
    k = latent_size(model)
    a, b = torch.randn(pairs, k, generator=generator), torch.randn(pairs, k, generator=generator)
    t = torch.linspace(0, 1, steps)[None, :, None]
    z = (a[:, None] * (1 - t) + b[:, None] * t).reshape(pairs * steps, k)
    labels = None
    if is_conditional(model):
        labels = torch.randint(0, diffusion.NUM_CLASSES, (pairs,), generator=generator).repeat_interleave(steps)
    return decode_codings(model, z, labels)


@torch.no_grad()
def reconstruct(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Deterministic reconstruction (eval mode: no corruption, VAE z = mu), unclipped."""
    return model(x)[0]
