"""The generative loops (plain launcher, no Ray), evaluation and the Predictor's 422s, on digits."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from components.config import ConfigError
from components.data import read_json
from components.family import RequestError
from components.train import loop_config
from families.generative import FAMILY, data, models, task
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


def train(prepared: dict[str, Path], task_name: str, out_dir: Path, epochs: int = 3, **hp) -> list[dict]:
    hparams = models.validate_hparams({"batch_size": 32, "fid_samples": 100, **hp})
    info = read_json(prepared[task_name] / "info.json")
    config = loop_config("generative", task_name, hparams, info, prepared[task_name], epochs, 42, "plain",
                         out_dir=str(out_dir))
    return task.train_loop(config)


@pytest.fixture(scope="module")
def ae_dir(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ae") / "model"
    train(prepared, AE, out, model="stacked")
    return out


@pytest.fixture(scope="module")
def gan_dir(prepared, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gan") / "model"
    history = train(prepared, GEN, out, epochs=1, model="dcgan", codings=16)
    assert len(history) == 1 and np.isfinite(history[0]["val_fid"])
    assert history[0]["best_val_fid"] == history[0]["val_fid"]
    return out


def test_autoencoder_learns_and_is_deterministic(prepared, ae_dir: Path, tmp_path: Path) -> None:
    first = read_json(ae_dir / "config.json")["history"]
    second = train(prepared, AE, tmp_path / "again", model="stacked")
    assert [h["val_mse"] for h in first] == [h["val_mse"] for h in second]
    assert first[-1]["train_loss"] < first[0]["train_loss"]
    assert first[-1]["val_mse"] < first[0]["val_mse"]


def test_evaluate_autoencoder(prepared, ae_dir: Path, tmp_path: Path) -> None:
    metrics = task.evaluate(ae_dir, prepared[AE], tmp_path / "plots", {})
    history = read_json(ae_dir / "config.json")["history"]
    assert metrics["val_mse"] == pytest.approx(min(h["val_mse"] for h in history), rel=1e-5)  # best epoch kept
    assert np.isfinite(metrics["test_mse"]) and "test_mse_class_0" in metrics
    assert Image.open(tmp_path / "plots" / "reconstructions.png").size[0] > 8 * 28


def test_vae_reports_fid_in_the_generator_task(prepared, tmp_path: Path) -> None:
    history = train(prepared, GEN, tmp_path / "vae", epochs=2, model="vae")
    assert all(np.isfinite(h["val_fid"]) and h["val_loss"] >= h["val_mse"] * 0.5 for h in history)
    assert history[-1]["best_val_fid"] == min(h["val_fid"] for h in history)
    assert (tmp_path / "vae" / "weights.pt").is_file()


def test_wrong_model_for_the_task_is_a_config_error(prepared, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'stacked' cannot generate"):
        train(prepared, GEN, tmp_path / "x", epochs=1, model="stacked")
    with pytest.raises(ConfigError, match="'dcgan' cannot reconstruct"):
        train(prepared, AE, tmp_path / "y", epochs=1, model="dcgan")


def test_evaluate_generator_anchors_and_plots(prepared, gan_dir: Path, tmp_path: Path) -> None:
    metrics = task.evaluate(gan_dir, prepared[GEN], tmp_path / "plots", {"fid_samples": 200})
    for key in ("val_fid", "test_fid", "val_fid_real_heldout", "val_fid_noise", "classifier_test_accuracy",
                "gen_class_entropy"):
        assert np.isfinite(metrics[key]), key
    assert metrics["val_fid_noise"] > 5 * metrics["val_fid_real_heldout"]
    assert sum(metrics[f"gen_class_frac_{k}"] for k in range(10)) == pytest.approx(1.0)
    for png in ("samples.png", "interpolation.png", "gen_class_histogram.png"):
        assert (tmp_path / "plots" / png).stat().st_size > 500


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def test_sampling_same_seed_same_images(gan_dir: Path) -> None:
    predictor = task.Predictor(gan_dir, model_version="3")
    assert predictor.request_model is task.SampleRequest
    example = predictor.request_model.model_validate(task.input_example(gan_dir))
    reqs = [task.SampleRequest(task=GEN, n=3, seed=5), example, task.SampleRequest(task=GEN, n=3, seed=5)]
    out = predictor.predict_batch(reqs)
    assert out[0].images == out[2].images and out[0].model_version == "3"
    assert len(out[1].images) == example.n
    assert predictor.predict(task.SampleRequest(task=GEN, n=3, seed=6)).images != out[0].images
    assert decode(out[0].images[0]).shape == (28, 28)
    with pytest.raises(RequestError, match="cannot reconstruct"):
        predictor.reconstruct_batch([task.ReconstructRequest(task=GEN, images=[np.zeros((28, 28)).tolist()])])


def png_b64(arr: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), mode="L").save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def test_reconstruct_arrays_and_pngs(ae_dir: Path) -> None:
    predictor = task.Predictor(ae_dir)
    assert predictor.request_model is task.ReconstructRequest
    example = task.input_example(ae_dir)
    img = np.asarray(example["images"][0])
    req = task.ReconstructRequest(task=AE, images=[img.tolist(), png_b64(np.round(img * 255))])
    (resp,) = predictor.predict_batch([req])
    assert np.shape(resp.reconstructions) == (2, 28, 28)
    assert resp.anomaly_scores[0] == pytest.approx(resp.anomaly_scores[1], rel=0.05)  # same image, two encodings
    alone = predictor.predict(task.ReconstructRequest(task=AE, images=[img.tolist()]))
    assert alone.anomaly_scores[0] == pytest.approx(resp.anomaly_scores[0], rel=1e-5)
    with pytest.raises(RequestError, match="cannot sample"):
        predictor.sample_batch([task.SampleRequest(task=AE, n=1, seed=0)])


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((27, 28)).tolist(), "expected 28 rows of 28 values"),
        ([[0.0] * 28] * 27 + [[0.0] * 27], "expected 28 rows of 28 values"),
        ((np.ones((28, 28)) * 1.5).tolist(), r"must lie in \[0, 1\]"),
        ([[float("nan")] * 28] * 28, "finite"),
        ("not base64!", "not valid base64"),
        (base64.b64encode(b"hello world!").decode(), "not a readable PNG"),
        (png_b64(np.zeros((20, 20))), "PNG is 20x20"),
        (png_b64(np.zeros((28, 28)), "JPEG"), "expected a PNG"),
    ],
)
def test_bad_images_are_request_errors(ae_dir: Path, image, message: str) -> None:
    predictor = task.Predictor(ae_dir)
    with pytest.raises(RequestError, match=message):
        predictor.predict(task.ReconstructRequest(task=AE, images=[np.zeros((28, 28)).tolist(), image]))


def test_request_limits_are_validation_errors() -> None:
    with pytest.raises(ValidationError):
        task.SampleRequest(task=GEN, n=65, seed=0)
    with pytest.raises(ValidationError):
        task.SampleRequest(task=GEN, n=0, seed=0)
    with pytest.raises(ValidationError):
        task.ReconstructRequest(task=AE, images=[np.zeros((28, 28)).tolist()] * 65)
    with pytest.raises(ValidationError):
        task.ReconstructRequest(task=AE, images=[])


def test_family_wiring() -> None:
    assert FAMILY.tasks == (GEN, AE)
    routes = {r.name: r for r in FAMILY.routes}
    assert routes["reconstruct"].task_map == {GEN: AE}
    assert hasattr(task.Predictor, "sample_batch") and hasattr(task.Predictor, "reconstruct_batch")
    assert FAMILY.metrics[GEN].val == "val_fid" and FAMILY.metrics[AE].test == "test_mse"


def test_cosine_schedule_decays_the_rate_and_changes_training(prepared, ae_dir: Path, tmp_path: Path) -> None:
    constant = read_json(ae_dir / "config.json")["history"]
    cosine = train(prepared, AE, tmp_path / "cos", model="stacked", lr_schedule="cosine")
    assert [h["lr"] for h in constant] == [1e-3] * 3
    assert [h["lr"] for h in cosine] == pytest.approx([1e-3, 0.75e-3, 0.25e-3])
    assert cosine[0]["val_mse"] == constant[0]["val_mse"]  # same first epoch, then the rates part
    assert cosine[-1]["val_mse"] != constant[-1]["val_mse"]


def test_unknown_schedule_is_named() -> None:
    with pytest.raises(ConfigError, match="lr_schedule"):
        models.validate_hparams({"model": "stacked", "lr_schedule": "step"})
