"""The generative zoo: shapes of every model, hparam validation (per model, per task), penalties, FID sanity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from components.config import ConfigError
from families.generative import FAMILY, fid, models

GEN, AE = "fashion-mnist", "fashion-mnist-autoencoder"
REPO = Path(__file__).resolve().parents[2]
GENERATORS_ONLY = ("dcgan", "ddpm")
AUTOENCODERS = [m for m in models.MODELS if m not in GENERATORS_ONLY]


def validate(raw: dict, task: str | None = None) -> dict:
    return FAMILY.validate_hparams(raw, task)


@pytest.mark.parametrize("name", AUTOENCODERS)
def test_every_autoencoder_reconstructs_28x28(name: str) -> None:
    torch.manual_seed(0)
    model = models.build(validate({"model": name}))
    x = torch.rand(3, 1, 28, 28)
    recon, penalty = model(x)
    assert recon.shape == (3, 1, 28, 28)
    assert penalty.shape == () and float(penalty.detach()) >= 0
    assert isinstance(model, models.Autoencoder)


def test_the_tasks_each_model_is_declared_for() -> None:
    assert [m for m in models.MODELS if models.can_sample(m)] == ["vae", "dcgan", "ddpm"]
    assert [m for m in models.MODELS if models.can_reconstruct(m)] == AUTOENCODERS
    for name in AUTOENCODERS:
        assert validate({"model": name}, AE)["model"] == name
    for name in ("vae", "dcgan", "ddpm"):
        assert validate({"model": name}, GEN)["model"] == name


@pytest.mark.parametrize("name, task", [("stacked", GEN), ("sparse_kl", GEN), ("dcgan", AE), ("ddpm", AE)])
def test_a_model_that_cannot_do_the_task_is_refused(name: str, task: str) -> None:
    with pytest.raises(ConfigError, match=rf"'{name}' cannot be trained for task '{task}'"):
        validate({"model": name}, task)


def test_book_coding_sizes_and_overrides() -> None:
    expected = {"stacked": 30, "tied": 30, "conv": 30, "denoising": 30, "sparse_l1": 300, "sparse_kl": 300,
                "vae": 10, "dcgan": 100}
    assert {m: validate({"model": m})["codings"] for m in models.MODELS if m != "ddpm"} == expected
    vae = validate({"model": "vae"})
    assert (vae["codings"], vae["hidden"]) == (10, 150)
    assert validate({"model": "vae", "hidden": 64})["hidden"] == 64
    assert validate({"model": "stacked"})["hidden"] == 100
    assert validate({"model": "conv", "codings": 16})["codings"] == 16
    conv = models.build(validate({"model": "conv"}))
    assert conv.encode(torch.rand(2, 1, 28, 28)).shape == (2, 30)


def test_each_model_keeps_only_its_own_keys() -> None:
    shared = {"batch_size": 32, "fid_samples": 100, "noise": "gaussian", "beta1": 0.9, "kl_weight": 1e-2}
    assert validate({"model": "stacked", **shared}) == {
        "model": "stacked", "lr": 1e-3, "lr_schedule": "constant", "batch_size": 32, "init": "glorot", "codings": 30,
        "clip_norm": None, "hidden": 100}
    assert validate({"model": "denoising", **shared})["noise"] == "gaussian"
    dcgan = validate({"model": "dcgan", **shared})
    assert (dcgan["beta1"], dcgan["fid_samples"]) == (0.9, 100) and "noise" not in dcgan and "clip_norm" not in dcgan
    assert validate({"model": "sparse_kl", **shared})["kl_weight"] == 1e-2


@pytest.mark.parametrize("profile", [None, "tiny", "full", "gpu", "cluster"])
def test_every_params_key_and_search_space_is_valid(profile: str | None) -> None:
    """The train hparams and every search space of params.yaml (+ each profile), for each task."""
    from components import config
    from components.tune import hparams_from_trial, representative_samples

    params = config.load(REPO, profile)
    for task in FAMILY.tasks:
        tp = params.task("generative", task)
        fixed = tp.tune.hparams  # the sweep's fixed values
        for model in tp.tune.models:
            validate({**tp.train.hparams, "model": model}, task)
        for sample in representative_samples(tp.tune.models, tp.tune.search_space):
            validate(hparams_from_trial(sample, fixed), task)


def test_default_search_spaces_are_valid() -> None:
    from components.config import SpaceSpec
    from components.tune import hparams_from_trial, representative_samples

    for name, spec in models.MODELS.items():
        space = {key: SpaceSpec.model_validate(dist) for key, dist in spec.space.items()}
        assert space, name
        for sample in representative_samples([name], {name: space}):
            validate(hparams_from_trial(sample, {}), spec.tasks[0])


def test_dcgan_shapes_and_sampling_range() -> None:
    torch.manual_seed(0)
    gan = models.build(validate({"model": "dcgan"})).eval()
    assert gan.generator(torch.randn(4, 100)).shape == (4, 1, 28, 28)
    assert gan.discriminator(torch.rand(4, 1, 28, 28)).shape == (4,)
    images = models.sample(gan, 5, torch.Generator().manual_seed(1))
    assert images.shape == (5, 1, 28, 28) and 0 <= images.min() and images.max() <= 1
    grid = models.interpolate(gan, 2, 4, torch.Generator().manual_seed(2))
    assert grid.shape == (8, 1, 28, 28)


def test_conditional_dcgan_takes_labels_and_the_plain_one_refuses_them() -> None:
    torch.manual_seed(0)
    cgan = models.build(validate({"model": "dcgan", "conditional": True})).eval()
    assert models.is_conditional(cgan) and cgan.generator.label.num_embeddings == 10
    assert cgan.discriminator(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 2, 3])).shape == (4,)
    a = models.sample(cgan, 4, torch.Generator().manual_seed(1), labels=torch.tensor([0, 0, 0, 0]))
    b = models.sample(cgan, 4, torch.Generator().manual_seed(1), labels=torch.tensor([9, 9, 9, 9]))
    assert not torch.equal(a, b)  # same codes, other label, other images
    unlabelled = models.sample(cgan, 4, torch.Generator().manual_seed(1))  # labels drawn from the seed
    assert torch.equal(unlabelled, models.sample(cgan, 4, torch.Generator().manual_seed(1)))
    with pytest.raises(ValueError, match="labels must lie in 0..9"):
        models.sample(cgan, 1, torch.Generator(), labels=torch.tensor([10]))
    plain = models.build(validate({"model": "dcgan"})).eval()
    assert not models.is_conditional(plain) and plain.generator.label is None
    assert plain.discriminator.net[0].in_channels == 1  # the book's DCGAN unchanged
    with pytest.raises(ValueError, match="not conditional"):
        models.sample(plain, 2, torch.Generator(), labels=torch.tensor([1, 2]))


def test_same_generator_seed_same_samples() -> None:
    vae = models.build(validate({"model": "vae"})).eval()
    a = models.sample(vae, 3, torch.Generator().manual_seed(7))
    b = models.sample(vae, 3, torch.Generator().manual_seed(7))
    c = models.sample(vae, 3, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_tied_decoder_shares_the_encoder_weights() -> None:
    model = models.build(validate({"model": "tied"}))
    names = {n for n, _ in model.named_parameters()}
    assert names == {"enc1.weight", "enc1.bias", "enc2.weight", "enc2.bias", "dec_bias1", "dec_bias2"}


def test_denoising_corrupts_only_in_training() -> None:
    for noise in ("gaussian", "dropout"):
        model = models.build(validate({"model": "denoising", "noise": noise}))
        x = torch.rand(2, 1, 28, 28)
        assert not torch.equal(model.train().corrupt(x), x)
        assert torch.equal(model.eval().corrupt(x), x)


def test_sparsity_penalties_follow_keras() -> None:
    h = torch.full((4, 300), 0.1)  # every unit at the KL target: no KL penalty
    assert float(models.kl_sparsity(h, 0.1)) == pytest.approx(0.0, abs=1e-6)
    assert float(models.kl_sparsity(torch.full((4, 300), 0.5), 0.1)) > 1.0
    l1 = models.build(validate({"model": "sparse_l1", "l1": 1e-3}))
    assert float(l1.penalty(torch.ones(8, 300))) == pytest.approx(1e-3 * 300)  # sum / batch


def test_vae_penalty_is_zero_at_the_prior() -> None:
    vae = models.build(validate({"model": "vae"}))
    for layer in (vae.mu, vae.gamma):
        torch.nn.init.zeros_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    _, kl = vae(torch.rand(2, 1, 28, 28))
    assert float(kl.detach()) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(
    "raw, key",
    [({"model": "gan"}, "model"), ({"model": "vae", "lr": 0}, "lr"), ({"model": "stacked", "batchsize": 3}, "batchsize"),
     ({"model": "denoising", "noise": "salt"}, "noise"), ({"model": "dcgan", "fid_samples": 2}, "fid_samples"),
     ({"model": "stacked", "lr_schedule": "step"}, "lr_schedule"), ({"model": "vae", "codings": 0}, "codings")],
)
def test_bad_hparams_name_the_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=rf"generative hparams( \(\w+\))?: {key}"):
        validate(raw)


def test_fid_is_zero_on_itself_and_large_for_noise() -> None:
    rng = np.random.default_rng(0)
    real = rng.normal(size=(600, 16))
    real2 = rng.normal(size=(600, 16))
    noise = rng.normal(loc=1.5, scale=2.0, size=(600, 16))
    same = fid.frechet(fid.stats(real), fid.stats(real))
    assert same == pytest.approx(0.0, abs=1e-6)
    between_real = fid.frechet(fid.stats(real), fid.stats(real2))
    assert fid.frechet(fid.stats(real), fid.stats(noise)) > 50 * between_real


def test_class_entropy_bounds() -> None:
    assert fid.normalised_entropy(np.full(10, 0.1)) == pytest.approx(1.0)
    assert fid.normalised_entropy(np.eye(10)[3]) == pytest.approx(0.0)


def test_glorot_init_is_the_default_and_torch_is_kept_on_request() -> None:
    torch.manual_seed(0)
    glorot = models.build(validate({"model": "stacked"}))
    plain = models.build(validate({"model": "stacked", "init": "torch"}))
    first = glorot.encoder[1]
    assert torch.count_nonzero(first.bias) == 0
    bound = (6 / (first.in_features + first.out_features)) ** 0.5
    largest = float(first.weight.detach().abs().max())
    assert 0.9 * bound < largest <= bound
    assert torch.count_nonzero(plain.encoder[1].bias) > 0
