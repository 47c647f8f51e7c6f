"""MLflow's own servers over the pipeline's store: `mlflow models serve` answers the champion
(the pyfunc), and `quartet ui` shows the runs and the registry, on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import BIN, LOOPBACK, QUARTET, background, free_port, listening_addresses, wait_http

pytestmark = pytest.mark.integration


def test_mlflow_models_serve_answers_the_champion(trained_repo: Path) -> None:
    port = free_port()
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{trained_repo / 'mlruns' / 'mlflow.db'}"}
    cmd = [str(BIN / "mlflow"), "models", "serve", "-m", "models:/quartet-forecaster-synthetic@champion",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    with background(cmd, trained_repo, trained_repo / "mlflow-serve.log", env):
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/ping", timeout=120)
        body = {"inputs": {"task": "synthetic", "series": [[0.1 * i for i in range(50)]], "horizon": 10}}
        r = requests.post(url + "/invocations", data=json.dumps(body), headers={"content-type": "application/json"},
                          timeout=30)
        assert r.status_code == 200, r.text
        assert np.shape(r.json()["predictions"][0]["forecast"]) == (1, 10)
        body["inputs"]["intervals"] = [0.9]  # optional in the signature, as on Serve's route
        r = requests.post(url + "/invocations", data=json.dumps(body), headers={"content-type": "application/json"},
                          timeout=30)
        assert r.status_code == 200, r.text
        (band,) = r.json()["predictions"][0]["intervals"]
        assert band["level"] == 0.9 and np.shape(band["lower"]) == np.shape(band["upper"]) == (1, 10)
        bad = {"inputs": {"task": "synthetic", "series": [[0.1] * 50], "horizon": 99}}
        r = requests.post(url + "/invocations", data=json.dumps(bad), headers={"content-type": "application/json"},
                          timeout=30)
        assert r.status_code >= 400 and "exceeds" in r.text


def test_quartet_ui_shows_the_pipeline_runs_on_loopback(trained_repo: Path) -> None:
    port = free_port()
    with background([*QUARTET, "ui", "--port", str(port)], trained_repo, trained_repo / "ui.log") as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", timeout=90)
        r = requests.post(url + "/ajax-api/2.0/mlflow/experiments/search", json={"max_results": 50}, timeout=30)
        names = {e["name"] for e in r.json()["experiments"]}
        assert {"quartet/forecaster/synthetic", "quartet/forecaster/vic_elec"} <= names
        r = requests.get(url + "/ajax-api/2.0/mlflow/registered-models/alias",
                         params={"name": "quartet-forecaster-vic_elec", "alias": "champion"}, timeout=30)
        assert r.status_code == 200 and r.json()["model_version"]["version"] == "1"
        listeners = listening_addresses(proc)
        assert listeners and all(ip in LOOPBACK for ip, _ in listeners), listeners
