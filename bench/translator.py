"""Translator benchmarks (book ch. 16): date-format exact match, and an EN->ES model table.

Why this exists: the issue's targets are (a) >= 99.9 % whole-string exact match on the 2,000 test
dates with greedy decoding, with the training time on this 2-core machine, and (b) BLEU/chrF on the
two EN->ES test sets (shuffled verses, `test_*`; held-out books, `test_books_*`) for the plain
encoder-decoder, + attention, the Transformer with constant-rate Adam, and the Transformer recipe
(warm-up + inverse-sqrt rate per step, label smoothing, a shared BPE vocabulary, tied embeddings),
each decoded greedily and with beam search (k = 4). A row may name its own prepare params
(the recipe needs `shared_vocab`); rows with the same ones share one prepared dir. Each row uses
the library's own pieces (`data.prepare`, the family's loop in a plain session through
`quartet.api`, the evaluate stage), so a regression in the library shows up here. No Ray is needed.

    python -m bench.translator [--only dates|en-es] [--rows NAME ...] [--epochs-dates N] [--epochs-en-es N] [--quick]

Writes bench/results/translator.json and prints a Markdown table (the lead merges it into
BENCHMARKS.md). `--quick` is a smoke test of this script (small splits, 1 epoch).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from components.config import REPO_ROOT
from components.data import write_json
from components.train import train_plain
from families.translator import FAMILY, data
from quartet import api

log = logging.getLogger("bench.translator")

RAW_DIR = REPO_ROOT / "data" / "translator"
OUT = REPO_ROOT / "bench" / "results" / "translator.json"
SEED = 42
DATES_HP = {"model": "attention", "attention": "luong", "bidirectional": True, "cell": "gru", "emb_dim": 32,
            "hidden": 128, "lr": 0.002, "batch_size": 32}
# name -> (hparams, prepare params over the default ones, epochs or None for --epochs-en-es)
SHARED_VOCAB = {"shared_vocab": True, "vocab_size": 4000}
RECIPE = {"model": "transformer", "heads": 4, "layers": 2, "dropout": 0.1, "label_smoothing": 0.1, "batch_size": 64,
          "lr_schedule": "inverse_sqrt", "warmup_steps": 400, "tie_output": True, "share_embeddings": True}
EN_ES_ROWS: dict[str, tuple[dict[str, Any], dict[str, Any], int | None]] = {
    "encoder-decoder (bi-GRU 256)": ({"model": "seq2seq", "bidirectional": True, "emb_dim": 128, "hidden": 256,
                                      "lr": 0.001, "batch_size": 64, "dropout": 0.1}, {}, None),
    "+ attention (bi-GRU 256, Luong)": ({"model": "attention", "attention": "luong", "bidirectional": True,
                                         "emb_dim": 128, "hidden": 256, "lr": 0.001, "batch_size": 64, "dropout": 0.1},
                                        {}, None),
    "Transformer (2+2 x 128, 4 heads)": ({"model": "transformer", "hidden": 128, "heads": 4, "ff_dim": 512,
                                          "layers": 2, "lr": 0.0005, "batch_size": 64, "dropout": 0.1,
                                          "label_smoothing": 0.1}, {}, None),
    "Transformer recipe (2+2 x 128), 8 epochs": (RECIPE | {"hidden": 128, "ff_dim": 512, "lr": 0.002},
                                                 SHARED_VOCAB, 8),
    "Transformer recipe (2+2 x 192), 18 epochs": (RECIPE | {"hidden": 192, "ff_dim": 768, "lr": 0.002},
                                                  SHARED_VOCAB, 18),
}


def raw_dir(tmp: Path) -> Path:
    """data/translator when `make data` has run, else a fresh ingest (needs diatheke for en-es)."""
    if (RAW_DIR / data.DATES_FILE).is_file() and (RAW_DIR / data.EN_ES_FILE).is_file():
        return RAW_DIR
    data.ingest(tmp / "raw", SEED)
    return tmp / "raw"


def run_row(task_name: str, hp: dict[str, Any], prepared: Path, epochs: int, out: Path, threads: int) -> dict[str, Any]:
    config = api.loop_config(FAMILY, task_name, hp, prepared, epochs, SEED, threads=threads)
    result = train_plain(FAMILY.loop, config, out)
    t0 = time.perf_counter()
    metrics = api.evaluate(FAMILY, out, prepared, out.parent / f"{out.name}-plots", {"beam_width": 4})
    eval_s = time.perf_counter() - t0
    history = result.history
    best_epoch = max(range(len(history)), key=lambda i: history[i][config.metric.val])
    val = [k for k in ("val_bleu", "val_chrf", "val_exact_match") if k in history[0]]
    return {"hparams": config.hparams, "epochs": epochs, "best_epoch": best_epoch + 1, "train_s": round(result.wall_s, 1),
            "eval_s": round(eval_s, 1), "metrics": metrics,
            "history": [{k: round(float(h[k]), 4) for k in ("train_loss", "epoch_time_s", "lr", *val)}
                        for h in history]}


def bench_dates(tmp: Path, raw: Path, epochs: int, quick: bool, threads: int) -> dict[str, Any]:
    split = [1000, 300, 300] if quick else [10_000, 2_000, 2_000]
    data.prepare("dates", {"split": split}, raw, tmp / "dates", SEED)
    row = run_row("dates", DATES_HP, tmp / "dates", epochs, tmp / "dates-model", threads)
    row["target_test_exact_match"] = 0.999
    row["meets_target"] = row["metrics"]["test_exact_match"] >= 0.999
    return row


def bench_en_es(tmp: Path, raw: Path, epochs: int, quick: bool, threads: int, only: list[str] | None) -> dict[str, Any]:
    base = {"max_pairs": 1500, "val_size": 200, "test_size": 200, "vocab_size": 500} if quick else {}
    rows, counts, prepared = {}, None, {}
    for name, (hp, prep, row_epochs) in EN_ES_ROWS.items():
        if only and name not in only:
            continue
        params = base | prep | ({"vocab_size": 500} if quick else {})
        key = json.dumps(params, sort_keys=True)
        if key not in prepared:
            prepared[key] = tmp / f"en-es-{len(prepared)}"
            counts = data.prepare("en-es", params, raw, prepared[key], SEED)["counts"]
        log.info("en-es: %s", name)
        n = 1 if quick else (row_epochs or epochs)
        rows[name] = run_row("en-es", hp, prepared[key], n, tmp / f"en-es-model-{len(rows)}", threads)
        rows[name]["prepare"] = params or "default"
        log.info("%s: %s", name, rows[name]["metrics"])
    return {"counts": counts, "rows": rows}


def markdown(results: dict[str, Any]) -> str:
    lines = []
    if "dates" in results:
        r = results["dates"]
        m = r["metrics"]
        lines += ["| dates (2,000 test) | exact match greedy | beam 4 | char acc. | epochs (best) | train s |",
                  "|---|---|---|---|---|---|",
                  f"| bi-GRU 128 + Luong attention | {m['test_exact_match']:.4f} | {m['test_exact_match_beam']:.4f} | "
                  f"{m['test_char_accuracy']:.4f} | {r['epochs']} ({r['best_epoch']}) | {r['train_s']} |", ""]
    if "en-es" in results:
        lines += ["| EN->ES | shuffled test: BLEU greedy | beam 4 | chrF greedy | beam 4 | held-out books: BLEU greedy "
                  "| beam 4 | chrF greedy | beam 4 | epochs (best) | train s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for name, r in results["en-es"]["rows"].items():
            m = r["metrics"]
            books = [f"{m[k]:.2f}" if k in m else "-" for k in ("test_books_bleu", "test_books_bleu_beam",
                                                               "test_books_chrf", "test_books_chrf_beam")]
            lines.append(f"| {name} | {m['test_bleu']:.2f} | {m['test_bleu_beam']:.2f} | {m['test_chrf']:.2f} | "
                         f"{m['test_chrf_beam']:.2f} | {' | '.join(books)} | {r['epochs']} ({r['best_epoch']}) | "
                         f"{r['train_s']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["dates", "en-es"], help="run one section")
    ap.add_argument("--epochs-dates", type=int, default=4)
    ap.add_argument("--epochs-en-es", type=int, default=20, help="epochs of the en-es rows that name none")
    ap.add_argument("--rows", nargs="+", choices=list(EN_ES_ROWS), help="only these en-es rows")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: what a Tune trial gets here)")
    ap.add_argument("--quick", action="store_true", help="smoke test: small splits, 1 epoch")
    ap.add_argument("--out", type=Path, default=None, help=f"results JSON (default {OUT}; /tmp for --quick)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    out = args.out or (Path("/tmp/translator.quick.json") if args.quick else OUT)
    e_dates, e_en_es = (1, 1) if args.quick else (args.epochs_dates, args.epochs_en_es)
    command = "python -m bench.translator " + " ".join(argv if argv is not None else sys.argv[1:])
    results: dict[str, Any] = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
                               "torch": torch.__version__, "threads": args.threads}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        raw = raw_dir(tmp)
        if args.only in (None, "dates"):
            results["dates"] = bench_dates(tmp, raw, e_dates, args.quick, args.threads) | {"command": command}
        if args.only in (None, "en-es"):
            results["en-es"] = (bench_en_es(tmp, raw, e_en_es, args.quick, args.threads, args.rows)
                                | {"command": command})
    # A one-section run keeps the other section's last results; rows are not merged (an older row
    # may have been measured on other splits).
    if out.is_file():
        previous = json.loads(out.read_text())
        results = {**{k: v for k, v in previous.items() if k in ("dates", "en-es")}, **results}
    table = markdown(results)
    results["markdown"] = table
    write_json(out, results)
    print(table)
    print(f"\nresults: {out}")


if __name__ == "__main__":
    main()
