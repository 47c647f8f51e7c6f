"""The FID feature extractor ("quartet-fmnist-cnn"): a small Fashion-MNIST CNN, trained by `prepare`.

Why it is trained in `prepare` and not downloaded: see fid.py. It is part of the evaluation
protocol, versioned with the data it was trained on (data.prepare calls `train_classifier` and
stores the weights beside the splits); fid.py measures distances on its penultimate features.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from components.data import DataError, seeded_loader, set_seeds

log = logging.getLogger(__name__)

FEATURES = "quartet-fmnist-cnn"  # the name printed beside every FID
FEATURE_DIM = 128
# Named test* on purpose: the registry fingerprints prepared files named test*, and a test FID is
# only comparable with another measured with the same classifier.
CLASSIFIER_FILE = "test_fid_classifier.pt"


class ClassifierParams(BaseModel):
    """prepare.classifier: how the FID feature extractor is trained."""

    model_config = ConfigDict(extra="forbid")
    epochs: int = Field(1, gt=0, le=100)
    train_size: int | None = Field(None, gt=0, description="first N training images (None: all)")
    batch_size: int = Field(128, gt=0, le=4096)
    lr: float = Field(2e-3, gt=0, lt=1)


class Classifier(nn.Module):
    """Conv 32 -> pool -> Conv 64 -> pool -> Dense 128 (the features) -> Dense 10."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, FEATURE_DIM), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURE_DIM, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def as_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (n, 28, 28) -> float (n, 1, 28, 28) in [0, 1]."""
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


@torch.no_grad()
def batched(fn: Any, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, len(x), batch)]) if len(x) else torch.empty(0)


def train_classifier(
    x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, params: ClassifierParams, seed: int
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Train the feature extractor (seeded, Adam, cross-entropy); returns (state_dict, stats)."""
    set_seeds(seed)
    n = params.train_size or len(x)
    xt, yt = as_tensor(x[:n]), torch.from_numpy(y[:n].astype(np.int64))
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=params.lr)
    loader = seeded_loader(torch.utils.data.TensorDataset(xt, yt), params.batch_size, shuffle=True, seed=seed)
    t0 = time.perf_counter()
    for _ in range(params.epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
    model.eval()
    acc = float((predict_classes(model, as_tensor(x_test)) == torch.from_numpy(y_test.astype(np.int64))).float().mean())
    stats = {"test_accuracy": acc, "train_images": float(len(xt)), "train_s": time.perf_counter() - t0}
    log.info("FID classifier (%s): test accuracy %.4f in %.1f s", FEATURES, acc, stats["train_s"])
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, stats


def load_classifier(prepared_dir: Path) -> Classifier:
    path = Path(prepared_dir) / CLASSIFIER_FILE
    if not path.is_file():
        raise DataError(f"{path}: FID classifier not found (run the prepare stage of generative/fashion-mnist)")
    model = Classifier()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def predict_classes(classifier: Classifier, images: torch.Tensor) -> torch.Tensor:
    device = next(classifier.parameters()).device
    return batched(lambda b: classifier(b.to(device)).argmax(1).cpu(), images)
