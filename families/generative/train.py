"""How the generative models learn: datasets, the loss, validation (MSE, FID) and the loops.

- The autoencoders and the VAE train through `components.train.run_supervised`: "minimise a
  loss over batches", their regularisers living in the model's `forward`.
- The DCGAN has its own loop (`train_gan`): two nets, two optimisers, one step of each per batch.
  It reports, checkpoints and resumes through the same session API. A conditional DCGAN (cGAN)
  feeds each real image's label to D and the same labels to G for the fakes.
- The DDPM trains through `run_supervised` too, with its own loss (`ddpm_loss`: eps-prediction MSE
  at a random step, labels dropped for classifier-free guidance) and validation (`validate_ddpm`:
  the same loss on a fixed draw of val images, steps and noise, and val_fid through
  `models.sample` with the model's `sample_steps`).

`loop(config, session)` is the family's loop: it picks one of the two by the model.
Validation on the generator task (`fashion-mnist`) adds `val_fid`: the FID of `fid_samples`
generated images against the val split, on the features of the classifier `prepare` trained.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.data import seeded_loader
from components.session import Best, LoopConfig, Session
from components.train import SupervisedSpec, epoch_lr, run_supervised, set_epoch
from families.generative import diffusion, fid, models
from families.generative.classifier import as_tensor, load_classifier
from families.generative.data import GENERATOR_TASK, load_split

VAL_FID_SEED = 0  # the validation FID samples the same codes every epoch, so epochs compare


# ----------------------------------------------------------------------------- datasets + loss
def image_dataset(prepared_dir: Path, split: str, limit: int | None = None) -> torch.utils.data.TensorDataset:
    """(images float (n, 1, 28, 28) in [0, 1], labels int64) of one prepared split, the first `limit`."""
    x, y = load_split(prepared_dir, split)
    if limit:
        x, y = x[:limit], y[:limit]
    return torch.utils.data.TensorDataset(as_tensor(x), torch.from_numpy(y.astype(np.int64)))


def datasets(prepared_dir: Path, hp: dict[str, Any], info: dict[str, Any], max_train: int | None):
    return image_dataset(prepared_dir, "train", max_train), image_dataset(prepared_dir, "val")


def loss(model: torch.nn.Module, batch: Any, hp: dict[str, Any]) -> torch.Tensor:
    """Reconstruction MSE (pixels in [0, 1]) + the model's own penalty (sparsity, KL)."""
    x = batch[0]
    recon, penalty = model(x)
    return torch.nn.functional.mse_loss(recon, x) + penalty


def ddpm_loss(model: torch.nn.Module, batch: Any, hp: dict[str, Any]) -> torch.Tensor:
    """The DDPM's training loss on one batch (pixels mapped to [-1, 1]; global RNG, seeded by the session).
    `model` may be DDP-wrapped: only its forward is called."""
    x, y = batch[0], batch[1]
    sched = diffusion.schedule(int(hp["timesteps"]), str(hp["schedule"]))
    labels = y.long() if hp["conditional"] else None
    return diffusion.loss(model, sched, x * 2 - 1, labels, float(hp["p_uncond"]))


# ----------------------------------------------------------------------------- validation
def validate(
    model: torch.nn.Module, loader: Any, hp: dict[str, Any], info: dict[str, Any], fid_ref: fid.FidReference | None = None,
) -> dict[str, float]:
    """val_mse (clean reconstruction); the VAE also val_loss (sampled z, the book's val_loss) and,
    with `fid_ref` (the generator task), val_fid on `fid_samples` generated images."""
    total_mse, total_loss, count = 0.0, 0.0, 0
    is_vae = isinstance(model, models.VAE)
    device = next(model.parameters()).device
    # Validation draws its own noise without disturbing the training RNG (CUDA's too, on a GPU).
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(VAL_FID_SEED)
        for x, _ in loader:
            recon, _ = model(x)
            total_mse += float(torch.nn.functional.mse_loss(recon, x, reduction="sum")) / x[0].numel()
            if is_vae:
                recon_s, kl = model(x, sample=True)
                total_loss += (float(torch.nn.functional.mse_loss(recon_s, x)) + float(kl)) * len(x)
            count += len(x)
    out = {"val_mse": total_mse / max(count, 1)}
    if is_vae:
        out["val_loss"] = total_loss / max(count, 1)
    if fid_ref is not None:
        out["val_fid"] = generated_fid(model, fid_ref, int(hp["fid_samples"]))
    return out


DDPM_VAL_LOSS_IMAGES = 1000  # the val loss's images: enough for a steady curve, a fraction of an epoch's cost


@torch.no_grad()
def validate_ddpm(
    model: torch.nn.Module, loader: Any, hp: dict[str, Any], info: dict[str, Any], fid_ref: fid.FidReference | None = None,
) -> dict[str, float]:
    """val_loss: the training loss on the first DDPM_VAL_LOSS_IMAGES val images with steps, noise
    and label drops drawn from a fixed generator (so epochs compare); val_fid with `fid_ref`."""
    gen = torch.Generator().manual_seed(VAL_FID_SEED)
    sched = model.schedule
    total, count = 0.0, 0
    for x, y in loader:
        if count >= DDPM_VAL_LOSS_IMAGES:
            break
        x, y = x[: DDPM_VAL_LOSS_IMAGES - count], y[: DDPM_VAL_LOSS_IMAGES - count]
        device = x.device
        t = torch.randint(0, sched.T, (len(x),), generator=gen).to(device)
        eps = torch.randn(x.shape, generator=gen).to(device)
        labels = None
        if model.conditional:
            labels = diffusion.drop_labels(y.long().cpu(), float(hp["p_uncond"]), model.net.null_label, gen).to(device)
        pred = model(diffusion.q_sample(sched, x * 2 - 1, t, eps), t, labels)
        total += float(torch.nn.functional.mse_loss(pred, eps, reduction="sum")) / x[0].numel()
        count += len(x)
    out = {"val_loss": total / max(count, 1)}
    if fid_ref is not None:
        out["val_fid"] = generated_fid(model, fid_ref, int(hp["fid_samples"]))
    return out


def generated_fid(model: torch.nn.Module, fid_ref: fid.FidReference, n: int) -> float:
    """The FID of n images sampled from the same codes every time (VAL_FID_SEED)."""
    device = next(model.parameters()).device
    images = models.sample(model, n, torch.Generator().manual_seed(VAL_FID_SEED), device)
    return fid_ref.fid(images.cpu())


def fid_reference(prepared_dir: Path, device: torch.device, split: str = "val") -> fid.FidReference:
    """The classifier (on `device`) and the feature statistics of a real split.

    Loading the classifier builds a fresh one first, which draws its (overwritten) initial
    weights from the global RNG: where in the loop this happens is part of the seeded stream."""
    return fid.FidReference(load_classifier(prepared_dir), image_dataset(prepared_dir, split).tensors[0]).to(device)


# ----------------------------------------------------------------------------- the loops
def loop(config: LoopConfig, session: Session) -> list[dict[str, Any]]:
    """The family's loop: the DCGAN's own, the supervised loop for every autoencoder and the DDPM."""
    if config.model == "dcgan":
        return train_gan(config, session)
    return run_supervised(config, session, supervised_spec(config, session))


def supervised_spec(config: LoopConfig, session: Session) -> SupervisedSpec:
    """The supervised loop of the autoencoders and the DDPM; on the generator task validation adds val_fid."""
    is_ddpm = config.model == "ddpm"
    validate_fn = validate_ddpm if is_ddpm else validate
    if config.task == GENERATOR_TASK:
        # The model is built next, from the seeded RNG: the classifier's init draws must not move it.
        with torch.random.fork_rng(devices=[]):
            ref = fid_reference(config.prepared, session.device)
        validate_fn = functools.partial(validate_fn, fid_ref=ref)
    return SupervisedSpec(build=models.build, datasets=datasets, loss=ddpm_loss if is_ddpm else loss,
                          validate=validate_fn)


def train_gan(config: LoopConfig, session: Session) -> list[dict[str, Any]]:
    """DCGAN (pytorch/examples dcgan style, the book's nets): per batch, one discriminator step on
    fake + real (labels 0/1), then one generator step through the discriminator (labels 1).
    Adam(lr, beta1) for both nets (the DCGAN paper's optimiser; the book uses RMSprop). The best
    epoch is the one with the lowest val_fid; a checkpoint holds both optimisers. A cGAN gives D
    each image's label (the fakes get the labels of the batch's reals, so both halves see the
    same label mix) and G the same labels."""
    hp, device = config.hparams, session.device
    gan = models.build(hp)
    train_ds, _ = datasets(config.prepared, hp, config.info, config.max_train_samples)
    # After the GAN is built and not under fork_rng: the classifier's init draws come before the
    # GAN's first noise in the seeded stream (moving them would change every DCGAN run).
    ref = fid_reference(config.prepared, device)
    loader = seeded_loader(train_ds, int(hp["batch_size"]), shuffle=True, seed=int(config.seed))
    G, D = session.prepare(gan.generator), session.prepare(gan.discriminator)
    loader = session.prepare_loader(loader)
    betas = (float(hp["beta1"]), 0.999)
    opt_g = torch.optim.Adam(G.parameters(), lr=float(hp["lr"]), betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=float(hp["lr"]), betas=betas)
    bce = torch.nn.BCEWithLogitsLoss()

    start, history, best = 0, [], Best(config.metric)
    restored = session.restore()
    if restored is not None:
        gan.load_state_dict(restored.state["model"])
        opt_g.load_state_dict(restored.state["opt_g"])
        opt_d.load_state_dict(restored.state["opt_d"])
        start, history = restored.next_epoch, restored.history
        best = Best(config.metric, history, restored.best_weights)

    for epoch in range(start, config.epochs):
        set_epoch(loader, epoch)
        for group in (*opt_g.param_groups, *opt_d.param_groups):
            group["lr"] = epoch_lr(hp, epoch, config.epochs)
        t0 = time.perf_counter()
        G.train()
        D.train()
        d_total, g_total, count = 0.0, 0.0, 0
        for x, y in loader:
            real = x.to(device) * 2 - 1  # tanh range
            b = len(real)
            cls = y.to(device).long() if gan.conditional else None
            both_cls = torch.cat([cls, cls]) if cls is not None else None
            fake = G(torch.randn(b, gan.codings, device=device), cls)
            # 1. discriminator: fakes -> 0, reals -> 1
            opt_d.zero_grad(set_to_none=True)
            labels = torch.cat([torch.zeros(b, device=device), torch.ones(b, device=device)])
            d_loss = bce(D(torch.cat([fake.detach(), real]), both_cls), labels)
            d_loss.backward()
            opt_d.step()
            # 2. generator: make the discriminator call the fakes real (only G's optimiser steps)
            opt_g.zero_grad(set_to_none=True)
            g_loss = bce(D(fake, cls), torch.ones(b, device=device))
            g_loss.backward()
            opt_g.step()
            d_total, g_total, count = d_total + d_loss.item() * b, g_total + g_loss.item() * b, count + b
        train_time = time.perf_counter() - t0
        gan.eval()
        val_fid = generated_fid(gan, ref, int(hp["fid_samples"]))
        metrics = {"epoch": epoch, "train_loss": g_total / max(count, 1), "d_loss": d_total / max(count, 1),
                   "epoch_time_s": train_time, "lr": opt_g.param_groups[0]["lr"], "resumed_at_epoch": start,
                   "world_size": session.world_size, "val_fid": val_fid}
        history.append(metrics)
        best.update(metrics, gan)
        session.report(metrics, history, best, lambda epoch=epoch: {
            "epoch": epoch, "model": gan.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()})

    return session.finish(history, best)
