"""What an autoencoder is for (book ch. 17), measured in the pipeline: judge it by its uses.

A low reconstruction MSE says little on its own; the book's three uses of the codings say more:

1. **Unsupervised pretraining** (`pretraining`): a classifier that sees only `n_labels` labelled
   training images (stratified, seeded) = encoder + a small head, three ways: *scratch* (the same
   encoder architecture, freshly initialised, everything trains), *frozen* (the trained encoder
   fixed, only the head trains) and *fine-tuned* (the frozen classifier, then everything trains at
   a lower rate). Test accuracy of each: does the unlabelled training help?
2. **Anomaly detection** (`anomaly`): per held-out class k, a fresh autoencoder of the evaluated
   model's architecture and hparams trained on the training images without class k; every test
   image scored by its reconstruction MSE; ROC AUC of "is class k". The evaluated model's own
   per-class AUC (it has seen every class) rides along: it says which classes it reconstructs worst.
3. **Dimensionality reduction** (`coding_map`): a 2-D map (t-SNE or PCA) of test codings as a
   scatter plot and a CSV, with a number saying how well it separates the classes: 5-NN accuracy
   (cross-validated) in the map beside the same in the full coding space.

`autoencoder_uses(...)` runs the three for the evaluate stage; everything else is a pure function
of tensors and params, so the tests and bench/ call the parts directly. Every part draws from its
own seeded generators inside `torch.random.fork_rng`: the same seed gives the same metrics, and
the caller's global RNG is left as it was.

Works for every autoencoder of the zoo: each has `encode(x) -> (n, codings)` (conv: global-pooled
and flattened; the VAE: the mean mu, deterministic), and no encoder has dropout or batch norm, so
encoding is the same in train and eval mode (denoising's corruption lives in `forward`, not `encode`).
"""

from __future__ import annotations

import copy
import csv
import logging
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn

from components.config import validate_model
from components.data import read_json, seeded_loader
from components.train import epoch_lr
from families.generative import models
from families.generative.train import image_dataset, loss as reconstruction_loss

log = logging.getLogger(__name__)

N_CLASSES = 10  # Fashion-MNIST; the heads have 10 outputs whatever labels the data holds


class UsesParams(BaseModel):
    """The evaluate stage's `uses` mapping (every key optional). Defaults fit the default profile
    (20,000 training images, stacked 784-100-30) in about a minute on one core; see the module doc."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: skip the whole computation")
    seed: int = Field(0, ge=0, description="seeds the label sample, every init, loader and the map")
    # pretraining
    n_labels: int = Field(500, ge=10, le=100_000, description="labelled training images of the classifiers")
    head_hidden: int = Field(0, ge=0, le=1024, description="0: a linear head on the codings; n: one ReLU layer of n")
    head_epochs: int = Field(30, ge=1, le=500, description="frozen: epochs of the head alone")
    head_lr: float = Field(1e-2, gt=0, lt=1, description="Adam rate of the head on the frozen codings (measured: "
                                                         "1e-3 left the linear head underfit, 0.55 vs 0.75)")
    finetune_epochs: int = Field(20, ge=0, le=500, description="fine-tuned: epochs of everything after the frozen "
                                                               "phase")
    finetune_lr: float = Field(3e-4, gt=0, lt=1, description="Adam rate of the fine-tuning phase (lower: keep the "
                                                             "pretrained features)")
    scratch_lr: float = Field(1e-3, gt=0, lt=1, description="Adam rate of the scratch classifier (head_epochs + "
                                                            "finetune_epochs epochs, everything trains)")
    classifier_batch_size: int = Field(32, ge=1, le=4096)
    # anomaly detection
    held_out_classes: list[int] = Field(default_factory=lambda: list(range(N_CLASSES)),
                                        description="classes each left out of one anomaly autoencoder")
    anomaly_epochs: int = Field(3, ge=0, le=100, description="epochs of each anomaly autoencoder (0: skip them)")
    anomaly_train_size: int | None = Field(
        10000, ge=10, description="training images (without class k, seeded sample) of each anomaly autoencoder; "
                                 "null: all of them")
    anomaly_batch_size: int | None = Field(None, ge=1, le=4096, description="null: the evaluated model's batch_size")
    anomaly_champion: bool = Field(True, description="also the evaluated model's own per-class AUC (one test pass)")
    # the 2-D map
    map_points: int = Field(2000, ge=10, le=20_000, description="test codings mapped (seeded sample)")
    map_method: Literal["tsne", "pca"] = Field("tsne", description="tsne: sklearn TSNE (init pca); pca: 2 components")
    knn_k: int = Field(5, ge=1, le=50, description="neighbours of the map's k-NN accuracy")
    knn_folds: int = Field(5, ge=2, le=20, description="cross-validation folds of the k-NN accuracy")

    @field_validator("held_out_classes")
    @classmethod
    def _classes(cls, v: list[int]) -> list[int]:
        bad = [k for k in v if not 0 <= k < N_CLASSES]
        if bad:
            raise ValueError(f"classes are 0..{N_CLASSES - 1}, got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"repeated classes in {v}")
        return v


def uses_params(raw: dict[str, Any] | None) -> UsesParams:
    """The `uses` mapping -> UsesParams; a bad key raises ConfigError naming it."""
    return validate_model(UsesParams, dict(raw or {}), "generative evaluate.uses")  # type: ignore[return-value]


# ----------------------------------------------------------------------------- shared pieces
@torch.no_grad()
def encode(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """(n, 1, 28, 28) -> (n, codings), eval mode (the VAE: mu). The model's mode is restored."""
    was = model.training
    model.eval()
    out = torch.cat([model.encode(xb).flatten(1) for xb in x.split(batch)])
    model.train(was)
    return out


@torch.no_grad()
def per_image_mse(model: nn.Module, x: torch.Tensor, batch: int = 1000) -> np.ndarray:
    """Per-image MSE of the deterministic (eval-mode) reconstruction: the anomaly score."""
    was = model.training
    model.eval()
    out = torch.cat([((models.reconstruct(model, xb) - xb) ** 2).flatten(1).mean(1) for xb in x.split(batch)])
    model.train(was)
    return out.numpy().astype(np.float64)


def stratified_sample(y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Indices of n labels in the classes' proportions (sklearn's stratified split, seeded); all if n >= len(y)."""
    from sklearn.model_selection import train_test_split

    if n >= len(y):
        return np.arange(len(y))
    idx, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=seed)
    return np.sort(idx)


def coding_size(model: nn.Module) -> int:
    return int(encode(model, torch.zeros(1, 1, models.SIDE, models.SIDE)).shape[1])


# ----------------------------------------------------------------------------- 1. pretraining
class CodingClassifier(nn.Module):
    """An autoencoder's `encode` + a head (linear, or one ReLU layer) -> 10 logits. The whole
    autoencoder is held (Tied's encoder is its weights, not a submodule); the decoder's
    parameters get no gradient and Adam leaves them alone."""

    def __init__(self, autoencoder: nn.Module, codings: int, hidden: int = 0) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.head = (nn.Linear(codings, N_CLASSES) if hidden == 0 else
                     nn.Sequential(nn.Linear(codings, hidden), nn.ReLU(), nn.Linear(hidden, N_CLASSES)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.autoencoder.encode(x).flatten(1))


def set_encoder_trainable(clf: CodingClassifier, trainable: bool) -> None:
    for p in clf.autoencoder.parameters():
        p.requires_grad_(trainable)


def fit_classifier(clf: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch: int,
                   seed: int) -> None:
    """Adam on cross-entropy over the trainable parameters, seeded shuffling."""
    params = [p for p in clf.parameters() if p.requires_grad]
    if epochs == 0 or not params:
        return
    opt = torch.optim.Adam(params, lr=lr)
    loader = seeded_loader(torch.utils.data.TensorDataset(x, y), batch, shuffle=True, seed=seed)
    clf.train()
    for _ in range(epochs):
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(clf(xb), yb).backward()
            opt.step()
    clf.eval()


@torch.no_grad()
def accuracy(clf: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 1000) -> float:
    clf.eval()
    pred = torch.cat([clf(xb).argmax(1) for xb in x.split(batch)])
    return float((pred == y).float().mean())


def pretraining(model: nn.Module, hparams: dict[str, Any], train: tuple[torch.Tensor, torch.Tensor],
                test: tuple[torch.Tensor, torch.Tensor], p: UsesParams) -> dict[str, float]:
    """pretrain_acc_{scratch,frozen,finetuned} on the test split, from `p.n_labels` training labels.

    scratch trains everything at scratch_lr for head_epochs + finetune_epochs (the same number of
    epochs as frozen then fine-tuned); the trained model is deep-copied, never modified."""
    x, y = train
    idx = torch.from_numpy(stratified_sample(y.numpy(), p.n_labels, p.seed))
    x, y = x[idx], y[idx]
    codings = coding_size(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.seed)
        scratch = CodingClassifier(models.build(hparams), codings, p.head_hidden)
        fit_classifier(scratch, x, y, p.head_epochs + p.finetune_epochs, p.scratch_lr, p.classifier_batch_size, p.seed)

        torch.manual_seed(p.seed + 1)
        pre = CodingClassifier(copy.deepcopy(model), codings, p.head_hidden)
        pre.autoencoder.eval()
        set_encoder_trainable(pre, False)
        fit_classifier(pre, x, y, p.head_epochs, p.head_lr, p.classifier_batch_size, p.seed)
        acc_frozen = accuracy(pre, *test)

        set_encoder_trainable(pre, True)
        fit_classifier(pre, x, y, p.finetune_epochs, p.finetune_lr, p.classifier_batch_size, p.seed + 1)
    return {"pretrain_acc_scratch": accuracy(scratch, *test), "pretrain_acc_frozen": acc_frozen,
            "pretrain_acc_finetuned": accuracy(pre, *test), "pretrain_labels": float(len(y))}


# ----------------------------------------------------------------------------- 2. anomaly detection
def fit_autoencoder(model: nn.Module, x: torch.Tensor, hparams: dict[str, Any], epochs: int, batch: int,
                    seed: int) -> nn.Module:
    """The family's loss (MSE + the model's penalty), Adam at hparams' lr and schedule, clip_norm
    if set: the training loop's recipe, minus validation and checkpoints."""
    opt = torch.optim.Adam(model.parameters(), lr=float(hparams["lr"]))
    loader = seeded_loader(torch.utils.data.TensorDataset(x), batch, shuffle=True, seed=seed)
    clip = hparams.get("clip_norm")
    model.train()
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = epoch_lr(hparams, epoch, epochs)
        for batch_ in loader:
            opt.zero_grad(set_to_none=True)
            reconstruction_loss(model, batch_, hparams).backward()
            if clip:
                nn.utils.clip_grad_norm_(model.parameters(), float(clip))
            opt.step()
    model.eval()
    return model


def class_aucs(scores: np.ndarray, labels: np.ndarray, classes: Iterable[int]) -> dict[int, float]:
    """ROC AUC of "is class k" for each k present (and not alone) in `labels`; high score = anomalous."""
    from sklearn.metrics import roc_auc_score

    out = {}
    for k in classes:
        target = labels == k
        if 0 < target.sum() < len(target):
            out[k] = float(roc_auc_score(target, scores))
    return out


def anomaly(model: nn.Module, hparams: dict[str, Any], train: tuple[torch.Tensor, torch.Tensor],
            test: tuple[torch.Tensor, torch.Tensor], p: UsesParams) -> dict[str, float]:
    """anomaly_auc_class_{k} (a fresh AE without class k), anomaly_auc_mean, and with
    p.anomaly_champion anomaly_auc_champion_class_{k} (the evaluated model's own scores)."""
    x, y = train
    xt, yt = test
    labels = yt.numpy()
    out: dict[str, float] = {}
    batch = int(p.anomaly_batch_size or hparams.get("batch_size", 32))
    if p.anomaly_epochs > 0:
        aucs = []
        for k in p.held_out_classes:
            keep = np.flatnonzero(y.numpy() != k)
            if not (labels == k).any() or len(keep) == 0:
                log.warning("anomaly: class %d is missing from the test or train split: skipped", k)
                continue
            rng = np.random.default_rng(p.seed + 1000 + k)
            if p.anomaly_train_size is not None and len(keep) > p.anomaly_train_size:
                keep = np.sort(rng.choice(keep, p.anomaly_train_size, replace=False))
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(p.seed + 1000 + k)
                ae = fit_autoencoder(models.build(hparams), x[torch.from_numpy(keep)], hparams, p.anomaly_epochs,
                                     batch, p.seed + k)
            auc = class_aucs(per_image_mse(ae, xt), labels, [k])
            if k in auc:
                out[f"anomaly_auc_class_{k}"] = auc[k]
                aucs.append(auc[k])
        if aucs:
            out["anomaly_auc_mean"] = float(np.mean(aucs))
    if p.anomaly_champion:
        own = class_aucs(per_image_mse(model, xt), labels, p.held_out_classes)
        # no mean: over every class of equal size, one-vs-rest AUCs average exactly 0.5 (each
        # pair of classes counts once for each side), whatever the model
        out.update({f"anomaly_auc_champion_class_{k}": v for k, v in own.items()})
    return out


# ----------------------------------------------------------------------------- 3. the 2-D map
def embed_2d(codings: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(n, d) -> (n, 2): t-SNE (seeded, PCA init, perplexity capped for small n) or PCA."""
    if codings.shape[1] == 1:  # a 1-unit coding: its value and a zero column
        return np.hstack([codings, np.zeros_like(codings)])
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(codings)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, (len(codings) - 1) / 3))
    return TSNE(n_components=2, init="pca", learning_rate="auto", perplexity=perplexity,
                random_state=seed).fit_transform(codings)


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int, folds: int, seed: int) -> float:
    """Cross-validated (stratified, seeded folds) k-NN accuracy: how well `features` separate the
    classes. Fewer folds when a class has fewer points than folds; NaN when one has a single point."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    counts = np.bincount(labels)
    folds = min(folds, int(counts[counts > 0].min()))
    if folds < 2:
        return float("nan")
    k = max(1, min(k, len(labels) - -(-len(labels) // folds)))  # at most the smallest training fold
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(KNeighborsClassifier(n_neighbors=k), features, labels, cv=cv)))


def plot_map(path: Path, xy: np.ndarray, labels: np.ndarray, classes: Sequence[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    cmap = plt.get_cmap("tab10")
    for k in np.unique(labels):
        m = labels == k
        name = classes[k] if k < len(classes) else str(k)
        ax.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(int(k) % 10), label=f"{k} {name}", alpha=0.7)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=9)
    ax.legend(markerscale=3, fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def coding_map(model: nn.Module, test: tuple[torch.Tensor, torch.Tensor], p: UsesParams, plots_dir: Path,
               classes: Sequence[str]) -> dict[str, float]:
    """codings_2d.png + codings_2d.csv (x, y, label) of p.map_points test codings; map_knn_accuracy
    (in the 2-D map) beside codings_knn_accuracy (in the full coding space), same points and folds."""
    xt, yt = test
    n = min(p.map_points, len(xt))
    idx = np.sort(np.random.default_rng(p.seed).permutation(len(xt))[:n])
    codings = encode(model, xt[torch.from_numpy(idx)]).numpy().astype(np.float64)
    labels = yt.numpy()[idx]
    xy = embed_2d(codings, p.map_method, p.seed)
    plots_dir.mkdir(parents=True, exist_ok=True)
    with open(plots_dir / "codings_2d.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["x", "y", "label"])
        w.writerows([[f"{a:.6g}", f"{b:.6g}", int(c)] for (a, b), c in zip(xy, labels)])
    out = {"map_knn_accuracy": knn_accuracy(xy, labels, p.knn_k, p.knn_folds, p.seed),
           "codings_knn_accuracy": knn_accuracy(codings, labels, p.knn_k, p.knn_folds, p.seed),
           "map_points": float(n)}
    plot_map(plots_dir / "codings_2d.png", xy, labels, classes,
             f"{p.map_method} of {n} test codings ({codings.shape[1]}-D); {p.knn_k}-NN accuracy: map "
             f"{out['map_knn_accuracy']:.3f}, codings {out['codings_knn_accuracy']:.3f}")
    return out


# ----------------------------------------------------------------------------- the entry point
def autoencoder_uses(model: nn.Module, hparams: dict[str, Any], prepared_dir: Path, plots_dir: Path,
                     params: dict[str, Any] | None) -> dict[str, float]:
    """The evaluate stage's uses of a trained autoencoder: pretraining accuracies, anomaly AUCs and
    the 2-D coding map (codings_2d.png/.csv in plots_dir). `hparams` is the model dir's validated
    hparams with "model" (config.json's "hparams"); `params` the stage's `uses` mapping (missing
    keys: defaults; a bad key: ConfigError naming it). `model` is not modified."""
    p = uses_params(params)
    if not p.enabled:
        return {}
    if "model" not in hparams or not models.can_reconstruct(str(hparams["model"])):
        raise ValueError(f"autoencoder_uses: hparams must name an autoencoder model, got {hparams.get('model')!r}")
    prepared_dir, plots_dir = Path(prepared_dir), Path(plots_dir)
    info_path = prepared_dir / "info.json"
    info = read_json(info_path) if info_path.is_file() else {}
    classes = list(info.get("classes", [str(k) for k in range(N_CLASSES)]))
    train = image_dataset(prepared_dir, "train").tensors
    test = image_dataset(prepared_dir, "test").tensors
    metrics: dict[str, float] = {}
    parts = (("pretraining", lambda: pretraining(model, hparams, train, test, p)),
             ("anomaly", lambda: anomaly(model, hparams, train, test, p)),
             ("coding map", lambda: coding_map(model, test, p, plots_dir, classes)))
    for name, part in parts:
        t0 = time.perf_counter()
        got = part()
        metrics.update(got)
        # Times are logged, not returned: the metrics file is checked for reproducibility.
        log.info("uses: %s in %.1f s: %s", name, time.perf_counter() - t0,
                 ", ".join(f"{k} {v:.4f}" for k, v in got.items() if not k.startswith("anomaly_auc_champion_class")))
    return metrics
