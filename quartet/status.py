"""`quartet status`: where this checkout stands, on one screen.

What a user asks before running anything: what would `dvc repro` redo, which version serves each
task and how good it is, is the served app up, and which tracking store all this came from. Each
question is answered by the tool that owns the answer (`dvc status`, the MLflow registry, the app's
`/health`), each with a timeout, and a question that cannot be answered says why instead of
failing the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components import config, track
from components.config import Params


@dataclass(frozen=True)
class Champion:
    """One task's `@champion` (version None: none registered, or the registry could not say)."""

    family: str
    task: str
    name: str
    version: str | None = None
    metric: str | None = None
    value: float | None = None
    error: str = ""


@dataclass(frozen=True)
class Status:
    tracking_uri: str
    stale: dict[str, list[str]] | None  # dvc stage -> what changed; None when dvc could not say
    stale_error: str
    champions: list[Champion]
    served: dict[str, Any] | None  # the app's /health, None when it does not answer
    served_url: str

    def as_dict(self) -> dict[str, Any]:
        return {"tracking_uri": self.tracking_uri, "stale_stages": self.stale, "stale_error": self.stale_error,
                "champions": [c.__dict__ for c in self.champions], "served_url": self.served_url,
                "served": self.served}


def stale_stages(root: Path, timeout_s: float = 120) -> tuple[dict[str, list[str]] | None, str]:
    """`dvc status --json` -> (stage -> the kinds of change, ""), or (None, why not)."""
    try:
        proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, capture_output=True,
                              text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None, f"dvc status gave no answer within {timeout_s:.0f} s"
    if proc.returncode != 0:
        return None, "dvc status failed: " + (proc.stderr.strip().splitlines() or ["(no message)"])[-1][:300]
    try:
        raw = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        return None, f"dvc status printed no JSON: {proc.stdout[:200]!r}"
    return {stage: describe_changes(changes) for stage, changes in raw.items()}, ""


def describe_changes(changes: list[Any]) -> list[str]:
    """dvc's [{"changed deps": {"components": "modified"}}, "changed command", ...] ->
    ["changed deps: components", "changed command"] (which paths, not only that something moved)."""
    out = []
    for change in changes:
        if isinstance(change, dict):
            out += [f"{kind}: {', '.join(sorted(paths))}" if isinstance(paths, dict) else kind
                    for kind, paths in change.items()]
        else:
            out.append(str(change))
    return out


def champions(families: dict[str, Any]) -> list[Champion]:
    """Every (family, task)'s champion and its test metric, from the registry MLflow points at."""
    out = []
    for fam in families.values():
        for task in fam.all_tasks:
            name = track.registered_name(fam.name, task)
            try:
                mv = track.champion(name)
                if mv is None:
                    if task in fam.tasks:  # an extra task (trained on request) without one is not missing
                        out.append(Champion(fam.name, task, name))
                    continue
                info = track.version_info(mv)
            except Exception as e:  # noqa: BLE001 - an unreachable store is reported, not raised
                out.append(Champion(fam.name, task, name, error=f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"))
                continue
            metric = info.get("metric") or fam.metrics[task].test
            value = info["test_metrics"].get(metric)
            out.append(Champion(fam.name, task, name, info["version"], metric, value))
    return out


def served_health(url: str, timeout_s: float = 3) -> dict[str, Any] | None:
    """The app's /health body (its 503 too: it says which tasks are down), None when nothing answers."""
    import requests

    try:
        r = requests.get(url + "/health", timeout=timeout_s)
        return r.json()
    except (requests.RequestException, ValueError):
        return None


def gather(params: Params, families: dict[str, Any], root: Path, port: int | None = None) -> Status:
    import mlflow

    uri = config.tracking_uri(params, root)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")  # a tracking server that hangs must not hang us
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    mlflow.set_tracking_uri(uri)
    stale, why = stale_stages(root)
    url = f"http://{params.serve.host}:{port or params.serve.port}"
    return Status(uri, stale, why, champions(families), served_health(url), url)


def render(s: Status) -> str:
    """The human view; `--json` prints `as_dict()` instead."""
    lines = [f"tracking store   {s.tracking_uri}"]
    if s.stale is None:
        lines.append(f"pipeline         unknown: {s.stale_error}")
    elif not s.stale:
        lines.append("pipeline         up to date (dvc repro has nothing to run)")
    else:
        lines.append(f"pipeline         {len(s.stale)} stage(s) changed; `dvc repro` reruns them and what follows:")
        lines += [f"  {stage:<46} {'; '.join(kinds)}" for stage, kinds in sorted(s.stale.items())]
    lines.append("champions")
    for c in s.champions:
        if c.error:
            what = f"unknown: {c.error}"
        elif c.version is None:
            what = "none registered (make repro)"
        else:
            value = "n/a" if c.value is None else f"{c.value:.6g}"
            what = f"v{c.version}  {c.metric} = {value}"
        lines.append(f"  {c.family + '/' + c.task:<36} {what}")
    if s.served is None:
        lines.append(f"served app       not running at {s.served_url} (make serve)")
    else:
        lines.append(f"served app       {s.served.get('status', '?')} at {s.served_url}")
        for family, h in sorted((s.served.get("families") or {}).items()):
            down = h.get("unavailable") or {}
            extra = f"; unavailable: {', '.join(sorted(down))}" if down else ""
            lines.append(f"  {family:<36} {h.get('status', '?')} ({', '.join(h.get('ready', [])) or 'no task ready'}{extra})")
    return "\n".join(lines)
