"""What "the metrics reproduce" means, checked: `dvc metrics diff` against committed tolerances.

`reproducibility.yaml` (repo root) says, per metrics file, how far a rerun's values may move from
the committed ones: `{abs: x}` or `{rel: x}` (of |old|), with per-key overrides under `keys` (glob patterns allowed); a
file or key without an entry must be bit-identical. The numbers in it were measured (README §
Reproducibility, BENCHMARKS.md § Reproducibility); `quartet check-metrics` runs the check after a
`make repro` on a new machine, and the tests run it on a rerun of the tiny pipeline.
"""

from __future__ import annotations

import fnmatch
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from components.config import REPO_ROOT, ConfigError, read_yaml

TOLERANCES = "reproducibility.yaml"


def tolerance_for(tolerances: dict[str, Any], path: str, key: str) -> tuple[str, float]:
    """("abs" | "rel", value) for one metric; ("abs", 0.0) when nothing is listed."""
    entry = (tolerances.get("files") or {}).get(path) or {}
    keys = entry.get("keys") or {}
    own = keys.get(key) or next((v for pattern, v in keys.items() if fnmatch.fnmatchcase(key, pattern)), None) or entry
    for kind in ("abs", "rel"):
        if kind in own:
            return kind, float(own[kind])
    return "abs", 0.0


def within(old: Any, new: Any, kind: str, tol: float) -> bool:
    if not all(isinstance(v, (int, float)) for v in (old, new)):
        return old == new
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) and math.isnan(new)
    allowed = tol if kind == "abs" else tol * abs(old)
    return abs(new - old) <= allowed


def check_diff(diff: dict[str, dict[str, dict[str, Any]]], tolerances: dict[str, Any]) -> list[str]:
    """Every metric of a `dvc metrics diff --json` that moved more than its tolerance, as one
    line each ("metrics/x.json: key 1.0 -> 2.0 (allowed abs 0.5)")."""
    problems = []
    for path, keys in sorted(diff.items()):
        for key, change in sorted(keys.items()):
            old, new = change.get("old"), change.get("new")
            if old is None or new is None:
                problems.append(f"{path}: {key} is {'new' if old is None else 'gone'} ({old} -> {new})")
                continue
            kind, tol = tolerance_for(tolerances, path, key)
            if not within(old, new, kind, tol):
                problems.append(f"{path}: {key} {old} -> {new} (allowed {kind} {tol:g})")
    return problems


def metrics_diff(rev: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """`dvc metrics diff --json REV` (workspace against REV)."""
    dvc = str(Path(sys.executable).parent / "dvc")
    proc = subprocess.run([dvc, "metrics", "diff", "--json", rev], cwd=root, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise ConfigError(f"dvc metrics diff {rev} failed: {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout or "{}")


def check(rev: str = "HEAD", root: Path = REPO_ROOT) -> list[str]:
    return check_diff(metrics_diff(rev, root), read_yaml(root / TOLERANCES))
