"""The generative Predictor (one method per route), its request limits and 422s, and the routes."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from components.family import RequestError
from families.generative import FAMILY, serve
from tests.unit.test_generative_train import ae_dir, gan_dir, prepared  # noqa: F401  (module fixtures)

GEN, AE = "fashion-mnist", "fashion-mnist-autoencoder"


def decode(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))))


def png_b64(arr: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8), mode="L").save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def test_sampling_same_seed_same_images(gan_dir: Path) -> None:  # noqa: F811
    predictor = serve.Predictor(gan_dir, model_version="3")
    route = FAMILY.route_for(GEN)
    example = route.request.model_validate(serve.input_example(gan_dir))
    answer = getattr(predictor, route.method)
    reqs = [serve.SampleRequest(task=GEN, n=3, seed=5), example, serve.SampleRequest(task=GEN, n=3, seed=5)]
    out = answer(reqs)
    assert out[0].images == out[2].images and out[0].model_version == "3"
    assert len(out[1].images) == example.n
    (other,) = predictor.sample_batch([serve.SampleRequest(task=GEN, n=3, seed=6)])
    assert other.images != out[0].images
    assert decode(out[0].images[0]).shape == (28, 28)
    with pytest.raises(RequestError, match="cannot reconstruct"):
        predictor.reconstruct_batch([serve.ReconstructRequest(task=GEN, images=[np.zeros((28, 28)).tolist()])])


def test_reconstruct_arrays_and_pngs(ae_dir: Path) -> None:  # noqa: F811
    predictor = serve.Predictor(ae_dir)
    route = FAMILY.route_for(AE)
    assert route.method == "reconstruct_batch"
    example = route.request.model_validate(serve.input_example(ae_dir))
    img = np.asarray(example.images[0])
    req = serve.ReconstructRequest(task=AE, images=[img.tolist(), png_b64(np.round(img * 255))])
    (resp,) = predictor.reconstruct_batch([req])
    assert np.shape(resp.reconstructions) == (2, 28, 28)
    assert resp.anomaly_scores[0] == pytest.approx(resp.anomaly_scores[1], rel=0.05)  # same image, two encodings
    (alone,) = predictor.reconstruct_batch([serve.ReconstructRequest(task=AE, images=[img.tolist()])])
    assert alone.anomaly_scores[0] == pytest.approx(resp.anomaly_scores[0], rel=1e-5)
    with pytest.raises(RequestError, match="cannot sample"):
        predictor.sample_batch([serve.SampleRequest(task=AE, n=1, seed=0)])


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((27, 28)).tolist(), "expected 28 rows of 28 values"),
        ([[0.0] * 28] * 27 + [[0.0] * 27], "expected 28 rows of 28 values"),
        ((np.ones((28, 28)) * 1.5).tolist(), r"must lie in \[0, 1\]"),
        ([[float("nan")] * 28] * 28, "finite"),
        ("not base64!", "not valid base64"),
        ("data:image/png;base64", "a data: URL needs ','"),
        (base64.b64encode(b"hello world!").decode(), "not a readable PNG"),
        (png_b64(np.zeros((20, 20))), "PNG is 20x20"),
        (png_b64(np.zeros((28, 28)), "JPEG"), "expected a PNG"),
    ],
)
def test_bad_images_are_request_errors(ae_dir: Path, image, message: str) -> None:  # noqa: F811
    predictor = serve.Predictor(ae_dir)
    with pytest.raises(RequestError, match=message):
        predictor.reconstruct_batch([serve.ReconstructRequest(task=AE, images=[np.zeros((28, 28)).tolist(), image])])


def test_request_limits_are_validation_errors() -> None:
    with pytest.raises(ValidationError):
        serve.SampleRequest(task=GEN, n=65, seed=0)
    with pytest.raises(ValidationError):
        serve.SampleRequest(task=GEN, n=0, seed=0)
    with pytest.raises(ValidationError):
        serve.ReconstructRequest(task=AE, images=[np.zeros((28, 28)).tolist()] * 65)
    with pytest.raises(ValidationError):
        serve.ReconstructRequest(task=AE, images=[])


def test_family_wiring() -> None:
    assert FAMILY.tasks == (GEN, AE)
    routes = {r.name: r for r in FAMILY.routes}
    assert routes["sample"].tasks == (GEN,) and routes["reconstruct"].tasks == (AE,)
    assert routes["reconstruct"].task_map == {GEN: AE}
    assert FAMILY.route_for(GEN) is routes["sample"] and FAMILY.route_for(AE) is routes["reconstruct"]
    # exactly one method per route, no generic dispatch left
    methods = {name for name in vars(serve.Predictor) if not name.startswith("_")}
    assert methods == {r.method for r in FAMILY.routes} == {"sample_batch", "reconstruct_batch"}
    assert FAMILY.metrics[GEN].val == "val_fid" and FAMILY.metrics[AE].test == "test_mse"


# ----------------------------------------------------------------------------- steps and label (ddpm, cGAN)
def model_dir(tmp_path: Path, name: str, **hp) -> Path:
    """A freshly built (untrained) model dir: serving reads only config.json + weights.pt."""
    import torch

    from components.modeldir import save_model_dir
    from families.generative import data, models

    hparams = FAMILY.validate_hparams({"model": name, **hp}, GEN)
    torch.manual_seed(0)
    out = tmp_path / name
    save_model_dir(out, {"family": "generative", "task": GEN, "model": name, "hparams": hparams,
                         "info": {"classes": list(data.CLASSES)}}, models.build(hparams).state_dict())
    return out


TINY_DDPM = {"channels": 8, "timesteps": 30, "sample_steps": 3}


def test_ddpm_steps_default_bounds_and_echo(tmp_path: Path) -> None:
    predictor = serve.Predictor(model_dir(tmp_path, "ddpm", **TINY_DDPM))
    example = serve.SampleRequest.model_validate(serve.input_example(tmp_path / "ddpm"))
    default, two, again = predictor.sample_batch([example, serve.SampleRequest(task=GEN, n=2, steps=2),
                                                  serve.SampleRequest(task=GEN, n=2, steps=2)])
    assert default.steps == 3 and two.steps == 2 and default.label is None
    assert two.images == again.images and two.images != default.images[:2]  # steps change the images
    with pytest.raises(RequestError, match=r"steps: 31 exceeds this diffusion model's T = 30"):
        predictor.sample_batch([serve.SampleRequest(task=GEN, n=1, steps=31)])
    with pytest.raises(RequestError, match=r"n \* steps = 64 \* 60 exceeds"):
        serve.Predictor(model_dir(tmp_path, "ddpm", channels=8)).sample_batch(
            [serve.SampleRequest(task=GEN, n=64, steps=60)])
    for bad in (0, serve.MAX_STEPS + 1):
        with pytest.raises(ValidationError):
            serve.SampleRequest(task=GEN, steps=bad)


@pytest.mark.parametrize("label, index", [(7, 7), ("sneaker", 7), ("Sneaker", 7), ("ANKLE BOOT", 9),
                                          ("t-shirt/top", 0), ("3", 3)])
def test_labels_by_index_or_name(tmp_path: Path, label, index: int) -> None:
    predictor = serve.Predictor(model_dir(tmp_path, "ddpm", **TINY_DDPM))
    (resp,) = predictor.sample_batch([serve.SampleRequest(task=GEN, n=2, seed=1, label=label)])
    assert (resp.label, resp.label_name) == (index, serve.CLASSES[index])
    (by_index,) = predictor.sample_batch([serve.SampleRequest(task=GEN, n=2, seed=1, label=index)])
    assert by_index.images == resp.images  # a name and its index are the same request
    (unlabelled,) = predictor.sample_batch([serve.SampleRequest(task=GEN, n=2, seed=1)])
    assert unlabelled.images != resp.images


@pytest.mark.parametrize("label, message", [("sock", "unknown class 'sock'"), (10, "out of range 0..9"),
                                            (-1, "out of range 0..9"), ("", "unknown class ''")])
def test_bad_labels_are_422_listing_the_names(tmp_path: Path, label, message: str) -> None:
    predictor = serve.Predictor(model_dir(tmp_path, "ddpm", **TINY_DDPM))
    with pytest.raises(RequestError, match=message) as e:
        predictor.sample_batch([serve.SampleRequest(task=GEN, n=1, label=label)])
    assert "7='Sneaker'" in str(e.value)


def test_label_types_are_strict() -> None:
    for bad in (True, 7.5, [7], "x" * 41):
        with pytest.raises(ValidationError):
            serve.SampleRequest(task=GEN, label=bad)


def test_label_for_an_unconditional_champion_and_steps_for_a_gan(tmp_path: Path) -> None:
    plain = serve.Predictor(model_dir(tmp_path, "ddpm", conditional=False, **TINY_DDPM))
    with pytest.raises(RequestError, match="label: this 'ddpm' model is not conditional"):
        plain.sample_batch([serve.SampleRequest(task=GEN, n=1, label="bag")])
    gan = serve.Predictor(model_dir(tmp_path, "dcgan", codings=16))
    with pytest.raises(RequestError, match="'dcgan' model is not conditional"):
        gan.sample_batch([serve.SampleRequest(task=GEN, n=1, label=1)])
    (resp,) = gan.sample_batch([serve.SampleRequest(task=GEN, n=2, steps=500)])  # a one-pass generator: ignored
    assert resp.steps is None and len(resp.images) == 2
    cgan = serve.Predictor(model_dir(tmp_path / "c", "dcgan", codings=16, conditional=True))
    bag, shoe = cgan.sample_batch([serve.SampleRequest(task=GEN, n=2, label="Bag"),
                                   serve.SampleRequest(task=GEN, n=2, label="Sneaker")])
    assert (bag.label, shoe.label, bag.steps) == (8, 7, None) and bag.images != shoe.images
