"""Generative data: IDX parsing (errors name the file), ingest, the book's split, the FID classifier
prepare trains.

The fixture writes sklearn's digits (upscaled to 28x28) as the four IDX files, so these tests
need neither the Debian package nor more than a second of CPU.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from components.config import ConfigError
from components.data import DataError, read_json, write_json
from families.generative import classifier, data

TEST_COUNT = 300


def idx_bytes(arr: np.ndarray) -> bytes:
    magic = data.IMAGES_MAGIC if arr.ndim == 3 else data.LABELS_MAGIC
    header = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_digits_idx(directory: Path) -> Path:
    """sklearn digits as Fashion-MNIST-shaped IDX files: 1,497 'training' + 300 'test' images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.kron(digits.images, np.ones((3, 3))) * 255 / 16  # 8x8 -> 24x24, 0..255
    images = np.pad(images, ((0, 0), (2, 2), (2, 2))).round().astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    parts = {"train": slice(0, -TEST_COUNT), "test": slice(-TEST_COUNT, None)}
    for part, sl in parts.items():
        for kind, arr in (("images", images[sl]), ("labels", labels[sl])):
            (directory / data.FILES[f"{part}_{kind}"]).write_bytes(gzip.compress(idx_bytes(arr), mtime=0))
    return directory


TINY_PREPARE = {"holdout": 200, "train_size": 400, "classifier": {"epochs": 2, "train_size": 1000, "batch_size": 64}}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = write_digits_idx(tmp_path_factory.mktemp("source"))
    raw_dir = tmp_path_factory.mktemp("raw")
    data.ingest(raw_dir, 42, source=source)
    return raw_dir


def test_ingest_copies_byte_for_byte(raw: Path, tmp_path: Path) -> None:
    source = write_digits_idx(tmp_path / "src")
    for name in data.FILES.values():
        assert (raw / name).read_bytes() == (source / name).read_bytes()


def test_ingest_without_the_package_names_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"dataset-fashion-mnist.*apt-get install dataset-fashion-mnist"):
        data.ingest(tmp_path / "raw", 42, source=tmp_path / "nowhere")


def test_read_idx_parses_images_and_labels(raw: Path) -> None:
    images = data.read_idx(raw / data.FILES["train_images"])
    labels = data.read_idx(raw / data.FILES["train_labels"])
    assert images.shape == (1797 - TEST_COUNT, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (1797 - TEST_COUNT,) and set(np.unique(labels)) == set(range(10))


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c" + bytes(10), "header says"),
        (b"\x00\x00\x09\x99\x00\x00\x00\x01\x00", "bad IDX magic"),
        (b"\x00\x00", "too short"),
    ],
)
def test_bad_idx_files_are_named(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(content)
    with pytest.raises(DataError, match=message) as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


def test_not_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "plain.gz"
    path.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a readable gzip") as e:
        data.read_idx(path)
    assert str(path) in str(e.value)


def test_label_count_mismatch_names_the_label_file(raw: Path, tmp_path: Path) -> None:
    bad = tmp_path / "raw"
    bad.mkdir()
    for name in data.FILES.values():
        (bad / name).write_bytes((raw / name).read_bytes())
    with gzip.open(bad / data.FILES["test_labels"], "wb") as f:
        f.write(idx_bytes(np.zeros(5, np.uint8)))
    with pytest.raises(DataError, match="5 labels for 300 images") as e:
        data.read_raw(bad)
    assert data.FILES["test_labels"] in str(e.value)


def test_prepare_autoencoder_splits_like_the_book(raw: Path, tmp_path: Path) -> None:
    info = data.prepare("fashion-mnist-autoencoder", {"holdout": 200}, raw, tmp_path, 42)
    assert info["counts"] == {"train": 1297, "val": 200, "test": TEST_COUNT}
    assert read_json(tmp_path / "info.json")["task"] == "fashion-mnist-autoencoder"
    full = data.read_idx(raw / data.FILES["train_images"])
    val_x, _ = data.load_split(tmp_path, "val")
    assert np.array_equal(val_x, full[-200:])  # val = the last images of the training file
    assert not (tmp_path / classifier.CLASSIFIER_FILE).exists()
    assert sorted(p.name for p in tmp_path.glob("test*")) == ["test_x.npy", "test_y.npy"]


def test_prepare_generator_trains_the_fid_classifier(raw: Path, tmp_path: Path) -> None:
    info = data.prepare("fashion-mnist", TINY_PREPARE, raw, tmp_path, 42)
    assert info["counts"]["train"] == 400
    assert info["fid_features"] == classifier.FEATURES
    # digits are easy: a seeded CNN on 1,000 of them must beat chance by far
    assert info["fid_classifier"]["test_accuracy"] > 0.6
    assert info["fid_classifier"]["train_images"] == 1000  # the whole book train split, not the 400 subsample
    assert (tmp_path / classifier.CLASSIFIER_FILE).is_file()
    assert classifier.load_classifier(tmp_path).head.out_features == 10


def test_bad_prepare_params_name_the_key(raw: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"families.generative.fashion-mnist.prepare: train_sise"):
        data.prepare("fashion-mnist", {"train_sise": 10}, raw, tmp_path, 42)
    with pytest.raises(ConfigError, match=r"prepare.holdout: 5000 >= 1497"):
        data.prepare("fashion-mnist-autoencoder", {}, raw, tmp_path, 42)
    with pytest.raises(ConfigError, match="unknown task"):
        data.prepare("mnist", {}, raw, tmp_path, 42)


def test_load_split_checks_the_arrays(tmp_path: Path) -> None:
    np.save(tmp_path / "val_x.npy", np.zeros((3, 28, 27), np.uint8))
    np.save(tmp_path / "val_y.npy", np.zeros(3, np.uint8))
    with pytest.raises(DataError, match=r"val_x.npy: expected uint8 images of shape \(n, 28, 28\)"):
        data.load_split(tmp_path, "val")
    with pytest.raises(DataError, match="train_x.npy: split not found"):
        data.load_split(tmp_path, "train")


def test_test_set_fingerprint_reads_the_declared_keys_not_the_timings(raw: Path, tmp_path: Path) -> None:
    from families.generative import FAMILY

    info = data.prepare("fashion-mnist", TINY_PREPARE, raw, tmp_path, 42)
    assert set(FAMILY.test_set_keys) <= set(info)
    before = FAMILY.test_set_fingerprint(tmp_path)
    info["fid_classifier"]["train_s"] += 1.0  # a timing: says nothing about the test set
    info["counts"]["train"] += 1
    write_json(tmp_path / "info.json", info)
    assert FAMILY.test_set_fingerprint(tmp_path) == before
    info["fid_features"] = "another-cnn"  # a test FID on other features is another measurement
    write_json(tmp_path / "info.json", info)
    assert FAMILY.test_set_fingerprint(tmp_path) != before
