"""How a trained generative model is judged: the evaluate stage's metrics and plots.

Autoencoder task: val/test reconstruction MSE (per class too) and a reconstruction grid. Generator
task: FID against the val and test splits, beside two anchors that say what the numbers mean (a
held-out real sample: the floor; uniform noise: the ceiling), the classifier's test accuracy,
the class histogram of the samples (mode collapse), sample and interpolation grids; for every
generator the classifier's mean confidence on its samples (`gen_confidence_mean`) and the sampling
time per image (`sample_s_per_image`, the wall time of `models.sample` for the FID batch / n); for
a conditional one (cGAN, conditional DDPM) `cond_accuracy`: how often an image generated for class
k is classified as k (`cond_samples_per_class` per class), per class too, and `cond_samples.png`.

Params (evaluate.*): fid_samples (2000), seed (0), n_grid, interpolation_steps (8),
cond_samples_per_class (100), sample_steps (a diffusion model's DDIM steps; default its own).
"""

from __future__ import annotations

import csv
import io
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.modeldir import load_model as load_model_with
from components.data import read_json
from families.generative import fid, models
from families.generative.classifier import FEATURES, load_classifier
from families.generative.data import AUTOENCODER_TASK, GENERATOR_TASK
from families.generative.train import image_dataset
from families.generative.uses import autoencoder_uses

log = logging.getLogger(__name__)


def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """A model dir -> (its module in eval mode, its config.json)."""
    return load_model_with(model_dir, models.build)


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
    if models.can_reconstruct(config["model"]):
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
        if config["task"] == AUTOENCODER_TASK:  # judged by what it is for (uses.py), beside its MSE
            metrics.update(autoencoder_uses(model, config["hparams"], Path(prepared_dir), plots_dir, params.get("uses")))
    if config["task"] == GENERATOR_TASK:
        metrics.update(evaluate_generator(model, Path(prepared_dir), plots_dir, params, info, val_x, test_x))
    return metrics


def evaluate_generator(
    model: torch.nn.Module, prepared_dir: Path, plots_dir: Path, params: dict[str, Any], info: dict[str, Any],
    val_x: torch.Tensor, test_x: torch.Tensor,
) -> dict[str, float]:
    n = min(int(params.get("fid_samples", 2000)), len(test_x))
    seed = int(params.get("seed", 0))
    steps = params.get("sample_steps")
    steps = None if steps is None or models.max_steps(model) is None else int(steps)
    classifier = load_classifier(prepared_dir)
    val_stats = fid.stats(fid.features(classifier, val_x))
    test_stats = fid.stats(fid.features(classifier, test_x))
    t0 = time.perf_counter()
    generated = models.sample(model, n, torch.Generator().manual_seed(seed), steps=steps)
    sample_s = time.perf_counter() - t0
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
        "gen_confidence_mean": fid.confidence(classifier, generated),
        "sample_s_per_image": sample_s / max(n, 1),
    }
    if models.max_steps(model) is not None:
        out["sample_steps"] = float(steps if steps is not None else model.sample_steps)
    fractions = fid.class_histogram(classifier, generated)
    out.update({f"gen_class_frac_{k}": float(f) for k, f in enumerate(fractions)})
    out["gen_class_entropy"] = fid.normalised_entropy(fractions)
    classes = list(info.get("classes", [str(k) for k in range(10)]))
    with open(plots_dir / "gen_class_histogram.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["class", "name", "fraction"])
        w.writerows([[k, classes[k], f"{v:.6g}"] for k, v in enumerate(fractions)])
    _plot_histogram(plots_dir / "gen_class_histogram.png", fractions, classes,
                    f"predicted class of {n} samples ({FEATURES}); normalised entropy {out['gen_class_entropy']:.3f}")
    (plots_dir / "samples.png").write_bytes(png_grid(generated[:64], cols=8))
    steps = int(params.get("interpolation_steps", 8))
    (plots_dir / "interpolation.png").write_bytes(
        png_grid(models.interpolate(model, 5, steps, torch.Generator().manual_seed(seed + 3)), cols=steps))
    if models.is_conditional(model):
        per_class = int(params.get("cond_samples_per_class", 100))
        out.update(conditional_accuracy(model, classifier, per_class, seed + 4, steps, plots_dir, classes))
    log.info("FID (%s features, %d samples): val %.3f, test %.3f; held-out real %.3f, uniform noise %.1f; "
             "%.4f s/image", FEATURES, n, out["val_fid"], out["test_fid"], out["val_fid_real_heldout"],
             out["val_fid_noise"], out["sample_s_per_image"])
    return out


def conditional_accuracy(model: torch.nn.Module, classifier: torch.nn.Module, per_class: int, seed: int,
                         steps: int | None, plots_dir: Path, classes: list[str]) -> dict[str, float]:
    """`per_class` images generated for each class k (one seeded call): the fraction the FID
    classifier calls k (overall and per class), its mean confidence on them, and a grid
    `cond_samples.png` with one row per class (the first 10 of each)."""
    labels = torch.arange(10).repeat_interleave(per_class)
    images = models.sample(model, len(labels), torch.Generator().manual_seed(seed), steps=steps, labels=labels)
    hits = fid.predicted(classifier, images) == labels
    out = {"cond_accuracy": float(hits.float().mean()), "cond_samples_per_class": float(per_class),
           "cond_confidence_mean": fid.confidence(classifier, images)}
    out.update({f"cond_accuracy_class_{k}": float(hits[labels == k].float().mean()) for k in range(10)})
    cols = min(10, per_class)
    grid = images.view(10, per_class, 1, 28, 28)[:, :cols].reshape(-1, 1, 28, 28)
    (plots_dir / "cond_samples.png").write_bytes(png_grid(grid, cols=cols))
    log.info("conditional: %d per class, accuracy %.3f (%s)", per_class, out["cond_accuracy"],
             ", ".join(f"{classes[k]} {out[f'cond_accuracy_class_{k}']:.2f}" for k in range(10)))
    return out
