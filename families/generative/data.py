"""Generative data: Fashion-MNIST ingest (IDX files, byte for byte) and prepare (splits + FID classifier).

Raw files under data/generative/: the four IDX .gz files of the Debian package
`dataset-fashion-mnist` (MIT, Zalando), copied unchanged so data.dvc pins the upstream bytes.

Prepared (one directory per task): uint8 arrays `{train,val,test}_x.npy` (n, 28, 28) and
`{train,val,test}_y.npy` (n,) labels, plus `info.json`. The book's split: train = the first
55,000 images of the training file, val = its last 5,000, test = the 10,000 test images;
`train_size`/`val_size`/`test_size` keep the first N of each (speed, tests). The
`fashion-mnist` (generator) task also trains the FID feature extractor here (classifier.py:
part of the evaluation protocol, so it is versioned with the splits; see fid.py).
"""

from __future__ import annotations

import gzip
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from components.config import ConfigError, validate_model
from components.data import DataError, SPLITS, write_json
from families.generative.classifier import CLASSIFIER_FILE, FEATURES, ClassifierParams, train_classifier

log = logging.getLogger(__name__)

SOURCE_DIR = Path("/usr/share/datasets/fashion-mnist")
APT_PACKAGE = "dataset-fashion-mnist"
FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049  # IDX: 0x0803 = unsigned byte, 3 dims; 0x0801 = 1 dim
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
GENERATOR_TASK = "fashion-mnist"  # judged on FID (vae, dcgan)
AUTOENCODER_TASK = "fashion-mnist-autoencoder"  # judged on reconstruction MSE (every model but dcgan)
TASKS = (GENERATOR_TASK, AUTOENCODER_TASK)


# ----------------------------------------------------------------------------- ingest
def ingest(raw_dir: Path, seed: int, source: Path = SOURCE_DIR) -> None:
    """Copy the four IDX files byte for byte (seed unused: nothing is random here)."""
    missing = [name for name in FILES.values() if not (source / name).is_file()]
    if missing:
        raise DataError(
            f"{source / missing[0]}: not found. Fashion-MNIST comes from the Debian package {APT_PACKAGE}: "
            f"run `sudo apt-get install {APT_PACKAGE}` (or `make apt` as root)"
        )
    raw_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES.values():
        shutil.copyfile(source / name, raw_dir / name)
        read_idx(raw_dir / name)  # fail now, naming the file, rather than in prepare
    log.info("generative raw data (Fashion-MNIST IDX) copied to %s", raw_dir)


def read_idx(path: Path) -> np.ndarray:
    """A gzipped IDX file -> uint8 array: images (n, rows, cols) at offset 16, labels (n,) at offset 8."""
    if not path.is_file():
        raise DataError(f"{path}: not found (run `make data`)")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip file ({e})") from None
    if len(raw) < 8:
        raise DataError(f"{path}: too short for an IDX header ({len(raw)} bytes)")
    magic, n = int.from_bytes(raw[0:4], "big"), int.from_bytes(raw[4:8], "big")
    if magic == IMAGES_MAGIC:
        if len(raw) < 16:
            raise DataError(f"{path}: too short for an IDX image header ({len(raw)} bytes)")
        rows, cols = int.from_bytes(raw[8:12], "big"), int.from_bytes(raw[12:16], "big")
        shape, offset = (n, rows, cols), 16
    elif magic == LABELS_MAGIC:
        shape, offset = (n,), 8
    else:
        raise DataError(f"{path}: bad IDX magic number {magic} (expected {IMAGES_MAGIC} for images, "
                        f"{LABELS_MAGIC} for labels)")
    expected = int(np.prod(shape))
    if len(raw) - offset != expected:
        raise DataError(f"{path}: header says {shape} = {expected} bytes of data, file has {len(raw) - offset}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(shape).copy()


def read_raw(raw_dir: Path) -> dict[str, np.ndarray]:
    """The four arrays, checked against each other (28x28 images, labels 0..9, matching counts)."""
    arrays = {key: read_idx(raw_dir / name) for key, name in FILES.items()}
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        img_path, lab_path = raw_dir / FILES[f"{part}_images"], raw_dir / FILES[f"{part}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{img_path}: expected 28x28 images, got shape {images.shape}")
        if labels.ndim != 1:
            raise DataError(f"{lab_path}: expected a label file (1-D), got shape {labels.shape}")
        if len(images) != len(labels):
            raise DataError(f"{lab_path}: {len(labels)} labels for {len(images)} images in {img_path.name}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{lab_path}: labels must be 0..9, found {int(labels.max())}")
    return arrays


# ----------------------------------------------------------------------------- prepare
class PrepareParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    holdout: int = Field(5000, gt=0, description="validation = the last N images of the training file")
    train_size: int | None = Field(None, gt=0, description="keep the first N training images (None: all)")
    val_size: int | None = Field(None, gt=0)
    test_size: int | None = Field(None, gt=0)
    classifier: ClassifierParams = ClassifierParams()


def _prepare_params(task: str, raw: dict[str, Any]) -> PrepareParams:
    if task not in TASKS:
        raise ConfigError(f"generative: unknown task {task!r} (known: {list(TASKS)})")
    return validate_model(PrepareParams, raw, f"params: families.generative.{task}.prepare")


def book_split(arrays: dict[str, np.ndarray], p: PrepareParams, task: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The book's split: val = the last `holdout` training images, train = the rest, test = t10k."""
    x, y = arrays["train_images"], arrays["train_labels"]
    if p.holdout >= len(x):
        raise ConfigError(f"params: families.generative.{task}.prepare.holdout: {p.holdout} >= {len(x)} training images")
    cut = len(x) - p.holdout
    return {"train": (x[:cut], y[:cut]), "val": (x[cut:], y[cut:]), "test": (arrays["test_images"], arrays["test_labels"])}


def subsample(splits: dict[str, tuple[np.ndarray, np.ndarray]], p: PrepareParams) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The first train_size / val_size / test_size of each split (None: all)."""
    sizes = {"train": p.train_size, "val": p.val_size, "test": p.test_size}
    return {s: (xs[: sizes[s]], ys[: sizes[s]]) if sizes[s] else (xs, ys) for s, (xs, ys) in splits.items()}


def prepare(task: str, raw_params: dict[str, Any], raw_dir: Path, out_dir: Path, seed: int) -> dict[str, Any]:
    """Raw IDX -> uint8 splits + info.json (+ the FID classifier for the generator task)."""
    p = _prepare_params(task, raw_params)
    full = book_split(read_raw(raw_dir), p, task)
    splits = subsample(full, p)
    for split in SPLITS:
        xs, ys = splits[split]
        np.save(out_dir / f"{split}_x.npy", xs, allow_pickle=False)
        np.save(out_dir / f"{split}_y.npy", ys, allow_pickle=False)
    info: dict[str, Any] = {
        "task": task,
        "image_shape": [1, 28, 28],
        "classes": list(CLASSES),
        "counts": {s: int(len(splits[s][0])) for s in SPLITS},
        "split": f"val = the last {p.holdout} images of the training file, train = the rest, test = t10k; "
                 "then the first train_size/val_size/test_size of each",
    }
    if task == GENERATOR_TASK:
        # The classifier sees the whole book train split (its own train_size), not the speed subsample:
        # the evaluation protocol must not change when a profile trains the generators on less data.
        (x, y), (xt, yt) = full["train"], splits["test"]
        state, stats = train_classifier(x, y, xt, yt, p.classifier, seed)
        torch.save(state, out_dir / CLASSIFIER_FILE)
        info["fid_features"] = FEATURES
        info["fid_classifier"] = {"file": CLASSIFIER_FILE, **p.classifier.model_dump(), **stats}
    write_json(out_dir / "info.json", info)
    return info


def load_split(prepared_dir: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), labels uint8 (n,)) of one prepared split, checked."""
    xp, yp = Path(prepared_dir) / f"{split}_x.npy", Path(prepared_dir) / f"{split}_y.npy"
    for path in (xp, yp):
        if not path.is_file():
            raise DataError(f"{path}: split not found (run the prepare stage first)")
    x, y = np.load(xp, allow_pickle=False), np.load(yp, allow_pickle=False)
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{xp}: expected uint8 images of shape (n, 28, 28), got {x.dtype} {x.shape}")
    if y.shape != (len(x),):
        raise DataError(f"{yp}: expected {len(x)} labels, got shape {y.shape}")
    if len(x) == 0:
        raise DataError(f"{xp}: split is empty")
    return x, y
