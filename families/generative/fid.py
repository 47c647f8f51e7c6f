"""FID on the features of quartet's own Fashion-MNIST classifier ("quartet-fmnist-cnn").

Why our own classifier and not Inception: Inception weights are a download (none offline here),
and Inception features of 28x28 grey clothes are a poor fit anyway. The classifier is part of the
evaluation protocol, so `prepare` trains it (seeded; classifier.py) and stores it beside the
splits it was trained on: it is versioned with the data, and every FID of a task is measured with
the same features. FIDs measured with it are comparable with each other, not with published FIDs.

FID = |mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^(1/2)) over the 128-d penultimate features.
It is biased upwards for small samples: compare FIDs computed on the same number of images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from families.generative.classifier import Classifier, batched, predict_classes


def features(classifier: Classifier, images: torch.Tensor) -> np.ndarray:
    """(n, 1, 28, 28) in [0, 1] -> (n, 128) float64 features."""
    device = next(classifier.parameters()).device
    return batched(lambda b: classifier.features(b.to(device)).cpu(), images).double().numpy()


@dataclass(frozen=True)
class Stats:
    mu: np.ndarray
    cov: np.ndarray
    n: int


def stats(feats: np.ndarray) -> Stats:
    return Stats(feats.mean(axis=0), np.cov(feats, rowvar=False), len(feats))


def frechet(a: Stats, b: Stats) -> float:
    """The Frechet distance between two Gaussians (scipy's sqrtm; imaginary noise dropped)."""
    import warnings

    from scipy import linalg

    with warnings.catch_warnings():  # near-singular products (dead ReLU features) are handled below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(a.cov @ b.cov)
    if not np.isfinite(covmean).all():  # singular product: nudge both diagonals (as pytorch-fid does)
        offset = np.eye(len(a.mu)) * 1e-6
        covmean = linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    covmean = np.real(covmean)
    diff = a.mu - b.mu
    return float(max(0.0, diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2 * np.trace(covmean)))


class FidReference:
    """The classifier plus the feature statistics of one real split: `fid(images)` in one call."""

    def __init__(self, classifier: Classifier, real_images: torch.Tensor) -> None:
        self.classifier = classifier
        self.real = stats(features(classifier, real_images))

    def to(self, device: torch.device) -> "FidReference":
        self.classifier.to(device)
        return self

    def fid(self, images: torch.Tensor) -> float:
        return frechet(stats(features(self.classifier, images)), self.real)


def class_histogram(classifier: Classifier, images: torch.Tensor) -> np.ndarray:
    """Fraction of images per predicted class: the mode-collapse monitor."""
    counts = np.bincount(predict_classes(classifier, images).numpy(), minlength=10)
    return counts / max(1, counts.sum())


def predicted(classifier: Classifier, images: torch.Tensor) -> torch.Tensor:
    """The classifier's class for each image (int64)."""
    return predict_classes(classifier, images).long()


def confidence(classifier: Classifier, images: torch.Tensor) -> float:
    """Mean max-softmax of the classifier on `images`: how sure it is each one is some garment."""
    device = next(classifier.parameters()).device
    probs = batched(lambda b: torch.softmax(classifier(b.to(device)), 1).amax(1).cpu(), images)
    return float(probs.double().mean()) if len(probs) else float("nan")


def normalised_entropy(fractions: np.ndarray) -> float:
    """Entropy / log(10): 1 for a uniform class histogram, 0 when every sample is one class."""
    p = fractions[fractions > 0]
    return float(-(p * np.log(p)).sum() / np.log(len(fractions)))
