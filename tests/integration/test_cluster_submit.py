"""`quartet submit tune` against a real two-node Ray cluster on loopback, with results in a real
`mlflow server`. The cluster is two raylets (head with the job server + one worker node) sharing
one GCS, started with ray.cluster_utils.Cluster: on this machine `ray start --address` refuses to
join a second node while Ray is kept on 127.0.0.1 (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), and with
that guard lifted Ray binds eth0 and 0.0.0.0 (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, background, free_port, wait_http

pytestmark = pytest.mark.integration


@pytest.fixture
def two_node_cluster() -> Iterator[tuple[str, object]]:
    import tempfile

    from ray.cluster_utils import Cluster

    node2_tmp = tempfile.mkdtemp(prefix="qn2-")  # short: Ray's unix socket paths must stay < 108 bytes
    dashboard_port = free_port()
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={"num_cpus": 2, "include_dashboard": True, "dashboard_host": "127.0.0.1",
                        "dashboard_port": dashboard_port, "object_store_memory": 128 * 1024**2},
    )
    try:
        # Its own temp dir, as on a real second machine: two nodes unpacking the job's working_dir
        # into one shared session folder would delete it under each other's running processes.
        cluster.add_node(num_cpus=2, object_store_memory=128 * 1024**2, temp_dir=node2_tmp)
        cluster.wait_for_nodes(timeout=60)
        url = f"http://127.0.0.1:{dashboard_port}"
        wait_http(url + "/api/version", timeout=60)
        yield url, cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(node2_tmp, ignore_errors=True)


@pytest.fixture
def mlflow_server(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}", "--artifacts-destination", str(tmp_path / "art")]
    with background(cmd, tmp_path, tmp_path / "mlflow-server.log", {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}):
        wait_http(f"http://127.0.0.1:{port}/health", timeout=90)
        yield f"http://127.0.0.1:{port}"


def test_submit_tune_runs_on_the_cluster_and_lands_in_mlflow(two_node_cluster, mlflow_server, repo_copy: Path, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    address, cluster = two_node_cluster
    # A cluster profile sized for this test: a TorchTrainer per trial whose 2 workers span both nodes.
    profile = {
        "ray": {"address": "auto", "num_cpus": None, "storage_path": str(tmp_path / "shared" / "ray_results")},
        "paths": {"outputs_root": str(tmp_path / "shared")},
        "families": {"forecaster": {"synthetic": {
            "prepare": {"split": [300, 100, 100]},
            "tune": {"models": ["gru"], "num_samples": 2, "epochs": 2, "max_concurrent": 2, "launcher": "trainer",
                     "num_workers_per_trial": 2, "search_space": {"gru": {"hidden": {"choice": [4, 8]}}}},
            "train": {"epochs": 2, "hparams": {"layers": 1, "batch_size": 64}},
        }}},
    }
    (repo_copy / "profiles" / "testcluster.yaml").write_text(yaml.safe_dump(profile))
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "submit", "tune", "forecaster", "--address", address,
         "--task", "synthetic", "--profile", "testcluster", "--mlflow-uri", mlflow_server, "--timeout", "400"],
        cwd=repo_copy, capture_output=True, text=True, timeout=480,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "SUCCEEDED" in proc.stdout
    # The job wrote its splits and best params to the shared outputs root, not its uploaded copy.
    shared = tmp_path / "shared"
    assert (shared / "prepared" / "forecaster" / "synthetic" / "train.parquet").is_file()
    assert yaml.safe_load((shared / "tuning" / "forecaster" / "synthetic" / "best_params.yaml").read_text())["trials"] == 2

    client = MlflowClient(tracking_uri=mlflow_server)
    exp = client.get_experiment_by_name("quartet/forecaster/synthetic")
    runs = client.search_runs([exp.experiment_id])
    sweeps = [r for r in runs if r.data.tags.get("quartet.stage") == "tune"]
    trials = [r for r in runs if r.data.tags.get("quartet.stage") == "tune-trial"]
    assert len(sweeps) == 1 and len(trials) == 2
    assert all(t.data.tags["mlflow.parentRunId"] == sweeps[0].info.run_id for t in trials)
    assert sweeps[0].data.params["tune.launcher"] == "trainer"
    assert sweeps[0].data.tags["git.commit"] not in ("", "unknown")  # passed along: jobs travel without .git
    assert "best_val_mse" in sweeps[0].data.metrics
