"""Generative benchmarks (book ch. 17): autoencoders vs the book, FID table, pretraining, anomaly AUC.

Why this exists: quartet claims that (a) its autoencoders reach the book's ml3 validation MSEs on
Fashion-MNIST (stacked 0.0132, conv 0.0121, sparse-KL 0.0099: target at or below), (b) its
generators are measured by FID on its own classifier's features beside real and noise anchors,
(c) a pretrained convolutional encoder helps a classifier that sees only 500 labels, and (d) an
autoencoder trained on nine classes flags the tenth. Each section uses the library's own pieces
(`data.prepare`, `quartet.api.train_plain` = the family's loop: run_supervised / the DCGAN loop,
`evaluate.evaluate`) in this process, so a regression in the library shows up here.

    python -m bench.generative [--quick] [--only ae|fid|pretrain|anomaly] [--threads N]
    python -m bench.generative --only ddpm [--ddpm-epochs N] [--ddpm-channels C]

`--only ddpm` (not part of the default run) is the diffusion comparison: on the default profile's
prepared data (5,000 training images), VAE, DCGAN, conditional DCGAN and DDPM trained with the
library's loops, FID on the same 2,000 samples each, sampling time per image, the DDPM at DDIM steps
10/25/50, classifier confidence and the conditional models' per-class accuracy; it writes
bench/results/generative_ddpm.json.

Prints Markdown and writes bench/results/generative.json (the lead merges it into BENCHMARKS.md).
`--quick` trains on 5,000 images for 2 epochs (a smoke test of this script, minutes; numbers
not comparable with the book) and writes bench/results/generative.quick.json.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import logging
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from components.config import REPO_ROOT
from components.data import read_json, seeded_loader, set_seeds, write_json
from families.generative import classifier, data, evaluate, models
from families.generative.train import image_dataset
from quartet import api

log = logging.getLogger("bench.generative")

RESULTS = REPO_ROOT / "bench" / "results"
RAW_DIR = REPO_ROOT / "data" / "generative"
SECTIONS = ("ae", "fid", "pretrain", "anomaly")
SEED = 42


@dataclass(frozen=True)
class AERow:
    """One row of the book's ml3 table 17.B."""

    label: str
    hparams: dict[str, Any]
    epochs: int
    book: float | None
    target: bool = False  # the targets: at or below the book


AE_ROWS = (
    AERow("Stacked 784-100-30", {"model": "stacked"}, 20, 0.0132, target=True),
    AERow("Tied weights", {"model": "tied"}, 10, 0.0133),
    AERow("Stacked, lr 2e-3 + cosine decay", {"model": "stacked", "lr": 2e-3, "lr_schedule": "cosine"}, 20, 0.0132,
          target=True),
    AERow("Convolutional", {"model": "conv"}, 10, 0.0121, target=True),
    AERow("Convolutional, twice the book's epochs", {"model": "conv"}, 20, 0.0121, target=True),
    AERow("Denoising, Gaussian 0.2", {"model": "denoising", "noise": "gaussian"}, 10, None),
    AERow("Denoising, dropout 0.5", {"model": "denoising", "noise": "dropout"}, 10, 0.0166),
    AERow("Sparse L1 (1e-4)", {"model": "sparse_l1"}, 10, 0.0111),
    AERow("Sparse KL (5e-3, 0.1)", {"model": "sparse_kl"}, 10, 0.0099, target=True),
    AERow("VAE (latent 10, batch 128)", {"model": "vae", "batch_size": 128}, 25, None),
)
BOOK_VAE_LOSS = 0.0311  # ml3 [86]: val_loss = MSE + KL/784, 25 epochs, batch 128


@dataclass(frozen=True)
class Settings:
    quick: bool
    threads: int
    train_size: int | None  # None: the book's 55,000
    epochs_scale: float  # quick: 2 epochs whatever the book says
    gan_epochs: int
    fid_samples: int
    classifier_epochs: int
    anomaly_classes: tuple[int, ...]
    anomaly_epochs: int
    pretrain_labels: int = 500

    def epochs(self, book_epochs: int) -> int:
        return 2 if self.quick else book_epochs


def make_settings(args: argparse.Namespace) -> Settings:
    quick = args.quick
    classes = tuple(int(c) for c in args.anomaly_classes.split(",")) if args.anomaly_classes else (
        (1, 5) if quick else tuple(range(10)))
    return Settings(
        quick=quick, threads=args.threads, train_size=5000 if quick else None, epochs_scale=1.0,
        gan_epochs=args.gan_epochs or (1 if quick else 10), fid_samples=2000 if quick else 10000,
        classifier_epochs=1 if quick else 5, anomaly_classes=classes, anomaly_epochs=2 if quick else 10,
    )


# ----------------------------------------------------------------------------- data
def prepared_dirs(work: Path, s: Settings, generator: bool) -> dict[str, Path]:
    """Prepare the tasks with the library (raw from data/generative, else from the apt package);
    the generator task (and its FID classifier) only when a section needs it."""
    raw = RAW_DIR
    if not raw.is_dir():
        raw = work / "raw"
        data.ingest(raw, SEED)
    out = {}
    tasks = [("fashion-mnist-autoencoder", {})]
    if generator:
        tasks.append(("fashion-mnist", {"classifier": {"epochs": s.classifier_epochs, "train_size": None}}))
    for t, extra in tasks:
        out[t] = work / t
        out[t].mkdir(parents=True, exist_ok=True)
        data.prepare(t, {"train_size": s.train_size, **extra}, raw, out[t], SEED)
    return out


def train_model(prepared: Path, task_name: str, hp: dict[str, Any], epochs: int, out_dir: Path, s: Settings,
                max_train: int | None = None) -> tuple[list[dict], float]:
    result = api.train_plain("generative", task_name, hp, prepared, epochs, seed=SEED, out_dir=out_dir,
                             threads=s.threads, max_train_samples=max_train)
    return result.history, result.wall_s


# ----------------------------------------------------------------------------- section 1: autoencoders
def run_ae(s: Settings, dirs: dict[str, Path], work: Path) -> dict[str, Any]:
    rows = []
    for i, row in enumerate(AE_ROWS):
        epochs = s.epochs(row.epochs)
        out = work / "ae" / f"{i:02d}-{row.hparams['model']}"  # one dir a row: two rows may share a model
        history, wall = train_model(dirs["fashion-mnist-autoencoder"], "fashion-mnist-autoencoder", row.hparams, epochs, out, s)
        metrics = evaluate.evaluate(out, dirs["fashion-mnist-autoencoder"], work / "plots", {})
        r = {"label": row.label, "hparams": row.hparams, "epochs": epochs, "book": row.book, "target": row.target,
             "val_mse": metrics["val_mse"], "val_mse_last": history[-1]["val_mse"], "test_mse": metrics["test_mse"],
             "wall_s": wall, "epoch_s": float(np.median([h["epoch_time_s"] for h in history])),
             "val_loss": history[-1].get("val_loss"), "model_dir": str(out)}
        rows.append(r)
        log.info("%s: val_mse %.5f (book %s) in %.0f s", row.label, r["val_mse"], row.book, wall)
    return {"rows": rows}


def render_ae(res: dict[str, Any], s: Settings) -> str:
    lines = ["## 1. Autoencoders: validation MSE vs the book (ml3, Fashion-MNIST)", "",
             f"Train {'5,000 (quick)' if s.quick else '55,000'} images, val 5,000; plain launcher, Adam lr 1e-3 "
             "constant (the book: Nadam; measured worse here), batch 32 unless noted, seed 42, Glorot-uniform init (the "
             "library default, as Keras); val MSE of the best epoch "
             "(the library keeps the best weights) and of the last epoch (the book's figure).", "",
             "| model | epochs | book val MSE | val MSE best | val MSE last | target | test MSE | s/epoch | wall s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in res["rows"]:
        book = f"{r['book']:.4f}" if r["book"] is not None else "–"
        target = ("met" if r["val_mse_last"] <= r["book"] else "**not met**") if r["target"] else "–"
        lines.append(f"| {r['label']} | {r['epochs']} | {book} | {r['val_mse']:.4f} | {r['val_mse_last']:.4f} | "
                     f"{target} | {r['test_mse']:.4f} | {r['epoch_s']:.1f} | {r['wall_s']:.0f} |")
    vae = next((r for r in res["rows"] if r["hparams"]["model"] == "vae"), None)
    if vae and vae["val_loss"] is not None:
        lines += ["", f"VAE validation loss (MSE + KL/784, sampled z, last epoch): {vae['val_loss']:.4f} "
                      f"(book ml3 [86]: {BOOK_VAE_LOSS})."]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- section 2: FID
def run_fid(s: Settings, dirs: dict[str, Path], work: Path) -> dict[str, Any]:
    prepared = dirs["fashion-mnist"]
    info = read_json(prepared / "info.json")
    rows = {}
    for name, hp, epochs in (("VAE", {"model": "vae", "batch_size": 128}, s.epochs(25)),
                             ("DCGAN", {"model": "dcgan", "batch_size": 32}, s.gan_epochs)):
        out = work / "fid" / name
        history, wall = train_model(prepared, "fashion-mnist", {**hp, "fid_samples": 1000}, epochs, out, s)
        metrics = evaluate.evaluate(out, prepared, work / "fid" / f"plots-{name}", {"fid_samples": s.fid_samples})
        rows[name] = {"epochs": epochs, "wall_s": wall, **metrics}
        log.info("%s: FID (%s) val %.2f test %.2f", name, classifier.FEATURES, metrics["val_fid"], metrics["test_fid"])
    return {"rows": rows, "classifier": info["fid_classifier"]}


def render_fid(res: dict[str, Any], s: Settings) -> str:
    any_row = next(iter(res["rows"].values()))
    c = res["classifier"]
    lines = [f"## 2. FID ({classifier.FEATURES} features)", "",
             f"Feature extractor: quartet's own CNN trained in `prepare` ({int(c['train_images'])} images, "
             f"{c['epochs']} epochs), test accuracy {c['test_accuracy']:.4f}. FID on {int(any_row['fid_samples'])} "
             "images against the whole val split (and test split); lower is better.", "",
             f"| images | epochs | FID vs val ({classifier.FEATURES}) | FID vs test | class entropy (1 = uniform) | wall s |",
             "|---|---|---|---|---|---|"]
    for name, r in res["rows"].items():
        lines.append(f"| {name} samples | {r['epochs']} | {r['val_fid']:.2f} | {r['test_fid']:.2f} | "
                     f"{r['gen_class_entropy']:.3f} | {r['wall_s']:.0f} |")
    lines.append(f"| held-out real (test) images | – | {any_row['val_fid_real_heldout']:.2f} | – | – | – |")
    lines.append(f"| uniform noise | – | {any_row['val_fid_noise']:.1f} | – | – | – |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- section 3: pretraining
class ConvClassifier(nn.Module):
    """The conv AE's encoder (Conv 16/32/64 + Conv 30 + global pool) + Dense 20 ReLU + Dense 10."""

    def __init__(self, encoder: nn.Module, codings: int = 30) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Sequential(nn.Linear(codings, 20), nn.ReLU(), nn.Linear(20, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def fit_classifier(model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, params: Any, seed: int) -> None:
    opt = torch.optim.Adam([p for p in params if p.requires_grad], lr=1e-3)
    loader = seeded_loader(torch.utils.data.TensorDataset(x, y), 32, shuffle=True, seed=seed)
    for _ in range(epochs):
        model.train()
        for xb, yb in loader:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(xb).argmax(1) for xb in x.split(1000)])
    return float((pred == y).float().mean())


def run_pretrain(s: Settings, dirs: dict[str, Path], work: Path, conv_dir: Path | None) -> dict[str, Any]:
    """500 labelled images: scratch (20 epochs) vs the conv AE's encoder frozen (30) then fine-tuned (+20).

    Unlike the book's old ml2 solution (clone_model re-initialised the 'pretrained' encoder), the
    encoder here really carries the autoencoder's weights (checked: they differ from a fresh init)."""
    prepared = dirs["fashion-mnist-autoencoder"]
    if conv_dir is None:
        conv_dir = work / "pretrain" / "conv"
        train_model(prepared, "fashion-mnist-autoencoder", {"model": "conv"}, s.epochs(10), conv_dir, s)
    ae, _ = evaluate.load_model(conv_dir)
    x, y = image_dataset(prepared, "train", s.pretrain_labels).tensors
    xt, yt = image_dataset(prepared, "test").tensors
    e_scratch, e_frozen, e_tune = (2, 2, 2) if s.quick else (20, 30, 20)
    set_seeds(SEED)
    scratch = ConvClassifier(models.Conv().encoder)
    fit_classifier(scratch, x, y, e_scratch + e_frozen + e_tune, scratch.parameters(), SEED)  # same step budget
    acc_scratch_long = accuracy(scratch, xt, yt)
    set_seeds(SEED)
    scratch20 = ConvClassifier(models.Conv().encoder)
    fit_classifier(scratch20, x, y, e_scratch, scratch20.parameters(), SEED)
    acc_scratch = accuracy(scratch20, xt, yt)
    set_seeds(SEED)
    pre = ConvClassifier(copy.deepcopy(ae.encoder))
    assert not torch.equal(pre.encoder[0].weight, models.Conv().encoder[0].weight)
    for p in pre.encoder.parameters():
        p.requires_grad_(False)
    fit_classifier(pre, x, y, e_frozen, pre.parameters(), SEED)
    acc_frozen = accuracy(pre, xt, yt)
    for p in pre.encoder.parameters():
        p.requires_grad_(True)
    fit_classifier(pre, x, y, e_tune, pre.parameters(), SEED + 1)
    acc_tuned = accuracy(pre, xt, yt)
    return {"labels": s.pretrain_labels, "epochs": [e_scratch, e_frozen, e_tune], "scratch": acc_scratch,
            "scratch_same_steps": acc_scratch_long, "frozen": acc_frozen, "fine_tuned": acc_tuned,
            "encoder_from": str(conv_dir)}


def render_pretrain(r: dict[str, Any]) -> str:
    e1, e2, e3 = r["epochs"]
    return "\n".join([
        f"## 3. Unsupervised pretraining: a classifier on {r['labels']} labelled images (test accuracy, 10,000)", "",
        "Encoder: the convolutional autoencoder of section 1 (trained on the unlabelled train split); head Dense 20 "
        "ReLU + Dense 10; Adam 1e-3, batch 32. The book's old ml2 solution got 0.737 (scratch) / 0.724 (frozen) / "
        "0.790 (fine-tuned) on validation, but its 'pretrained' encoder was re-initialised by clone_model.", "",
        "| classifier | epochs | test accuracy |", "|---|---|---|",
        f"| from scratch | {e1} | {r['scratch']:.4f} |",
        f"| from scratch, same total epochs | {e1 + e2 + e3} | {r['scratch_same_steps']:.4f} |",
        f"| pretrained encoder, frozen | {e2} | {r['frozen']:.4f} |",
        f"| pretrained encoder, then fine-tuned | {e2} + {e3} | {r['fine_tuned']:.4f} |",
    ])


# ----------------------------------------------------------------------------- section 4: anomaly detection
def run_anomaly(s: Settings, dirs: dict[str, Path], work: Path) -> dict[str, Any]:
    """Per held-out class k: a stacked AE trained on the train images of the other nine classes;
    every test image scored by reconstruction MSE; ROC AUC of 'is class k' (sklearn)."""
    from sklearn.metrics import roc_auc_score

    prepared = dirs["fashion-mnist-autoencoder"]
    x, y = data.load_split(prepared, "train")
    vx, vy = data.load_split(prepared, "val")
    xt, yt = image_dataset(prepared, "test").tensors
    rows = []
    for k in s.anomaly_classes:
        d = work / "anomaly" / str(k)
        d.mkdir(parents=True, exist_ok=True)
        for split, (xs, ys) in (("train", (x, y)), ("val", (vx, vy)), ("test", data.load_split(prepared, "test"))):
            keep = ys != k if split != "test" else np.ones(len(ys), bool)
            np.save(d / f"{split}_x.npy", xs[keep])
            np.save(d / f"{split}_y.npy", ys[keep])
        write_json(d / "info.json", {**read_json(prepared / "info.json"), "held_out_class": k})
        history, wall = train_model(d, "fashion-mnist-autoencoder", {"model": "stacked"}, s.anomaly_epochs, d / "model", s)
        model, _ = evaluate.load_model(d / "model")
        scores = evaluate.reconstruction_mse(model, xt)
        auc = float(roc_auc_score((yt == k).numpy(), scores))
        rows.append({"class": k, "name": data.CLASSES[k], "auc": auc, "wall_s": wall})
        log.info("anomaly: held-out %s AUC %.3f", data.CLASSES[k], auc)
    return {"rows": rows, "epochs": s.anomaly_epochs}


def render_anomaly(res: dict[str, Any]) -> str:
    lines = ["## 4. Anomaly detection: autoencoder trained on nine classes, the tenth scored", "",
             f"Stacked AE, {res['epochs']} epochs on the train images without the held-out class; score = per-image "
             "reconstruction MSE on the 10,000 test images; ROC AUC of 'is the held-out class' (sklearn).", "",
             "| held-out class | ROC AUC | wall s |", "|---|---|---|"]
    lines += [f"| {r['class']} {r['name']} | {r['auc']:.3f} | {r['wall_s']:.0f} |" for r in res["rows"]]
    if res["rows"]:
        lines.append(f"| mean | {np.mean([r['auc'] for r in res['rows']]):.3f} | |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- section ddpm: diffusion vs VAE/DCGAN
DDPM_STEPS = (10, 25, 50)


def ddpm_rows(args: argparse.Namespace) -> list[tuple[str, dict[str, Any], int]]:
    """(label, hparams, epochs): the default profile's VAE/DCGAN (4 epochs, batch 32), the cGAN, the DDPM."""
    ddpm = {"model": "ddpm", "channels": args.ddpm_channels, "batch_size": 64, "sample_steps": DDPM_STEPS[0],
            "fid_samples": 500, "lr": args.ddpm_lr}
    return [("VAE", {"model": "vae", "batch_size": 32, "fid_samples": 1000}, 4),
            ("DCGAN", {"model": "dcgan", "batch_size": 32, "fid_samples": 1000}, 4),
            ("cDCGAN", {"model": "dcgan", "batch_size": 32, "fid_samples": 1000, "conditional": True}, 4),
            ("DDPM (CFG)", ddpm, args.ddpm_epochs)]


def run_ddpm(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from components import config as qconfig
    from families.generative import fid

    prep_params = qconfig.load(REPO_ROOT).task("generative", "fashion-mnist").prepare
    prepared = work / "fashion-mnist"
    prepared.mkdir(parents=True)
    raw = RAW_DIR if RAW_DIR.is_dir() else work / "raw"
    if raw != RAW_DIR:
        data.ingest(raw, SEED)
    data.prepare("fashion-mnist", prep_params, raw, prepared, SEED)
    s = Settings(quick=False, threads=args.threads, train_size=None, epochs_scale=1.0, gan_epochs=4, fid_samples=2000,
                 classifier_epochs=1, anomaly_classes=(), anomaly_epochs=0)
    rows = {}
    for label, hp, epochs in ddpm_rows(args):
        out = work / "ddpm" / label.replace(" ", "_")
        history, wall = train_model(prepared, "fashion-mnist", hp, epochs, out, s)
        params = {"fid_samples": 2000, "seed": 0, "cond_samples_per_class": 100}
        metrics = evaluate.evaluate(out, prepared, work / "plots" / label.replace(" ", "_"), params)
        row = {"hparams": hp, "epochs": epochs, "wall_s": wall,
               "epoch_s": float(np.median([h["epoch_time_s"] for h in history])),
               "val_fid_per_epoch": [h["val_fid"] for h in history], **metrics}
        if hp["model"] == "ddpm":  # FID and time at more DDIM steps, same 2,000 seeds
            model, _ = evaluate.load_model(out)
            ref = fid.FidReference(classifier.load_classifier(prepared), image_dataset(prepared, "val").tensors[0])
            row["by_steps"] = {}
            for steps in DDPM_STEPS:
                t0 = time.perf_counter()
                images = models.sample(model, 2000, torch.Generator().manual_seed(0), steps=steps)
                dt_s = (time.perf_counter() - t0) / 2000
                row["by_steps"][str(steps)] = {"val_fid": ref.fid(images), "sample_s_per_image": dt_s,
                                               "gen_confidence_mean": fid.confidence(ref.classifier, images)}
                log.info("DDPM %d steps: val FID %.2f, %.4f s/image", steps, row["by_steps"][str(steps)]["val_fid"], dt_s)
        rows[label] = row
        log.info("%s: %d epochs, %.1f s/epoch, val FID %.2f, %.5f s/image", label, epochs, row["epoch_s"],
                 metrics["val_fid"], metrics["sample_s_per_image"])
    return {"rows": rows, "prepare": prep_params, "fid_samples": 2000}


def render_ddpm(res: dict[str, Any]) -> str:
    lines = [f"## Diffusion beside the VAE and DCGAN (FID, {classifier.FEATURES} features, 2,000 samples)", "",
             "Default profile data (5,000 training images), plain launcher, 1 thread. FID vs val and test on the same "
             "number of samples for every model; sampling time = wall time of `models.sample` for the 2,000 / 2,000.",
             "", "| model | epochs | s/epoch | val FID | test FID | s/image | classifier confidence | cond. accuracy |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in res["rows"].items():
        cond = f"{r['cond_accuracy']:.3f}" if "cond_accuracy" in r else "–"
        steps = f" (DDIM {int(r['sample_steps'])})" if "sample_steps" in r else ""
        lines.append(f"| {label}{steps} | {r['epochs']} | {r['epoch_s']:.1f} | {r['val_fid']:.2f} | {r['test_fid']:.2f} | "
                     f"{r['sample_s_per_image']:.5f} | {r['gen_confidence_mean']:.3f} | {cond} |")
        for steps, b in r.get("by_steps", {}).items():
            lines.append(f"| {label} (DDIM {steps}) | | | {b['val_fid']:.2f} | | {b['sample_s_per_image']:.5f} | "
                         f"{b['gen_confidence_mean']:.3f} | |")
    any_row = next(iter(res["rows"].values()))
    lines.append(f"| held-out real images | | | {any_row['val_fid_real_heldout']:.2f} | | | | |")
    for label, r in res["rows"].items():
        if "cond_accuracy" in r:
            lines += ["", f"{label} per-class accuracy of generated images: " + ", ".join(
                f"{data.CLASSES[k]} {r[f'cond_accuracy_class_{k}']:.2f}" for k in range(10))]
    return "\n".join(lines)


def main_ddpm(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    torch.set_num_threads(args.threads)
    out_file = RESULTS / "generative_ddpm.json"
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quartet-bench-ddpm-") as tmp:
        res = run_ddpm(args, Path(tmp))
        res = without_path(res, Path(tmp), "<bench tmp dir>")
    res["run"] = {"command": "python -m bench.generative " + " ".join(sys.argv[1:] if argv is None else argv),
                  "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "threads": args.threads,
                  "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, torch {torch.__version__}",
                  "total_s": time.perf_counter() - t_all}
    write_json(out_file, res)
    print("\n" + render_ddpm(res) + "\n", flush=True)
    log.info("wrote %s (%.0f s)", out_file, time.perf_counter() - t_all)
    return 0


# ----------------------------------------------------------------------------- main
def write_results(out_file: Path, results: dict[str, Any]) -> None:
    """Merge into the results file, re-read just before writing: sections run by other invocations
    (e.g. `--only fid` and `--only anomaly` side by side) are kept; each section records its own run."""
    old = json.loads(out_file.read_text()) if out_file.is_file() else {}
    run = {k: v for k, v in results.items() if k not in SECTIONS}
    merged = {**old, **{k: {**v, "run": run} for k, v in results.items() if k in SECTIONS}}
    merged["runs"] = [r for r in old.get("runs", []) if r.get("command") != run["command"]] + [run]
    write_json(out_file, {k: v for k, v in merged.items() if k in SECTIONS or k == "runs"})


def without_path(results: dict[str, Any], path: Path, label: str) -> dict[str, Any]:
    """`results` with every occurrence of `path` (the temporary work dir) replaced by `label`."""
    return json.loads(json.dumps(results).replace(json.dumps(str(path))[1:-1], label))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.generative", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5,000 images, 2 epochs: a smoke test of the script")
    p.add_argument("--only", choices=(*SECTIONS, "ddpm"), action="append",
                   help="run only these sections (repeatable); ddpm: the diffusion comparison, alone")
    p.add_argument("--ddpm-epochs", type=int, default=8, help="ddpm section: DDPM epochs")
    p.add_argument("--ddpm-channels", type=int, default=16, help="ddpm section: U-Net channels")
    p.add_argument("--ddpm-lr", type=float, default=1e-3, help="ddpm section: DDPM learning rate")
    p.add_argument("--threads", type=int, default=1, help="torch threads per loop")
    p.add_argument("--gan-epochs", type=int, help="DCGAN epochs (default 10; the book trains 50)")
    p.add_argument("--anomaly-classes", help="comma-separated held-out classes (default all ten; quick 1,5)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    if args.only and "ddpm" in args.only:
        if args.only != ["ddpm"]:
            raise SystemExit("--only ddpm runs alone")
        return main_ddpm(args, argv)
    s = make_settings(args)
    torch.set_num_threads(s.threads)
    todo = args.only or list(SECTIONS)
    out_file = RESULTS / ("generative.quick.json" if s.quick else "generative.json")
    results: dict[str, Any] = {
        "command": "python -m bench.generative " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "quick": s.quick,
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()}, torch {torch.__version__}", "threads": s.threads,
        "load_before": os.getloadavg()[0],
    }
    blocks = []
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="quartet-bench-gen-") as tmp:
        work = Path(tmp)
        dirs = prepared_dirs(work, s, generator="fid" in todo)
        conv_dir = None
        for name in todo:
            t0 = time.perf_counter()
            log.info("=== section %s ===", name)
            if name == "ae":
                res = run_ae(s, dirs, work)
                conv_dir = next(Path(r["model_dir"]) for r in res["rows"] if r["hparams"]["model"] == "conv")
                block = render_ae(res, s)
            elif name == "fid":
                res = run_fid(s, dirs, work)
                block = render_fid(res, s)
            elif name == "pretrain":
                res = run_pretrain(s, dirs, work, conv_dir)
                block = render_pretrain(res)
            else:
                res = run_anomaly(s, dirs, work)
                block = render_anomaly(res)
            res["section_s"] = time.perf_counter() - t0
            results[name] = res
            blocks.append(block + f"\n\nSection time: {res['section_s']:.0f} s.")
            print("\n" + blocks[-1] + "\n", flush=True)
            results["total_s"] = time.perf_counter() - t_all
            # after every section: a long run keeps what it finished; no machine paths in the repo
            write_results(out_file, without_path(results, work, "<bench tmp dir>"))
    log.info("wrote %s (%.0f s)", out_file, time.perf_counter() - t_all)
    return 0


if __name__ == "__main__":
    sys.exit(main())
