"""What the generative family learns and how it is judged: loops, metrics, evaluation, Predictor.

Two tasks, two registered models:
- `fashion-mnist-autoencoder`: any autoencoder (or the VAE), judged on `mse` = plain reconstruction
  MSE on clean images, pixels in [0, 1] (the book's val MSE);
- `fashion-mnist`: a generator (VAE or DCGAN), judged on `fid` = FID of generated images against a
  real split, on the features of quartet's own classifier (fid.py; name printed with every FID).

The autoencoders and the VAE train through `components.train.run_supervised` (their regularisers
live in the model's `forward`); the DCGAN has its own two-optimiser loop below that reports,
checkpoints and resumes through the same components.
"""

from __future__ import annotations

import base64
import binascii
import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components import train
from components.config import ConfigError
from components.data import read_json, seeded_loader, set_seeds
from components.family import Metric, RequestError
from components.train import (
    SupervisedSpec,
    finish_plain,
    loop_device,
    report_epoch,
    restore_checkpoint,
    run_supervised,
    world,
    write_checkpoint_dir,
)
from families.generative import fid, models
from families.generative.data import GENERATOR_TASK, load_split

log = logging.getLogger(__name__)

METRICS = {"fashion-mnist": Metric("fid", "min"), "fashion-mnist-autoencoder": Metric("mse", "min")}
MAX_IMAGES = 64
VAL_FID_SEED = 0  # the validation FID samples the same codes every epoch, so epochs compare


# ----------------------------------------------------------------------------- datasets + loss
def image_dataset(prepared_dir: Path, split: str, limit: int | None = None) -> torch.utils.data.TensorDataset:
    x, y = load_split(prepared_dir, split)
    if limit:
        x, y = x[:limit], y[:limit]
    return torch.utils.data.TensorDataset(fid.as_tensor(x), torch.from_numpy(y.astype(np.int64)))


def datasets(prepared_dir: Path, hp: dict[str, Any], info: dict[str, Any], max_train: int | None):
    return image_dataset(prepared_dir, "train", max_train), image_dataset(prepared_dir, "val")


def loss(model: torch.nn.Module, batch: Any, hp: dict[str, Any]) -> torch.Tensor:
    """Reconstruction MSE (pixels in [0, 1]) + the model's own penalty (sparsity, KL)."""
    x = batch[0]
    recon, penalty = model(x)
    return torch.nn.functional.mse_loss(recon, x) + penalty


def validate(
    model: torch.nn.Module, loader: Any, hp: dict[str, Any], info: dict[str, Any], fid_ref: fid.FidReference | None = None,
) -> dict[str, float]:
    """val_mse (clean reconstruction); the VAE also val_loss (sampled z, the book's val_loss) and,
    for the generator task, val_fid on `fid_samples` generated images."""
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


def generated_fid(model: torch.nn.Module, fid_ref: fid.FidReference, n: int) -> float:
    device = next(model.parameters()).device
    images = models.sample(model, n, torch.Generator().manual_seed(VAL_FID_SEED), device)
    return fid_ref.fid(images.cpu())


def check_task_model(task: str, model: str) -> None:
    """Generators for the generator task, autoencoders for the autoencoder task (ConfigError)."""
    if task == GENERATOR_TASK and model not in models.GENERATORS:
        raise ConfigError(f"generative hparams: model: {model!r} cannot generate; task {task!r} takes "
                          f"{' or '.join(models.GENERATORS)}")
    if task != GENERATOR_TASK and model == "dcgan":
        raise ConfigError(f"generative hparams: model: 'dcgan' cannot reconstruct; task {task!r} takes an autoencoder")


def fid_reference(prepared_dir: Path, split: str = "val") -> fid.FidReference:
    return fid.FidReference(fid.load_classifier(prepared_dir), image_dataset(prepared_dir, split).tensors[0])


def spec(config: dict[str, Any]) -> SupervisedSpec:
    metric = METRICS[config["task"]]
    validate_fn = validate
    if config["task"] == GENERATOR_TASK:
        ref = fid_reference(Path(config["prepared_dir"])).to(loop_device(config))

        def validate_fn(model, loader, hp, info):  # type: ignore[no-redef]
            return validate(model, loader, hp, info, ref)

    return SupervisedSpec(build=models.build, datasets=datasets, loss=loss, validate=validate_fn,
                          val_metric=metric.val, mode=metric.mode)


def train_loop(config: dict[str, Any]) -> list[dict[str, float]]:
    """The per-worker loop (Ray Train worker, Tune trial or plain process)."""
    model = config["hparams"]["model"]
    check_task_model(config["task"], model)
    if model == "dcgan":
        return train_dcgan(config)
    return run_supervised(config, spec(config))


# ----------------------------------------------------------------------------- the DCGAN loop
def train_dcgan(config: dict[str, Any]) -> list[dict[str, float]]:
    """DCGAN (pytorch/examples dcgan style, the book's nets): per batch, one discriminator step on
    fake + real (labels 0/1), then one generator step through the discriminator (labels 1).
    Adam(lr, beta1) for both nets (the DCGAN paper's optimiser; the book uses RMSprop)."""
    launcher = config.get("launcher", "plain")
    hp = config["hparams"]
    torch.set_num_threads(int(config.get("threads", 1)))
    seed = int(config["seed"])
    set_seeds(seed)
    device = loop_device(config)
    gan = models.build(hp).to(device)
    train_ds, _ = datasets(Path(config["prepared_dir"]), hp, config["info"], config.get("max_train_samples"))
    ref = fid_reference(Path(config["prepared_dir"])).to(device)
    rank, world_size = world(config)
    loader = seeded_loader(train_ds, int(hp["batch_size"]), shuffle=True, seed=seed)
    G, D = gan.generator, gan.discriminator
    if launcher == "train":
        import ray.train.torch

        G, D = ray.train.torch.prepare_model(G), ray.train.torch.prepare_model(D)
        loader = ray.train.torch.prepare_data_loader(loader)
    opt_g = torch.optim.Adam(G.parameters(), lr=float(hp["lr"]), betas=(float(hp["beta1"]), 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=float(hp["lr"]), betas=(float(hp["beta1"]), 0.999))
    bce = torch.nn.BCEWithLogitsLoss()

    start, history, best = 0, [], None
    restored = restore_checkpoint() if launcher == "train" else None
    if restored is not None:
        state, history, best = restored
        gan.load_state_dict(state["model"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start = state["epoch"] + 1
    best_fid = min((h["val_fid"] for h in history), default=float("inf"))

    for epoch in range(start, int(config["epochs"])):
        if hasattr(getattr(loader, "sampler", None), "set_epoch"):
            loader.sampler.set_epoch(epoch)
        for group in (*opt_g.param_groups, *opt_d.param_groups):
            group["lr"] = train.epoch_lr(hp, epoch, int(config["epochs"]))
        t0 = time.perf_counter()
        G.train()
        D.train()
        d_total, g_total, count = 0.0, 0.0, 0
        for x, _ in loader:
            real = x.to(device) * 2 - 1  # tanh range
            b = len(real)
            fake = G(torch.randn(b, gan.codings, device=device))
            # 1. discriminator: fakes -> 0, reals -> 1
            opt_d.zero_grad(set_to_none=True)
            labels = torch.cat([torch.zeros(b, device=device), torch.ones(b, device=device)])
            d_loss = bce(D(torch.cat([fake.detach(), real])), labels)
            d_loss.backward()
            opt_d.step()
            # 2. generator: make the discriminator call the fakes real (only G's optimiser steps)
            opt_g.zero_grad(set_to_none=True)
            g_loss = bce(D(fake), torch.ones(b, device=device))
            g_loss.backward()
            opt_g.step()
            d_total, g_total, count = d_total + d_loss.item() * b, g_total + g_loss.item() * b, count + b
        train_time = time.perf_counter() - t0
        gan.eval()
        val_fid = generated_fid(gan, ref, int(hp["fid_samples"]))
        metrics = {"epoch": epoch, "train_loss": g_total / max(count, 1), "d_loss": d_total / max(count, 1),
                   "epoch_time_s": train_time, "lr": opt_g.param_groups[0]["lr"], "resumed_at_epoch": start,
                   "world_size": world_size, "val_fid": val_fid}
        history.append(metrics)
        if val_fid < best_fid:
            best_fid = val_fid
            best = {k: v.detach().cpu().clone() for k, v in gan.state_dict().items()}
        if best is None:
            raise FloatingPointError(f"training diverged: val_fid is {val_fid} after epoch {epoch} (lower the learning rate)")
        metrics["best_val_fid"] = best_fid

        def write_checkpoint(d: Path, epoch: int = epoch, best: dict = best) -> None:
            state = {"epoch": epoch, "model": gan.state_dict(), "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict()}
            write_checkpoint_dir(d, {**config["model_config"], "epoch": epoch}, history, best, state)

        report_epoch(launcher, metrics, write_checkpoint)

    finish_plain(config, history, best)
    return history


# ----------------------------------------------------------------------------- evaluation
def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return train.load_model(model_dir, models.build)


def png_grid(images: torch.Tensor | np.ndarray, cols: int, scale: int = 2) -> bytes:
    """(n, 1, 28, 28) in [0, 1] -> one PNG of rows of `cols` images, 1-pixel white gutters."""
    from PIL import Image

    arr = np.asarray(images, dtype=np.float32).reshape(-1, 28, 28)
    rows = -(-len(arr) // cols)
    canvas = np.ones((rows * 29 + 1, cols * 29 + 1), dtype=np.float32)
    for i, img in enumerate(arr):
        r, c = divmod(i, cols)
        canvas[1 + r * 29 : 1 + r * 29 + 28, 1 + c * 29 : 1 + c * 29 + 28] = img
    im = Image.fromarray((np.clip(canvas, 0, 1) * 255).round().astype(np.uint8), mode="L")
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _plot_histogram(path: Path, fractions: np.ndarray, classes: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.bar(range(10), fractions, color="tab:blue")
    ax.axhline(0.1, color="grey", ls="--", lw=1, label="uniform")
    ax.set_xticks(range(10), classes, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("fraction of samples")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


@torch.no_grad()
def reconstruction_mse(model: torch.nn.Module, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """Per-image MSE of the (unclipped) reconstruction: the metric and the anomaly score."""
    out = [((models.reconstruct(model, xb) - xb) ** 2).flatten(1).mean(1) for xb in x.split(batch)]
    return torch.cat(out).numpy().astype(np.float64)


def evaluate(model_dir: Path, prepared_dir: Path, plots_dir: Path, params: dict[str, Any]) -> dict[str, float]:
    """Autoencoder task: val/test MSE + reconstruction grid. Generator task: FID (val, test, real and
    noise anchors), classifier accuracy, class histogram, sample and interpolation grids."""
    model, config = load_model(model_dir)
    info = read_json(Path(prepared_dir) / "info.json")
    plots_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = {"epochs_trained": float(len(config.get("history", [])))}
    val_x = image_dataset(prepared_dir, "val").tensors[0]
    test_x, test_y = image_dataset(prepared_dir, "test").tensors
    if models.can_reconstruct(model):
        val_err, test_err = reconstruction_mse(model, val_x), reconstruction_mse(model, test_x)
        metrics.update(val_mse=float(val_err.mean()), test_mse=float(test_err.mean()))
        for k in range(10):
            mask = (test_y == k).numpy()
            if mask.any():
                metrics[f"test_mse_class_{k}"] = float(test_err[mask].mean())
        n = int(params.get("n_grid", 8))
        with torch.no_grad():
            recon = models.reconstruct(model, val_x[:n]).clamp(0, 1)
        (plots_dir / "reconstructions.png").write_bytes(png_grid(torch.cat([val_x[:n], recon]), cols=n))
    if config["task"] == GENERATOR_TASK:
        metrics.update(evaluate_generator(model, Path(prepared_dir), plots_dir, params, info, val_x, test_x))
    return metrics


def evaluate_generator(
    model: torch.nn.Module, prepared_dir: Path, plots_dir: Path, params: dict[str, Any], info: dict[str, Any],
    val_x: torch.Tensor, test_x: torch.Tensor,
) -> dict[str, float]:
    n = min(int(params.get("fid_samples", 2000)), len(test_x))
    seed = int(params.get("seed", 0))
    classifier = fid.load_classifier(prepared_dir)
    val_stats = fid.stats(fid.features(classifier, val_x))
    test_stats = fid.stats(fid.features(classifier, test_x))
    generated = models.sample(model, n, torch.Generator().manual_seed(seed))
    gen_stats = fid.stats(fid.features(classifier, generated))
    noise = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed + 1))
    heldout = test_x[torch.randperm(len(test_x), generator=torch.Generator().manual_seed(seed + 2))[:n]]
    out = {
        "val_fid": fid.frechet(gen_stats, val_stats),
        "test_fid": fid.frechet(gen_stats, test_stats),
        "val_fid_real_heldout": fid.frechet(fid.stats(fid.features(classifier, heldout)), val_stats),
        "val_fid_noise": fid.frechet(fid.stats(fid.features(classifier, noise)), val_stats),
        "fid_samples": float(n),
        "classifier_test_accuracy": float(info.get("fid_classifier", {}).get("test_accuracy", float("nan"))),
    }
    fractions = fid.class_histogram(classifier, generated)
    out.update({f"gen_class_frac_{k}": float(f) for k, f in enumerate(fractions)})
    out["gen_class_entropy"] = fid.normalised_entropy(fractions)
    classes = list(info.get("classes", [str(k) for k in range(10)]))
    with open(plots_dir / "gen_class_histogram.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "name", "fraction"])
        w.writerows([[k, classes[k], f"{v:.6g}"] for k, v in enumerate(fractions)])
    _plot_histogram(plots_dir / "gen_class_histogram.png", fractions, classes,
                    f"predicted class of {n} samples ({fid.FEATURES}); normalised entropy {out['gen_class_entropy']:.3f}")
    (plots_dir / "samples.png").write_bytes(png_grid(generated[:64], cols=8))
    steps = int(params.get("interpolation_steps", 8))
    (plots_dir / "interpolation.png").write_bytes(
        png_grid(models.interpolate(model, 5, steps, torch.Generator().manual_seed(seed + 3)), cols=steps))
    log.info("FID (%s features, %d samples): val %.3f, test %.3f; held-out real %.3f, uniform noise %.1f",
             fid.FEATURES, n, out["val_fid"], out["test_fid"], out["val_fid_real_heldout"], out["val_fid_noise"])
    return out


# ----------------------------------------------------------------------------- serving
class SampleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="generative task, e.g. 'fashion-mnist'")
    n: int = Field(8, ge=1, le=MAX_IMAGES, description=f"number of images (1..{MAX_IMAGES})")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="the same seed gives the same images")


class SampleResponse(BaseModel):
    task: str
    model_version: str | None = None
    images: list[str] = Field(description="base64-encoded 28x28 greyscale PNGs")


class ReconstructRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="'fashion-mnist-autoencoder' (or 'fashion-mnist', answered by the autoencoder)")
    images: list[list[list[float]] | str] = Field(
        min_length=1, max_length=MAX_IMAGES,
        description=f"1..{MAX_IMAGES} images: 28x28 arrays of floats in [0, 1], or base64 PNG strings",
    )


class ReconstructResponse(BaseModel):
    task: str
    model_version: str | None = None
    reconstructions: list[list[list[float]]]
    anomaly_scores: list[float] = Field(description="per-image reconstruction MSE (higher = more unusual)")


def encode_png(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_png(text: str, index: int) -> np.ndarray:
    """base64 PNG (optionally a data: URL) -> (28, 28) float32 in [0, 1]; RequestError if not one."""
    from PIL import Image, UnidentifiedImageError

    if text.startswith("data:"):
        if "," not in text:
            raise RequestError(f"images[{index}]: a data: URL needs ',' and the base64 PNG after it")
        payload = text.split(",", 1)[1]
    else:
        payload = text
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"images[{index}]: not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            # Check the header before decoding: a tiny PNG can declare a huge image.
            fmt, size = im.format, im.size
            if fmt != "PNG":
                raise RequestError(f"images[{index}]: expected a PNG, got {fmt}")
            if size != (28, 28):
                raise RequestError(f"images[{index}]: PNG is {size[0]}x{size[1]}, expected 28x28")
            arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except RequestError:
        raise
    except Exception as e:  # PIL raises many types (SyntaxError for a corrupt chunk): all the client's bytes
        raise RequestError(f"images[{index}]: not a readable PNG ({type(e).__name__})") from None
    return arr


def image_array(image: list[list[float]] | str, index: int) -> np.ndarray:
    """One request image -> (28, 28) float32 in [0, 1], or a RequestError saying what is wrong."""
    if isinstance(image, str):
        return decode_png(image, index)
    if len(image) != 28 or any(len(row) != 28 for row in image):
        widths = sorted({len(row) for row in image})
        raise RequestError(f"images[{index}]: expected 28 rows of 28 values, got {len(image)} rows of {widths}")
    arr = np.asarray(image, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise RequestError(f"images[{index}]: values must be finite (found NaN or infinity)")
    if arr.min() < 0 or arr.max() > 1:
        raise RequestError(f"images[{index}]: pixel values must lie in [0, 1], found [{arr.min():.4g}, {arr.max():.4g}]")
    return arr


class Predictor:
    """Loads one model dir. A generator (task fashion-mnist) answers `sample`, an autoencoder
    `reconstruct`; `request_model` is per instance, so the MLflow pyfunc validates the right kind."""

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.model, self.config = load_model(Path(model_dir))
        self.task = self.config["task"]
        self.model_version = model_version
        self.kind = "generator" if self.task == GENERATOR_TASK else "autoencoder"
        self.request_model, self.response_model = (
            (SampleRequest, SampleResponse) if self.kind == "generator" else (ReconstructRequest, ReconstructResponse))

    def sample_batch(self, reqs: list[SampleRequest]) -> list[SampleResponse]:
        """One forward pass per request (so a seed's images never depend on its batch-mates)."""
        if not models.can_sample(self.model):
            raise RequestError(f"this {self.config['model']!r} model of task {self.task!r} cannot sample new images "
                               f"(POST /generative/sample with task {GENERATOR_TASK!r})")
        out = []
        for r in reqs:
            images = models.sample(self.model, r.n, torch.Generator().manual_seed(r.seed)).numpy()
            out.append(SampleResponse(task=r.task, model_version=self.model_version,
                                      images=[encode_png(img[0]) for img in images]))
        return out

    def reconstruct_batch(self, reqs: list[ReconstructRequest]) -> list[ReconstructResponse]:
        """All images of all requests in one forward pass; scores = per-image MSE."""
        if not models.can_reconstruct(self.model):
            raise RequestError(f"this {self.config['model']!r} generator cannot reconstruct images "
                               "(POST /generative/reconstruct is answered by the autoencoder)")
        arrays = [np.stack([image_array(img, i) for i, img in enumerate(r.images)]) for r in reqs]
        x = torch.from_numpy(np.concatenate(arrays)).unsqueeze(1)
        with torch.no_grad():
            recon = models.reconstruct(self.model, x)
        scores = ((recon - x) ** 2).flatten(1).mean(1).numpy()
        recon = recon.clamp(0, 1)[:, 0].numpy().astype(np.float64)
        out, start = [], 0
        for r, a in zip(reqs, arrays):
            end = start + len(a)
            out.append(ReconstructResponse(task=r.task, model_version=self.model_version,
                                           reconstructions=recon[start:end].round(5).tolist(),
                                           anomaly_scores=[float(s) for s in scores[start:end]]))
            start = end
        return out

    def predict(self, req: BaseModel) -> BaseModel:
        return self.predict_batch([req])[0]

    def predict_batch(self, reqs: list[BaseModel]) -> list[BaseModel]:
        """Dispatch by request type, keeping the order."""
        out: list[BaseModel | None] = [None] * len(reqs)
        for kind, method in ((SampleRequest, self.sample_batch), (ReconstructRequest, self.reconstruct_batch)):
            idx = [i for i, r in enumerate(reqs) if isinstance(r, kind)]
            if idx:
                for i, resp in zip(idx, method([reqs[i] for i in idx])):
                    out[i] = resp
        if any(o is None for o in out):
            bad = next(type(r).__name__ for r, o in zip(reqs, out) if o is None)
            raise RequestError(f"unsupported request type {bad}")
        return out  # type: ignore[return-value]


def input_example(model_dir: Path) -> dict[str, Any]:
    """A valid request for this model dir's kind: 2 samples, or one image (a centred square)."""
    config = read_json(Path(model_dir) / "config.json")
    if config["task"] == GENERATOR_TASK:
        return {"task": config["task"], "n": 2, "seed": 0}
    img = np.zeros((28, 28))
    img[7:21, 7:21] = 0.8
    return {"task": config["task"], "images": [img.tolist()]}
