"""`mlflow models serve -m models:/quartet-forecaster-synthetic@champion` answers too (the pyfunc)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import BIN, free_port, wait_http

pytestmark = pytest.mark.integration


def test_mlflow_models_serve_answers_the_champion(trained_repo: Path) -> None:
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{trained_repo / 'mlruns' / 'mlflow.db'}"}
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/quartet-forecaster-synthetic@champion",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    log = open(trained_repo / "mlflow-serve.log", "w")
    proc = subprocess.Popen(cmd, cwd=trained_repo, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", timeout=120)
        body = {"inputs": {"task": "synthetic", "series": [[0.1 * i for i in range(50)]], "horizon": 10}}
        r = requests.post(f"http://127.0.0.1:{port}/invocations", data=json.dumps(body),
                          headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
        prediction = r.json()["predictions"][0]
        assert np.shape(prediction["forecast"]) == (1, 10)
        bad = {"inputs": {"task": "synthetic", "series": [[0.1] * 50], "horizon": 99}}
        r = requests.post(f"http://127.0.0.1:{port}/invocations", data=json.dumps(bad),
                          headers={"content-type": "application/json"}, timeout=30)
        assert r.status_code >= 400 and "exceeds" in r.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_quartet_ui_shows_the_pipeline_runs_on_loopback(trained_repo: Path) -> None:
    import sys

    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    log = open(trained_repo / "ui.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "ui", "--port", str(port)], cwd=trained_repo,
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", timeout=90)
        r = requests.post(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search",
                          json={"max_results": 50}, timeout=30)
        names = {e["name"] for e in r.json()["experiments"]}
        assert {"quartet/forecaster/synthetic", "quartet/forecaster/vic_elec"} <= names
        r = requests.get(f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/registered-models/alias",
                         params={"name": "quartet-forecaster-vic_elec", "alias": "champion"}, timeout=30)
        assert r.status_code == 200 and r.json()["model_version"]["version"] == "1"
        import psutil

        pids = {proc.pid} | {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
        listening = [c.laddr.ip for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.pid in pids]
        assert listening and set(listening) <= {"127.0.0.1"}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
