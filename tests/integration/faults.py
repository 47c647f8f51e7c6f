"""Fault injection shared by the per-family Ray Train tests: kill real Train worker processes
mid-run and check the run resumed from its last checkpoint."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil

from components import config
from components.session import LoopConfig
from components.train import TrainResult, fit

REPO = Path(__file__).resolve().parents[2]


def params_with_storage(tmp_path: Path, profile: str | None = "tiny") -> config.Params:
    params = config.load(REPO, profile)
    return params.model_copy(update={"ray": params.ray.model_copy(update={"storage_path": str(tmp_path / "ray_results")})})


def train_worker_pids() -> list[int]:
    """The RayTrainWorker actor processes of the Ray this test process started (its descendants:
    never another session's workers on the same machine)."""
    pids = []
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "RayTrainWorker" in cmd and "_RayTrainWorker__execute" not in cmd:
            pids.append(p.pid)
    return pids


def fit_killing_a_worker(loop: Any, cfg: LoopConfig, tmp_path: Path, num_workers: int = 2, kill_after_epoch: int = 2,
                         timeout_s: float = 300) -> TrainResult:
    """`fit` with `num_workers` gloo workers; once the checkpoint of `kill_after_epoch` exists, one
    worker process is killed (SIGKILL). Returns the finished run's result (raises on failure).

    Why epoch 2 by default: in Ray 2.60 a worker holds at most one unsent report and the
    controller collects reports every ~2 s, so epoch N's checkpoint folder can exist before epoch
    N-1's report is registered; once epoch 2's folder exists, epoch 0's checkpoint is registered
    and a restore has something to resume from."""
    outcome: dict[str, Any] = {}
    name = f"kill-{cfg.family}-{cfg.task}"

    def run() -> None:
        try:
            outcome["result"] = fit(loop, cfg, params_with_storage(tmp_path), num_workers=num_workers, cpus_per_worker=1,
                                    max_failures=2, out_model_dir=tmp_path / "model", run_name=name)
        except BaseException as e:  # surfaced below
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    checkpoint = tmp_path / "ray_results" / name / f"epoch={kill_after_epoch:04d}"
    deadline = time.monotonic() + timeout_s
    while not checkpoint.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert checkpoint.exists(), f"no checkpoint {checkpoint.name} appeared: {outcome}"
    pids = train_worker_pids()
    assert pids, "no RayTrainWorker process found"
    psutil.Process(pids[-1]).kill()
    thread.join(timeout=timeout_s)
    assert not thread.is_alive(), "training did not finish after a worker was killed"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def assert_resumed(history: list[dict[str, Any]], epochs: int, world_size: int) -> None:
    """Every epoch ran once, with all workers, and the epochs after the kill ran in a new worker
    group that restored a checkpoint (resumed_at_epoch > 0; from scratch would give 0)."""
    assert [h["epoch"] for h in history] == list(range(epochs)), [h["epoch"] for h in history]
    assert all(h["world_size"] == world_size for h in history)
    resumed = {h["resumed_at_epoch"] for h in history}
    assert resumed - {0}, f"no epoch ran after a restore: {resumed}"
