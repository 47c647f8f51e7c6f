"""Serving a generative model: the request/response schemas, image decoding, the Predictor.

Two routes (declared in __init__.py): POST /generative/sample is answered by the generator task's
champion (`sample_batch`), POST /generative/reconstruct by the autoencoder task's
(`reconstruct_batch`), also for requests naming task "fashion-mnist" (Route.task_map).

/generative/sample options:
- `steps` (1..1000): DDIM steps of a diffusion champion (default: its `sample_steps`); more than
  the model's T, or n * steps beyond MAX_IMAGE_STEPS (the request's CPU bound), is a 422. A
  one-pass champion (VAE, DCGAN) has no steps: it ignores the field and answers `steps: null`.
- `label` (0..9 or a class name such as "sneaker", case-insensitive): every image of that class,
  from a conditional champion (cGAN, conditional DDPM); an unknown name or a label for a champion
  that is not conditional is a 422 saying so. The response echoes the label used (index and name).
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from components.data import read_json
from components.family import RequestError
from families.generative import models
from families.generative.data import CLASSES, GENERATOR_TASK
from families.generative.evaluate import load_model

MAX_IMAGES = 64
MAX_STEPS = 1000
# n * steps: the most network passes one request may ask of a diffusion champion (64 images at 50
# steps; guidance doubles the batch). Measured: ~3.2k image-steps of the 32-channel U-Net take
# ~17 s on one CPU thread; the 16-channel one ~5 s.
MAX_IMAGE_STEPS = 3200


class SampleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="generative task, e.g. 'fashion-mnist'")
    n: int = Field(8, ge=1, le=MAX_IMAGES, description=f"number of images (1..{MAX_IMAGES})")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="the same seed gives the same images")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS, description=(
        f"DDIM steps of a diffusion model (1..{MAX_STEPS}, at most its T; n * steps <= {MAX_IMAGE_STEPS}); "
        "default: the model's; ignored by one-pass generators (answered steps: null)"))
    label: StrictInt | Annotated[StrictStr, Field(max_length=40)] | None = Field(None, description=(
        "class of every image, 0..9 or a name (case-insensitive): " + ", ".join(CLASSES)
        + "; only for a conditional model"))


class SampleResponse(BaseModel):
    task: str
    model_version: str | None = None
    images: list[str] = Field(description="base64-encoded 28x28 greyscale PNGs")
    steps: int | None = Field(None, description="DDIM steps used (null: a one-pass generator)")
    label: int | None = Field(None, description="class index every image was generated for (null: none asked)")
    label_name: str | None = None


class ReconstructRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: str = Field(description="'fashion-mnist-autoencoder' (or 'fashion-mnist', answered by the autoencoder)")
    images: list[list[list[float]] | str] = Field(
        min_length=1, max_length=MAX_IMAGES,
        description=f"1..{MAX_IMAGES} images: 28x28 arrays of floats in [0, 1], or base64 PNG strings",
    )


class ReconstructResponse(BaseModel):
    task: str
    model_version: str | None = None
    reconstructions: list[list[list[float]]]
    anomaly_scores: list[float] = Field(description="per-image reconstruction MSE (higher = more unusual)")


def encode_png(image: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def decode_png(text: str, index: int) -> np.ndarray:
    """base64 PNG (optionally a data: URL) -> (28, 28) float32 in [0, 1]; RequestError if not one."""
    from PIL import Image

    if text.startswith("data:"):
        if "," not in text:
            raise RequestError(f"images[{index}]: a data: URL needs ',' and the base64 PNG after it")
        payload = text.split(",", 1)[1]
    else:
        payload = text
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"images[{index}]: not valid base64") from None
    try:
        with Image.open(io.BytesIO(raw)) as im:
            # Check the header before decoding: a tiny PNG can declare a huge image.
            fmt, size = im.format, im.size
            if fmt != "PNG":
                raise RequestError(f"images[{index}]: expected a PNG, got {fmt}")
            if size != (28, 28):
                raise RequestError(f"images[{index}]: PNG is {size[0]}x{size[1]}, expected 28x28")
            arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except RequestError:
        raise
    except Exception as e:  # PIL raises many types (SyntaxError for a corrupt chunk): all the client's bytes
        raise RequestError(f"images[{index}]: not a readable PNG ({type(e).__name__})") from None
    return arr


def class_index(label: int | str, classes: list[str] | tuple[str, ...] = CLASSES) -> int:
    """A request label -> class index: an int 0..9, a digit string, or a class name in any case
    ("sneaker", "Ankle boot", "t-shirt/top"); RequestError listing the valid names otherwise."""
    names = ", ".join(f"{k}={n!r}" for k, n in enumerate(classes))
    if isinstance(label, bool):
        raise RequestError(f"label: expected a class index or name, got {label!r} (valid: {names})")
    if isinstance(label, int):
        if 0 <= label < len(classes):
            return label
        raise RequestError(f"label: {label} is out of range 0..{len(classes) - 1} (valid: {names})")
    text = label.strip()
    if text.isdigit():
        return class_index(int(text), classes)
    by_name = {n.casefold(): k for k, n in enumerate(classes)}
    if text.casefold() in by_name:
        return by_name[text.casefold()]
    raise RequestError(f"label: unknown class {label!r} (valid: {names})")


def image_array(image: list[list[float]] | str, index: int) -> np.ndarray:
    """One request image -> (28, 28) float32 in [0, 1], or a RequestError saying what is wrong."""
    if isinstance(image, str):
        return decode_png(image, index)
    if len(image) != 28 or any(len(row) != 28 for row in image):
        widths = sorted({len(row) for row in image})
        raise RequestError(f"images[{index}]: expected 28 rows of 28 values, got {len(image)} rows of {widths}")
    arr = np.asarray(image, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise RequestError(f"images[{index}]: values must be finite (found NaN or infinity)")
    if arr.min() < 0 or arr.max() > 1:
        raise RequestError(f"images[{index}]: pixel values must lie in [0, 1], found [{arr.min():.4g}, {arr.max():.4g}]")
    return arr


class Predictor:
    """Loads one model dir; one method per route. A model declared for the generator task
    samples, one declared for the autoencoder task reconstructs (the VAE does both); the other
    method answers a RequestError saying which route to use."""

    def __init__(self, model_dir: Path, model_version: str | None = None) -> None:
        self.model, self.config = load_model(Path(model_dir))
        self.task = self.config["task"]
        self.model_version = model_version
        self.classes = list(self.config.get("info", {}).get("classes") or CLASSES)

    def _sample_options(self, r: SampleRequest) -> tuple[int | None, int | None]:
        """(steps, label index) a request asks of this model, or a RequestError saying why not."""
        label = None
        if r.label is not None:
            label = class_index(r.label, self.classes)
            if not models.is_conditional(self.model):
                raise RequestError(f"label: this {self.config['model']!r} model is not conditional, it cannot "
                                   "generate a chosen class (omit label)")
        T = models.max_steps(self.model)
        if T is None:
            return None, label
        steps = int(self.model.sample_steps) if r.steps is None else r.steps
        if steps > T:
            raise RequestError(f"steps: {steps} exceeds this diffusion model's T = {T} (use 1..{T})")
        if steps * r.n > MAX_IMAGE_STEPS:
            raise RequestError(f"steps: n * steps = {r.n} * {steps} exceeds {MAX_IMAGE_STEPS}: ask fewer images "
                               f"or at most {MAX_IMAGE_STEPS // r.n} steps")
        return steps, label

    def sample_batch(self, reqs: list[SampleRequest]) -> list[SampleResponse]:
        """One forward pass per request (so a seed's images never depend on its batch-mates)."""
        if not models.can_sample(self.config["model"]):
            raise RequestError(f"this {self.config['model']!r} model of task {self.task!r} cannot sample new images "
                               f"(POST /generative/sample with task {GENERATOR_TASK!r})")
        options = [self._sample_options(r) for r in reqs]  # every request checked before any is sampled
        out = []
        for r, (steps, label) in zip(reqs, options):
            labels = None if label is None else torch.full((r.n,), label, dtype=torch.long)
            images = models.sample(self.model, r.n, torch.Generator().manual_seed(r.seed), steps=steps,
                                   labels=labels).numpy()
            out.append(SampleResponse(task=r.task, model_version=self.model_version,
                                      images=[encode_png(img[0]) for img in images], steps=steps, label=label,
                                      label_name=None if label is None else self.classes[label]))
        return out

    def reconstruct_batch(self, reqs: list[ReconstructRequest]) -> list[ReconstructResponse]:
        """All images of all requests in one forward pass; scores = per-image MSE."""
        if not models.can_reconstruct(self.config["model"]):
            raise RequestError(f"this {self.config['model']!r} generator cannot reconstruct images "
                               "(POST /generative/reconstruct is answered by the autoencoder)")
        arrays = [np.stack([image_array(img, i) for i, img in enumerate(r.images)]) for r in reqs]
        x = torch.from_numpy(np.concatenate(arrays)).unsqueeze(1)
        with torch.no_grad():
            recon = models.reconstruct(self.model, x)
        scores = ((recon - x) ** 2).flatten(1).mean(1).numpy()
        recon = recon.clamp(0, 1)[:, 0].numpy().astype(np.float64)
        out, start = [], 0
        for r, a in zip(reqs, arrays):
            end = start + len(a)
            out.append(ReconstructResponse(task=r.task, model_version=self.model_version,
                                           reconstructions=recon[start:end].round(5).tolist(),
                                           anomaly_scores=[float(s) for s in scores[start:end]]))
            start = end
        return out


def input_example(model_dir: Path) -> dict[str, Any]:
    """A valid request for the route this model dir's task is served on: 2 samples (generator
    task), or one image, a centred square (autoencoder task)."""
    config = read_json(Path(model_dir) / "config.json")
    if config["task"] == GENERATOR_TASK:
        return {"task": config["task"], "n": 2, "seed": 0}
    img = np.zeros((28, 28))
    img[7:21, 7:21] = 0.8
    return {"task": config["task"], "images": [img.tolist()]}
