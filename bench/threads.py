"""Torch threads per training worker: one epoch at 1 thread and at 2, side by side, per task.

Why this exists: the default profile gives its single-worker trainings of the translator,
generative and LunarLander tasks both cores of a 2-core laptop (`train.cpus_per_worker: 2`, so 2
torch threads; `components/train.py: worker_threads`). This measures what that buys per task: the
same family loop (`quartet.api.train_plain`, the pipeline's tuned hparams from
`tuning/*/best_params.yaml` under `train.hparams`) runs one epoch with threads 1 then 2, in one
process, on the pipeline's prepared splits (run `make repro` first). The ratio is what counts;
the machine is noisy. It also reports whether the two runs' last training losses are equal: they
differ in the last bits, which is why the thread count is a param and not a fact of the machine.

    python -m bench.threads [--tasks translator/en-es,generative/fashion-mnist,...] [--max-train-samples N]

Prints Markdown and writes bench/results/threads.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from components import config
from components.config import REPO_ROOT
from components.data import write_json
from components.stages import task_params, train_hparams
from families import get
from quartet import api

RESULTS = REPO_ROOT / "bench" / "results" / "threads.json"
TASKS = ("translator/en-es", "translator/web-chars", "translator/dates", "generative/fashion-mnist",
         "generative/fashion-mnist-autoencoder", "rl/LunarLander-v3")


def one_epoch(family: str, task: str, threads: int, max_train_samples: int | None) -> dict[str, Any]:
    """One epoch of the task's final training with `threads` torch threads: its timings and last loss."""
    params = config.load()
    fam = get(family)
    tp = task_params(params, fam, task)
    lay = config.layout(family, task, params=params)
    if not (lay.prepared_dir / "info.json").exists():
        raise SystemExit(f"{lay.prepared_dir} is missing: run `make repro` (or `quartet prepare {family} {task}`) first")
    hparams, _ = train_hparams(fam, task, tp, lay.best_params)
    t0 = time.perf_counter()
    result = api.train_plain(family, task, hparams, lay.prepared_dir, 1, seed=params.seed, threads=threads,
                             max_train_samples=max_train_samples)
    last = result.history[-1]
    return {"threads": threads, "wall_s": round(time.perf_counter() - t0, 2),
            "epoch_time_s": round(float(last.get("epoch_time_s", result.wall_s)), 2),
            "train_loss": last.get("train_loss", last.get("loss"))}


def render(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | epoch s, 1 thread | epoch s, 2 threads | speed-up | last training loss equal? |",
             "|---|---|---|---|---|"]
    for r in rows:
        one, two = r["runs"]
        same = "yes" if one["train_loss"] == two["train_loss"] else f"no ({one['train_loss']:.9g} vs {two['train_loss']:.9g})"
        lines.append(f"| {r['task']} | {one['epoch_time_s']:.2f} | {two['epoch_time_s']:.2f} | "
                     f"{one['epoch_time_s'] / two['epoch_time_s']:.2f}x | {same} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.threads", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default=",".join(TASKS), help="family/task,... (default: the tasks given 2 CPUs)")
    p.add_argument("--max-train-samples", type=int, default=None, help="cap the epoch (default: the whole split)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    rows = []
    for spec in args.tasks.split(","):
        family, _, task = spec.partition("/")
        runs = [one_epoch(family, task, n, args.max_train_samples) for n in (1, 2)]
        rows.append({"task": spec, "runs": runs})
        print(f"{spec}: {runs}", flush=True)
    table = render(rows)
    print("\n" + table)
    write_json(args.out, {
        "command": "python -m bench.threads " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows, "table": table})
    print(json.dumps({"wrote": str(args.out)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
