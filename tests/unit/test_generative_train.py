"""The generative loops in this process (the supervised one and the DCGAN's) and the evaluate stage, on digits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from components.config import ConfigError
from components.data import read_json
from components.session import TrainingDiverged
from families.generative import FAMILY, data, evaluate, train as gen_train
from quartet import api
from tests.unit.test_generative_data import TINY_PREPARE, write_digits_idx

GEN, AE = "fashion-mnist", "fashion-mnist-autoencoder"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    raw = tmp_path_factory.mktemp("raw")
    data.ingest(raw, 42, source=write_digits_idx(tmp_path_factory.mktemp("src")))
    out = {}
    for t in (GEN, AE):
        out[t] = tmp_path_factory.mktemp(t)
        data.prepare(t, TINY_PREPARE, raw, out[t], 42)
    return out


def train(prepared: dict[str, Path], task_name: str, out_dir: Path | None, epochs: int = 3, **hp) -> list[dict]:
    hparams = {"batch_size": 32, "fid_samples": 100, **hp}
    return api.train_plain("generative", task_name, hparams, prepared[task_name], epochs, out_dir=out_dir).history


@pytest.fixture(scope="module")
def ae_dir(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ae") / "model"
    train(prepared, AE, out, model="stacked")
    return out


@pytest.fixture(scope="module")
def gan_dir(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gan") / "model"
    history = train(prepared, GEN, out, epochs=2, model="dcgan", codings=16)
    assert [h["epoch"] for h in history] == [0, 1] and all(np.isfinite(h["val_fid"]) for h in history)
    assert history[-1]["best_val_fid"] == min(h["val_fid"] for h in history)
    assert all(np.isfinite(h["d_loss"]) for h in history)
    return out


def test_autoencoder_learns_and_is_deterministic(prepared, ae_dir: Path) -> None:
    first = read_json(ae_dir / "config.json")["history"]
    second = train(prepared, AE, None, model="stacked")
    assert [h["val_mse"] for h in first] == [h["val_mse"] for h in second]
    assert first[-1]["train_loss"] < first[0]["train_loss"]
    assert first[-1]["val_mse"] < first[0]["val_mse"]


def test_the_loop_writes_a_model_dir_of_the_best_epoch(ae_dir: Path) -> None:
    config = read_json(ae_dir / "config.json")
    assert (config["family"], config["task"], config["model"]) == ("generative", AE, "stacked")
    assert config["hparams"]["codings"] == 30 and "fid_samples" not in config["hparams"]  # only the model's own keys
    model, _ = evaluate.load_model(ae_dir)
    assert model.encoder[1].out_features == 100


def test_dcgan_is_deterministic(prepared, gan_dir: Path) -> None:
    first = read_json(gan_dir / "config.json")["history"]
    again = train(prepared, GEN, None, epochs=2, model="dcgan", codings=16)
    assert [(h["val_fid"], h["d_loss"]) for h in first] == [(h["val_fid"], h["d_loss"]) for h in again]


def test_vae_reports_fid_in_the_generator_task(prepared, tmp_path: Path) -> None:
    history = train(prepared, GEN, tmp_path / "vae", epochs=2, model="vae")
    assert all(np.isfinite(h["val_fid"]) and h["val_loss"] >= h["val_mse"] * 0.5 for h in history)
    assert history[-1]["best_val_fid"] == min(h["val_fid"] for h in history)
    assert (tmp_path / "vae" / "weights.pt").is_file()


def test_the_fid_reference_leaves_the_vae_s_training_unchanged(prepared) -> None:
    """Building the FID reference (a classifier) must not move the seeded RNG the VAE is built and
    trained from: the same VAE learns the same in both tasks (their splits are the same here)."""
    gen = train(prepared, GEN, None, epochs=1, model="vae")
    ae = train(prepared, AE, None, epochs=1, model="vae")
    assert (gen[0]["train_loss"], gen[0]["val_mse"]) == (ae[0]["train_loss"], ae[0]["val_mse"])
    assert "val_fid" in gen[0] and "val_fid" not in ae[0]


def test_wrong_model_for_the_task_is_a_config_error(prepared) -> None:
    with pytest.raises(ConfigError, match="'stacked' cannot be trained for task 'fashion-mnist'"):
        train(prepared, GEN, None, epochs=1, model="stacked")
    with pytest.raises(ConfigError, match="'dcgan' cannot be trained for task 'fashion-mnist-autoencoder'"):
        train(prepared, AE, None, epochs=1, model="dcgan")


def test_a_dcgan_whose_fid_is_never_finite_diverged(prepared, monkeypatch) -> None:
    monkeypatch.setattr(gen_train, "generated_fid", lambda *a, **k: float("nan"))
    with pytest.raises(TrainingDiverged, match="val_fid is nan after epoch 0"):
        train(prepared, GEN, None, epochs=2, model="dcgan", codings=16)


def test_cosine_schedule_decays_the_rate_and_changes_training(prepared, ae_dir: Path) -> None:
    constant = read_json(ae_dir / "config.json")["history"]
    cosine = train(prepared, AE, None, model="stacked", lr_schedule="cosine")
    assert [h["lr"] for h in constant] == [1e-3] * 3
    assert [h["lr"] for h in cosine] == pytest.approx([1e-3, 0.75e-3, 0.25e-3])
    assert cosine[0]["val_mse"] == constant[0]["val_mse"]  # same first epoch, then the rates part
    assert cosine[-1]["val_mse"] != constant[-1]["val_mse"]


def test_cosine_schedule_drives_both_dcgan_optimisers(prepared) -> None:
    history = train(prepared, GEN, None, epochs=2, model="dcgan", codings=16, lr_schedule="cosine", lr=2e-3)
    assert [h["lr"] for h in history] == pytest.approx([2e-3, 1e-3])


# ----------------------------------------------------------------------------- evaluate
def test_evaluate_autoencoder(prepared, ae_dir: Path, tmp_path: Path) -> None:
    metrics = FAMILY.evaluate(ae_dir, prepared[AE], tmp_path / "plots", {})
    history = read_json(ae_dir / "config.json")["history"]
    assert metrics["val_mse"] == pytest.approx(min(h["val_mse"] for h in history), rel=1e-5)  # best epoch kept
    assert np.isfinite(metrics["test_mse"]) and "test_mse_class_0" in metrics
    assert "val_fid" not in metrics
    assert Image.open(tmp_path / "plots" / "reconstructions.png").size[0] > 8 * 28


def test_evaluate_generator_anchors_and_plots(prepared, gan_dir: Path, tmp_path: Path) -> None:
    metrics = FAMILY.evaluate(gan_dir, prepared[GEN], tmp_path / "plots", {"fid_samples": 200})
    for key in ("val_fid", "test_fid", "val_fid_real_heldout", "val_fid_noise", "classifier_test_accuracy",
                "gen_class_entropy"):
        assert np.isfinite(metrics[key]), key
    assert "val_mse" not in metrics  # a DCGAN does not reconstruct
    assert metrics["val_fid_noise"] > 5 * metrics["val_fid_real_heldout"]
    assert sum(metrics[f"gen_class_frac_{k}"] for k in range(10)) == pytest.approx(1.0)
    for png in ("samples.png", "interpolation.png", "gen_class_histogram.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 500


# ----------------------------------------------------------------------------- ddpm, conditional DCGAN
TINY_DDPM = {"model": "ddpm", "channels": 8, "timesteps": 20, "sample_steps": 4, "fid_samples": 32, "lr": 2e-3}


@pytest.fixture(scope="module")
def ddpm_dir(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddpm") / "model"
    history = train(prepared, GEN, out, epochs=2, **TINY_DDPM)
    assert [h["epoch"] for h in history] == [0, 1]
    assert all(np.isfinite(h["val_fid"]) and np.isfinite(h["val_loss"]) for h in history)
    assert history[-1]["best_val_fid"] == min(h["val_fid"] for h in history)
    return out


def test_ddpm_trains_in_the_supervised_loop_deterministically(prepared, ddpm_dir: Path) -> None:
    first = read_json(ddpm_dir / "config.json")["history"]
    assert first[-1]["train_loss"] < first[0]["train_loss"] and first[0]["train_loss"] < 1.5  # eps-MSE from ~1
    again = train(prepared, GEN, None, epochs=2, **TINY_DDPM)
    assert [(h["train_loss"], h["val_fid"]) for h in first] == [(h["train_loss"], h["val_fid"]) for h in again]


def test_evaluate_ddpm_reports_steps_time_confidence_and_cond_accuracy(prepared, ddpm_dir: Path, tmp_path: Path) -> None:
    params = {"fid_samples": 64, "cond_samples_per_class": 3, "sample_steps": 2}
    metrics = FAMILY.evaluate(ddpm_dir, prepared[GEN], tmp_path / "plots", params)
    assert metrics["sample_steps"] == 2 and metrics["sample_s_per_image"] > 0
    assert 0.1 <= metrics["gen_confidence_mean"] <= 1.0  # a max softmax over 10 classes
    per_class = [metrics[f"cond_accuracy_class_{k}"] for k in range(10)]
    assert all(any(v == pytest.approx(f) for f in (0, 1 / 3, 2 / 3, 1)) for v in per_class)  # 3 images a class
    assert metrics["cond_accuracy"] == pytest.approx(np.mean(per_class))  # equal images per class
    assert Image.open(tmp_path / "plots" / "cond_samples.png").size == ((3 * 29 + 1) * 2, (10 * 29 + 1) * 2)
    default = FAMILY.evaluate(ddpm_dir, prepared[GEN], tmp_path / "plots2", {"fid_samples": 64, "cond_samples_per_class": 1})
    assert default["sample_steps"] == 4 and default["val_fid"] != metrics["val_fid"]  # the model's own steps


def test_conditional_dcgan_trains_and_honours_labels(prepared, tmp_path: Path) -> None:
    import torch

    from families.generative import models

    history = train(prepared, GEN, tmp_path / "cgan", epochs=1, model="dcgan", codings=16, conditional=True)
    assert np.isfinite(history[0]["val_fid"]) and np.isfinite(history[0]["d_loss"])
    model, config = evaluate.load_model(tmp_path / "cgan")
    assert config["hparams"]["conditional"] is True and models.is_conditional(model)
    assert model.discriminator.net[0].in_channels == 2  # the label map is D's second channel
    g = torch.Generator
    a = models.sample(model, 4, g().manual_seed(0), labels=torch.tensor([3] * 4))
    b = models.sample(model, 4, g().manual_seed(0), labels=torch.tensor([7] * 4))
    assert not torch.equal(a, b) and torch.equal(a, models.sample(model, 4, g().manual_seed(0), labels=torch.tensor([3] * 4)))
    metrics = FAMILY.evaluate(tmp_path / "cgan", prepared[GEN], tmp_path / "plots", {"fid_samples": 64,
                                                                                   "cond_samples_per_class": 2})
    assert 0 <= metrics["cond_accuracy"] <= 1 and "sample_steps" not in metrics
    plain = FAMILY.evaluate(tmp_path / "cgan", prepared[GEN], tmp_path / "p2", {"fid_samples": 64, "cond_samples_per_class": 2})
    assert plain["val_fid"] == metrics["val_fid"]  # seeded: unlabelled labels come from the seed
