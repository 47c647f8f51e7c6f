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
