"""`python -m quartet.stage STAGE FAMILY TASK [--profile P]`: what each DVC stage runs.

Why not `quartet STAGE ...` (the CLI): a DVC stage depends on the code it runs, and this entry
imports only components/stages.py, the components it calls and the one family, so editing the
CLI (or another family) reruns nothing. Errors a user can fix exit 2 with one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any


def main(argv: list[str] | None = None) -> int:
    from components import cluster

    cluster.apply_env()  # first: the kernel pins and Ray's loopback settings, before torch or Ray load
    from components import stages
    from components.config import REPO_ROOT, ConfigError, load

    parser = argparse.ArgumentParser(prog="python -m quartet.stage", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=list(stages.STAGES))
    parser.add_argument("family")
    parser.add_argument("task")
    parser.add_argument("--profile", default=os.environ.get("QUARTET_PROFILE"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=os.environ.get("QUARTET_LOG", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_benign_warnings(sys.stderr.isatty())
    t0 = time.perf_counter()
    try:
        from families import get

        out = stages.STAGES[args.stage](get(args.family), args.task, load(REPO_ROOT, args.profile), REPO_ROOT)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TimeoutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    metric = get(args.family).metrics[args.task].test
    print(summary(args.stage, f"{args.family}/{args.task}", out, time.perf_counter() - t0, metric))
    return 0


BENIGN_WARNING = "Add type hints to the `predict` method"


def quiet_benign_warnings(terminal: bool) -> None:
    """What a stage's user need not read: MLflow's hint to type-annotate `predict` (our pyfunc
    takes a logged signature instead) and, outside a terminal, its per-file download bars."""
    import warnings

    # Not a filter: MLflow re-enables UserWarnings inside its own catch_warnings, so the display
    # hook is what can drop it.
    show = warnings.showwarning

    def show_unless_benign(message: Any, category: type, *args: Any, **kwargs: Any) -> None:
        if BENIGN_WARNING not in str(message):
            show(message, category, *args, **kwargs)

    warnings.showwarning = show_unless_benign
    if not terminal:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def summary(stage: str, task: str, out: Any, seconds: float, test_metric: str = "") -> str:
    """The one line a stage ends with: what it produced, in the terms a user looks for."""
    head = f"{stage} {task} done in {seconds:.1f} s"
    out = out if isinstance(out, dict) else {}
    if stage == "prepare" and isinstance(out.get("counts"), dict):
        return f"{head}: " + ", ".join(f"{k} {v}" for k, v in out["counts"].items())
    if stage == "tune" and "value" in out:
        return f"{head}: best {out['metric']} {out['value']:.5g} of {out['trials']} trials ({out['hparams'].get('model')})"
    if stage == "train" and "epochs" in out:
        return f"{head}: {out['epochs']} epochs, MLflow run {out['run_id']}"
    if stage == "evaluate" and test_metric in out:
        return f"{head}: {test_metric} {out[test_metric]:.5g}"
    if stage == "register" and "version" in out:
        verdict = "promoted to @champion" if out["promoted"] else "not promoted"
        return f"{head}: {out['name']} v{out['version']} {verdict} ({out['reason']})"
    return head


if __name__ == "__main__":
    sys.exit(main())
