"""What autoencoders are for (families/generative/uses.py) on small synthetic data: pretraining
accuracies, anomaly AUC, the 2-D coding map, params validation, determinism, every zoo autoencoder.

The data: 28x28 images of one shape at a random place, three classes of (almost) the same pixel
count, so no class is told apart by brightness alone: 0 a horizontal bar (4x20), 1 a vertical bar
(20x4), 2 a 9x9 square, each within 3 pixels of the centre. An autoencoder that has seen only bars
reconstructs squares badly.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import ConfigError
from components.data import write_json
from families.generative import FAMILY, models, uses

SHAPES = {0: (4, 20), 1: (20, 4), 2: (9, 9)}
JITTER = 3  # pixels each way around the centre
NAMES = ["bar-h", "bar-v", "square"]
AE = "fashion-mnist-autoencoder"
HP = {"model": "stacked", "hidden": 32, "codings": 8, "lr": 3e-3, "batch_size": 32}
# Small everything: each test well under 10 s on one core.
FAST = {"n_labels": 60, "head_epochs": 15, "finetune_epochs": 5, "held_out_classes": [2], "anomaly_epochs": 15,
        "anomaly_train_size": None, "anomaly_champion": True, "map_points": 90, "map_method": "pca", "seed": 3}


def shapes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n uint8 images (n, 28, 28), classes balanced, each one shape near the centre + faint noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    rng.shuffle(y)
    x = rng.integers(0, 30, size=(n, 28, 28))
    for i, k in enumerate(y):
        h, w = SHAPES[int(k)]
        r, c = (28 - h) // 2 + rng.integers(-JITTER, JITTER + 1), (28 - w) // 2 + rng.integers(-JITTER, JITTER + 1)
        x[i, r:r + h, c:c + w] = 230
    return x.astype(np.uint8), y.astype(np.uint8)


def write_prepared(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, (n, seed) in {"train": (300, 0), "val": (60, 1), "test": (150, 2)}.items():
        x, y = shapes(n, seed)
        np.save(directory / f"{split}_x.npy", x)
        np.save(directory / f"{split}_y.npy", y)
    write_json(directory / "info.json", {"classes": NAMES, "task": AE})
    return directory


def dataset(prepared: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    from families.generative.train import image_dataset

    return image_dataset(prepared, split).tensors


def trained(hp: dict, prepared: Path, epochs: int = 15) -> torch.nn.Module:
    """The 'evaluated model': an autoencoder trained on every class (the family's loss)."""
    torch.manual_seed(0)
    model = models.build(hp)
    return uses.fit_autoencoder(model, dataset(prepared, "train")[0], hp, epochs, int(hp["batch_size"]), seed=0)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prepared(tmp_path_factory.mktemp("prepared"))


@pytest.fixture(scope="module")
def hp() -> dict:
    return FAMILY.validate_hparams(HP, AE)


@pytest.fixture(scope="module")
def model(hp: dict, prepared: Path) -> torch.nn.Module:
    return trained(hp, prepared)


def test_pretraining_accuracies_exist_and_beat_chance(model, hp, prepared) -> None:
    p = uses.uses_params(FAST)
    out = uses.pretraining(model, hp, dataset(prepared, "train"), dataset(prepared, "test"), p)
    accs = {k: out[f"pretrain_acc_{k}"] for k in ("scratch", "frozen", "finetuned")}
    assert all(0.0 <= a <= 1.0 for a in accs.values()), accs
    # three balanced classes: chance is 1/3
    assert accs["frozen"] > 0.6 and accs["finetuned"] > 0.6, accs
    assert out["pretrain_labels"] == 60


def test_the_label_sample_is_stratified_and_seeded() -> None:
    y = np.repeat(np.arange(10), [100, 100, 100, 100, 100, 50, 50, 50, 50, 300])
    idx = uses.stratified_sample(y, 100, seed=1)
    assert len(idx) == 100 and len(set(idx)) == 100
    assert np.bincount(y[idx], minlength=10).tolist() == [10, 10, 10, 10, 10, 5, 5, 5, 5, 30]
    assert idx.tolist() == uses.stratified_sample(y, 100, seed=1).tolist()
    assert idx.tolist() != uses.stratified_sample(y, 100, seed=2).tolist()


def test_frozen_keeps_the_encoder_fine_tuning_moves_it_the_model_is_untouched(model, hp, prepared) -> None:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    clf = uses.CodingClassifier(copy.deepcopy(model), uses.coding_size(model))
    uses.set_encoder_trainable(clf, False)
    x, y = dataset(prepared, "train")
    head = clf.head.weight.clone()
    uses.fit_classifier(clf, x[:64], y[:64], 2, 1e-2, 32, seed=0)
    assert all(torch.equal(clf.autoencoder.state_dict()[k], before[k]) for k in before)
    assert not torch.equal(clf.head.weight, head)
    uses.set_encoder_trainable(clf, True)
    uses.fit_classifier(clf, x[:64], y[:64], 1, 1e-3, 32, seed=0)
    assert not torch.equal(clf.autoencoder.encoder[1].weight, before["encoder.1.weight"])
    uses.pretraining(model, hp, (x, y), dataset(prepared, "test"), uses.uses_params(FAST))
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)


def test_a_class_that_looks_different_is_flagged(model, hp, prepared) -> None:
    p = uses.uses_params(FAST)
    out = uses.anomaly(model, hp, dataset(prepared, "train"), dataset(prepared, "test"), p)
    # an AE that saw only bars scores the squares higher than the bars, and flags them better than
    # the evaluated model, which saw squares too (measured: 1.0 vs 0.62)
    assert out["anomaly_auc_class_2"] > 0.75, out
    assert out["anomaly_auc_class_2"] > out["anomaly_auc_champion_class_2"] + 0.2, out
    assert out["anomaly_auc_mean"] == out["anomaly_auc_class_2"]
    assert 0.0 <= out["anomaly_auc_champion_class_2"] <= 1.0
    assert "anomaly_auc_class_0" not in out  # only the held-out classes asked for


def test_class_aucs_direction_and_skips_absent_classes() -> None:
    labels = np.array([0, 0, 1, 1, 1])
    scores = np.array([5.0, 4.0, 1.0, 2.0, 3.0])  # class 0 scores highest: AUC 1
    assert uses.class_aucs(scores, labels, [0, 1, 7]) == {0: 1.0, 1: 0.0}


def test_the_map_writes_png_and_csv(model, prepared, tmp_path: Path) -> None:
    for method in ("pca", "tsne"):
        plots = tmp_path / method
        p = uses.uses_params({**FAST, "map_method": method})
        out = uses.coding_map(model, dataset(prepared, "test"), p, plots, NAMES)
        assert (plots / "codings_2d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        with open(plots / "codings_2d.csv") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["x", "y", "label"] and len(rows) == 1 + 90
        assert {int(r[2]) for r in rows[1:]} == {0, 1, 2} and all(np.isfinite(float(r[0])) for r in rows[1:])
        assert 0.0 <= out["map_knn_accuracy"] <= 1.0 and 0.0 <= out["codings_knn_accuracy"] <= 1.0
        assert out["map_points"] == 90


def test_knn_accuracy_separates_separable_points() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 30)
    apart = rng.normal(size=(90, 2)) * 0.1 + labels[:, None] * 5.0
    mixed = rng.normal(size=(90, 2))
    assert uses.knn_accuracy(apart, labels, 5, 5, seed=0) == 1.0
    assert uses.knn_accuracy(mixed, labels, 5, 5, seed=0) < 0.6


@pytest.mark.parametrize("raw, key", [
    ({"n_labels": 0}, "n_labels"),
    ({"bogus": 1}, "bogus"),
    ({"held_out_classes": [12]}, "held_out_classes"),
    ({"map_method": "umap"}, "map_method"),
    ({"anomaly_epochs": -1}, "anomaly_epochs"),
])
def test_bad_params_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"evaluate\.uses: {key}"):
        uses.uses_params(raw)


def test_missing_keys_take_the_defaults() -> None:
    p = uses.uses_params(None)
    assert (p.n_labels, p.held_out_classes, p.map_method) == (500, list(range(10)), "tsne")
    assert uses.uses_params({"seed": 7}).n_labels == 500


def test_the_entry_point_is_deterministic(model, hp, prepared, tmp_path: Path) -> None:
    first = uses.autoencoder_uses(model, hp, prepared, tmp_path / "a", FAST)
    torch.manual_seed(123)  # the caller's RNG state does not matter
    second = uses.autoencoder_uses(model, hp, prepared, tmp_path / "b", FAST)
    assert first == second
    expected = {"pretrain_acc_scratch", "pretrain_acc_frozen", "pretrain_acc_finetuned", "anomaly_auc_class_2",
                "anomaly_auc_mean", "map_knn_accuracy", "codings_knn_accuracy"}
    assert expected <= set(first) and all(np.isfinite(v) for v in first.values())
    assert (tmp_path / "a" / "codings_2d.csv").read_bytes() == (tmp_path / "b" / "codings_2d.csv").read_bytes()
    third = uses.autoencoder_uses(model, hp, prepared, tmp_path / "c", {**FAST, "seed": 4})
    assert third != first
    assert uses.autoencoder_uses(model, hp, prepared, tmp_path / "d", {"enabled": False}) == {}


@pytest.mark.parametrize("name", [m for m in models.MODELS if models.can_reconstruct(m)])
def test_every_zoo_autoencoder_has_uses(name: str, prepared: Path, tmp_path: Path) -> None:
    hp = FAMILY.validate_hparams({"model": name, "codings": 8, "batch_size": 32}, AE)
    model = trained(hp, prepared, epochs=1)
    assert uses.encode(model, dataset(prepared, "test")[0][:5]).shape == (5, 8)  # conv pooled, the VAE's mu
    tiny = {"n_labels": 30, "head_epochs": 1, "finetune_epochs": 1, "held_out_classes": [2], "anomaly_epochs": 1,
            "anomaly_train_size": 60, "map_points": 30, "map_method": "pca"}
    out = uses.autoencoder_uses(model, hp, prepared, tmp_path, tiny)
    assert all(0.0 <= out[k] <= 1.0 for k in ("pretrain_acc_scratch", "pretrain_acc_frozen",
                                               "pretrain_acc_finetuned", "anomaly_auc_class_2", "map_knn_accuracy"))
    assert (tmp_path / "codings_2d.png").is_file()


def test_a_model_that_cannot_reconstruct_is_refused(model, prepared, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must name an autoencoder"):
        uses.autoencoder_uses(model, {"model": "dcgan"}, prepared, tmp_path, FAST)
