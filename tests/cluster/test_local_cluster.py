"""A real cluster of separate hosts on this machine, end to end, started the way a user starts it.

`quartet cluster up` (as `make cluster-up` runs it) in a copy of the repo: network-namespace hosts
on a bridge, PostgreSQL, a Postgres-backed `mlflow server` with basic auth and proxied artifacts,
`ray start --head` with token auth and two `ray start --address` workers. Then, as a user would:
push the data to the DVC remote, `quartet submit tune` (trials across both worker hosts; one
host's raylet is SIGKILLed mid-sweep and brought back), `quartet submit train`, `quartet serve
--address`, and `quartet cluster down`, which must leave no process, namespace or link behind.

Its own cluster name and subnet, so a user's `make cluster-up` cluster is never touched. The
module fixture tears the cluster down even when a test fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml

from tests.conftest import QUARTET, copy_repo, run

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

NAME, SUBNET = "qt", "10.213.9.0/24"
TEST_PROFILE = {"cluster": {"name": NAME, "subnet": SUBNET, "ready_timeout_s": 90}}
# The sweep the host is killed in: long enough (40 epochs) that the kill lands mid-trial, and ASHA's
# grace period covers the run so the trial is not stopped early for a reason other than the kill.
KILL_PROFILE = {"families": {"forecaster": {"synthetic": {
    "tune": {"models": ["gru"], "num_samples": 2, "epochs": 40, "grace_period": 40,
             "search_space": {"gru": {"hidden": {"choice": [8, 16]}}}},
}}}}


def _root_and_tools() -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    from components import config, localcluster

    reason = _root_and_tools()
    if reason:
        pytest.fail(f"the cluster tests {reason}: run `make test` as root (CI does)")
    root = copy_repo(tmp_path_factory.mktemp("cluster") / "repo")
    (root / "profiles" / "testhosts.yaml").write_text(yaml.safe_dump(TEST_PROFILE))
    (root / "profiles" / "killtest.yaml").write_text(yaml.safe_dump(KILL_PROFILE))
    params = config.load(root, "testhosts")
    plan = localcluster.plan(params, root)
    t0 = time.perf_counter()
    try:
        up = run([*QUARTET, "cluster", "up", "--profile", "testhosts"], cwd=root, timeout=300)
        up_s = time.perf_counter() - t0
        env = localcluster.client_env(plan)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # MlflowClient in this process reads the server's credentials from here
        try:
            yield {"root": root, "plan": plan, "params": params, "env": env, "up_s": up_s, "up_out": up.stdout}
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    finally:
        localcluster.down(params, root)


def _timing(cluster: dict, key: str, seconds: float) -> None:
    path = cluster["root"] / "cluster_timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = round(seconds, 1)
    path.write_text(json.dumps(data))
    print(f"{key}: {seconds:.1f} s")


def test_up_starts_three_hosts_with_their_own_addresses_and_services(cluster: dict) -> None:
    from components import localcluster

    plan = cluster["plan"]
    _timing(cluster, "cluster_up_s", cluster["up_s"])
    nodes = localcluster.alive_nodes(plan)
    by_ip = {n["node_ip"]: n for n in nodes}
    assert set(by_ip) == {h.ip for h in plan.hosts}, nodes  # three hosts, three addresses
    for h in plan.hosts:  # each with the CPU count params gave it (head: none, it only coordinates)
        assert by_ip[h.ip]["resources_total"].get("CPU", 0) == h.cpus
    # Postgres, MLflow and the dashboard listen on the head's cluster address only.
    listeners = subprocess.run(["ip", "netns", "exec", plan.head.netns, "ss", "-tlnH"], capture_output=True,
                               text=True, timeout=10).stdout.split("\n")
    addrs = {line.split()[3] for line in listeners if line.strip()}
    for port in (5432, 5000, 8265):
        bound = {a for a in addrs if a.endswith(f":{port}")}
        assert bound == {f"{plan.head.ip}:{port}"}, (port, bound)
    # MLflow's backend is the PostgreSQL server: its tables live there.
    r = requests.get(plan.mlflow_url + "/health", timeout=10)
    assert r.status_code == 200
    # A second `up` changes nothing and is quick (idempotent).
    before = {h.name: sorted(localcluster.netns_pids(h.netns)) for h in plan.hosts}
    t0 = time.perf_counter()
    again = run([*QUARTET, "cluster", "up", "--profile", "testhosts"], cwd=cluster["root"], timeout=120)
    assert time.perf_counter() - t0 < 30
    assert {h.name: sorted(localcluster.netns_pids(h.netns)) for h in plan.hosts} == before
    status = run([*QUARTET, "cluster", "status", "--profile", "testhosts", "--json"], cwd=cluster["root"], timeout=60)
    s = json.loads(status.stdout)
    assert s["running"] and all(h["ray"] == "alive" for h in s["hosts"]) and s["mlflow_ok"]
    assert s["mlflow"] == plan.mlflow_url and s["dashboard"] == plan.dashboard_url
    assert "worker-2" in again.stdout


def test_requests_without_credentials_are_refused(cluster: dict) -> None:
    plan = cluster["plan"]
    assert requests.get(plan.dashboard_url + "/api/jobs/", timeout=10).status_code == 401
    assert requests.get(plan.dashboard_url + "/api/jobs/", timeout=10,
                        headers={"Authorization": "Bearer wrong"}).status_code == 403
    r = requests.get(plan.mlflow_url + "/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=10)
    assert r.status_code == 401
    # A job submitted with a wrong token is refused, with a message that says why (no traceback).
    env = {**cluster["env"], "RAY_AUTH_TOKEN": "0" * 64}
    proc = run([*QUARTET, "submit", "tune", "forecaster", "synthetic", "--address", plan.dashboard_url,
                "--profile", "cluster,tiny"], cwd=cluster["root"], timeout=120, check=False, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "token authentication failed" in proc.stderr and "Traceback" not in proc.stderr


def _train_worker_ips(plan) -> list[str]:
    from components import localcluster

    ip_of = {n["node_id"]: n["node_ip"] for n in localcluster.state_api(plan, "nodes")}
    actors = localcluster.state_api(plan, "actors", class_name="RayTrainWorker")
    return [ip_of.get(a["node_id"], "?") for a in actors if a["state"] == "ALIVE"]


def test_submit_tune_spans_both_workers_and_survives_a_killed_host(cluster: dict) -> None:
    from mlflow import MlflowClient

    from components import localcluster

    root, plan, params = cluster["root"], cluster["plan"], cluster["params"]
    run([*QUARTET, "data"], cwd=root, timeout=300)  # make data: materialise, check the md5, push to the remote
    assert (plan.dvc_remote / "files" / "md5").is_dir()
    t0 = time.perf_counter()
    log = open(root / "submit-tune.log", "w")
    proc = subprocess.Popen(
        [*QUARTET, "submit", "tune", "forecaster", "synthetic", "--address", plan.dashboard_url,
         "--profile", "cluster,tiny,killtest", "--timeout", "400"],
        cwd=root, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **cluster["env"]}, start_new_session=True)
    try:
        # Wait until a trial's Train workers run on both worker hosts, then kill worker-2 (raylet first).
        worker2 = plan.host("worker-2").ip
        end, ips = time.monotonic() + 240, []
        while time.monotonic() < end and proc.poll() is None:
            ips = _train_worker_ips(plan)
            if worker2 in ips and plan.host("worker-1").ip in ips:
                break
            time.sleep(0.5)
        assert worker2 in ips, f"no Train worker reached worker-2 (saw {ips}); see {root / 'submit-tune.log'}"
        killed = localcluster.stop_host(params, "worker-2", root)
        assert killed > 0 and not localcluster.raylet_pids(plan.host("worker-2"))
        time.sleep(3)
        localcluster.up(params, root)  # the host comes back and rejoins
        assert worker2 in {n["node_ip"] for n in localcluster.alive_nodes(plan)}
        proc.wait(timeout=420)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=30)
        log.close()
    out = (root / "submit-tune.log").read_text()
    _timing(cluster, "submit_tune_with_host_kill_s", time.perf_counter() - t0)
    assert proc.returncode == 0, out[-6000:]
    assert "SUCCEEDED" in out

    # Every trial and the sweep are in the Postgres-backed MLflow, none left RUNNING.
    client = MlflowClient(tracking_uri=plan.mlflow_url)
    exp = client.get_experiment_by_name("quartet/forecaster/synthetic")
    runs = client.search_runs([exp.experiment_id])
    sweeps = [r for r in runs if r.data.tags.get("quartet.stage") == "tune"]
    trials = [r for r in runs if r.data.tags.get("quartet.stage") == "tune-trial"]
    assert len(sweeps) == 1 and len(trials) == 2
    assert all(t.data.tags["mlflow.parentRunId"] == sweeps[0].info.run_id for t in trials)
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    assert all(t.info.status == "FINISHED" and t.data.metrics.get("epoch") == 39 for t in trials)
    resumed = max(t.data.metrics.get("resumed_at_epoch", 0) for t in trials)
    print(f"after the kill the killed trial resumed at epoch {resumed:g} (0: restarted from scratch)")
    assert sweeps[0].data.tags["git.commit"] not in ("", "unknown")
    # Trials ran their Train workers on both worker hosts (DDP across the bridge); checkpoints
    # are on the shared storage; the best parameters came back to this checkout.
    trial_nodes = set(_worker_ips_ever(plan))
    assert {plan.host("worker-1").ip, worker2} <= trial_nodes
    assert list((plan.shared_dir / "ray_results").glob("trial-*/epoch=*"))
    best = yaml.safe_load((root / "tuning" / "forecaster" / "synthetic" / "best_params.cluster.yaml").read_text())
    assert best["trials"] == 2 and best["hparams"]["model"] == "gru"
    assert best["mlflow_sweep_run_id"] == sweeps[0].info.run_id


def _worker_ips_ever(plan) -> list[str]:
    from components import localcluster

    ip_of = {n["node_id"]: n["node_ip"] for n in localcluster.state_api(plan, "nodes")}
    return [ip_of.get(a["node_id"], "?") for a in localcluster.state_api(plan, "actors", class_name="RayTrainWorker")]


def test_submit_train_registers_and_serve_answers_from_the_cluster(cluster: dict) -> None:
    from mlflow import MlflowClient

    root, plan = cluster["root"], cluster["plan"]
    t0 = time.perf_counter()
    run([*QUARTET, "submit", "train", "forecaster", "synthetic", "--address", plan.dashboard_url,
         "--profile", "cluster,tiny", "--timeout", "300"], cwd=root, timeout=360, env=cluster["env"])
    _timing(cluster, "submit_train_s", time.perf_counter() - t0)
    client = MlflowClient(tracking_uri=plan.mlflow_url)
    champion = client.get_model_version_by_alias("quartet-forecaster-synthetic", "champion")
    # the model's files went through the server's artifact proxy, onto the shared storage
    assert list((plan.shared_dir / "mlartifacts").rglob("weights.pt"))

    t0 = time.perf_counter()
    out = run([*QUARTET, "serve", "--address", plan.dashboard_url], cwd=root, timeout=360, env=cluster["env"])
    _timing(cluster, "serve_deploy_s", time.perf_counter() - t0)
    assert plan.serve_url in out.stdout
    key = cluster["env"]["QUARTET_API_KEY"]
    body = {"task": "synthetic", "series": [[0.1, 0.3, 0.5, 0.4, 0.2, 0.0, -0.2, -0.3]], "horizon": 5}
    r = requests.post(plan.serve_url + "/forecaster/predict", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == champion.version and len(r.json()["forecast"][0]) == 5
    assert requests.post(plan.serve_url + "/forecaster/predict", json=body, timeout=30).status_code == 401
    # Replicas run on the worker hosts (the head has no CPUs); HTTP is on the head.
    details = requests.get(plan.dashboard_url + "/api/serve/applications/", timeout=10,
                           headers={"Authorization": f"Bearer {cluster['env']['RAY_AUTH_TOKEN']}"}).json()
    apps = details["applications"]
    assert set(apps) == {"quartet", "quartet-forecaster", "quartet-translator", "quartet-generative", "quartet-rl"}
    replica_ips = {r["node_ip"] for app in apps.values() for d in app["deployments"].values() for r in d["replicas"]}
    assert replica_ips and replica_ips <= {h.ip for h in plan.workers}
    # Only forecaster/synthetic has a champion on this cluster: the other tasks say so, the app is up.
    health = requests.get(plan.serve_url + "/health", timeout=30, headers={"Authorization": f"Bearer {key}"}).json()
    assert health["status"] == "degraded" and "synthetic" in health["families"]["forecaster"]["ready"]


def test_down_leaves_nothing_behind(cluster: dict) -> None:
    from components import localcluster

    plan, params, root = cluster["plan"], cluster["params"], cluster["root"]
    pids = [pid for h in plan.hosts for pid in localcluster.netns_pids(h.netns)]
    assert pids
    t0 = time.perf_counter()
    out = run([*QUARTET, "cluster", "down", "--profile", "testhosts"], cwd=root, timeout=120)
    _timing(cluster, "cluster_down_s", time.perf_counter() - t0)
    assert plan.head.netns in out.stdout
    assert not {h.netns for h in plan.hosts} & localcluster.netns_list()
    assert [p for p in pids if Path(f"/proc/{p}").exists() and localcluster._state(p) != "Z"] == []
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=10).stdout
    assert plan.bridge not in links and not any(f" {h.veth}@" in links or f" {h.veth}:" in links for h in plan.hosts)
    again = run([*QUARTET, "cluster", "down", "--profile", "testhosts"], cwd=root, timeout=60)
    assert "nothing" in again.stdout
    status = run([*QUARTET, "cluster", "status", "--profile", "testhosts"], cwd=root, timeout=60, check=False)
    assert status.returncode == 1 and "cluster: down" in status.stdout


def test_a_job_whose_data_is_not_on_the_remote_names_the_md5_and_the_fix(tmp_path: Path) -> None:
    from components import datasync

    root = copy_repo(tmp_path / "repo")
    if (root / "data").exists():
        import shutil

        shutil.rmtree(root / "data")
    empty = tmp_path / "empty-remote"
    empty.mkdir()
    proc = run([*QUARTET, "pull-data", "--remote-url", str(empty)], cwd=root, timeout=120, check=False)
    md5 = datasync.pinned_md5(root)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert md5 in proc.stderr and "dvc push" in proc.stderr and "Traceback" not in proc.stderr


def test_cluster_up_without_root_says_so() -> None:
    """As an unprivileged user (a forked child that drops to `nobody`, since the checkout itself
    may not be readable by other users), `cluster up` exits 2 with the fix and touches nothing."""
    import components.localcluster  # noqa: F401  (imported before dropping privileges)
    from quartet import cli

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            sys.stdout = sys.stderr = os.fdopen(w, "w", buffering=1)  # not pytest's capture
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            sys.argv = ["quartet", "cluster", "up"]
            cli.main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as out:
        text = out.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 2, text
    assert "needs root" in text and "Traceback" not in text
