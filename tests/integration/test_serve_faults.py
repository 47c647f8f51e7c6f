"""The served app under faults, rollout and shutdown, with real processes: replicas and the proxy
killed with SIGKILL, a champion moved by `quartet promote` while clients keep sending, a broken
champion, an MLflow server that goes away, SIGTERM to `quartet serve`.

The session `server` runs the tiny profile: two rl replicas and a 2 s champion poll."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import statistics
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from bench.serve import SteadyLoad, encode, serve_replica_pids
from tests.conftest import QUARTET, background, free_port, post, run, wait_http

pytestmark = pytest.mark.integration

ACT = encode(["rl_act"])["rl_act"]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture(autouse=True)
def _trained_store(trained_repo: Path, monkeypatch: pytest.MonkeyPatch):
    """MLflow pointed at the trained repo's store for each test, then reset: set_tracking_uri
    exports MLFLOW_TRACKING_URI, which later tests' subprocesses would otherwise inherit. (A
    client with its own tracking_uri is not enough: create_model_version resolves a `models:/`
    source through the global one.)"""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(f"sqlite:///{trained_repo / 'mlruns' / 'mlflow.db'}")
    yield
    mlflow.set_tracking_uri(None)


def _mlflow(trained_repo: Path) -> object:
    from mlflow import MlflowClient

    return MlflowClient()


def _served_versions(url: str, name: str) -> list[tuple[str, int]]:
    models = requests.get(url + "/models", timeout=10).json()["models"]
    return sorted((m["version"], len(m["replicas"])) for m in models if m["name"] == name)


def _wait(predicate, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def _health(url: str) -> dict:
    return requests.get(url + "/health", timeout=10).json()


def test_killing_an_rl_replica_under_load_fails_at_most_0_1_percent(server) -> None:
    url, proc = server
    before = serve_replica_pids(proc.pid, "quartet-rl", "rl")
    assert len(before) == 2, before
    load = SteadyLoad(_port(url), "/rl/act", ACT, clients=3, total=3000).start()
    load.wait_for(600, 60)
    os.kill(before[0], signal.SIGKILL)
    load.wait(180)
    assert load.done >= 3000
    assert load.failed <= 0.001 * load.done, load.statuses
    _wait(lambda: len(set(serve_replica_pids(proc.pid, "quartet-rl", "rl")) - {before[0]}) == 2, 120,
          "the killed rl replica was not replaced")
    _wait(lambda: _health(url)["families"]["rl"]["status"] == "ready", 60, "rl not ready again")


def test_a_new_champion_is_swapped_in_under_load_with_no_failed_request(server, trained_repo: Path) -> None:
    url, _ = server
    client = _mlflow(trained_repo)
    name = "quartet-rl-CartPole-v1"
    v1 = client.get_model_version_by_alias(name, "champion")
    v2 = client.create_model_version(name, v1.source, run_id=v1.run_id, tags=v1.tags)  # same weights, new version
    old, new = str(v1.version), str(v2.version)
    load = SteadyLoad(_port(url), "/rl/act", ACT, clients=3, total=10**9).start()
    try:
        load.wait_for(200, 60)
        run([*QUARTET, "promote", "rl", "CartPole-v1", new], cwd=trained_repo, timeout=120)
        _wait(lambda: _served_versions(url, name) == [(new, 2)], 60, "both replicas serving the new version")
        seen = load.done
        load.wait_for(seen + 200, 60)
    finally:
        load._stop.set()
        load.wait(30)
        run([*QUARTET, "promote", "rl", "CartPole-v1", old], cwd=trained_repo, timeout=120)
    assert load.failed == 0, load.statuses
    versions = [json.loads(b)["model_version"] for b in load.bodies]
    assert versions[0] == old and versions[-1] == new, versions
    champion = client.get_model_version_by_alias(name, "champion")
    assert str(champion.version) == old and champion.tags["quartet.promoted"] == "manual"
    _wait(lambda: _served_versions(url, name) == [(old, 2)], 60, "the swap back")


def test_a_champion_that_fails_to_load_marks_only_its_task_unavailable(server, trained_repo: Path, tmp_path: Path) -> None:
    url, proc = server
    client = _mlflow(trained_repo)
    name = "quartet-forecaster-synthetic"
    good = client.get_model_version_by_alias(name, "champion")
    broken_dir = tmp_path / "broken" / "artifacts" / "model_dir"
    broken_dir.mkdir(parents=True)
    (broken_dir / "config.json").write_text("{}")  # no model, no weights
    broken = client.create_model_version(name, str(tmp_path / "broken"), run_id=good.run_id, tags=good.tags)
    body = {"task": "synthetic", "series": [[0.1] * 50], "horizon": 5}
    try:
        client.set_registered_model_alias(name, "champion", str(broken.version))
        # A running replica keeps what it serves when the new champion does not load ...
        _wait(lambda: "kept v" in json.dumps(_health(url)["families"]["forecaster"]), 60, "the failed swap reported")
        assert post(url + "/forecaster/predict", body).status_code == 200
        # ... and a restarted one serves the other task and says why this one is unavailable.
        os.kill(serve_replica_pids(proc.pid, "quartet-forecaster", "forecaster")[0], signal.SIGKILL)
        _wait(lambda: _health(url)["families"]["forecaster"]["status"] == "degraded", 120, "forecaster degraded")
        health = _health(url)
        assert health["status"] == "degraded" and health["families"]["forecaster"]["ready"] == ["vic_elec"]
        assert "failed to load" in health["families"]["forecaster"]["unavailable"]["synthetic"]
        r = post(url + "/forecaster/predict", body)
        assert r.status_code == 503 and "failed to load" in r.json()["detail"]["reason"]
        days = [[250000.0, 25.0, 0.0, 0.0]] * 56
        future = [[[25.0, 0.0, 0.0]] * 14]
        assert post(url + "/forecaster/predict", {"task": "vic_elec", "series": [days], "horizon": 14,
                                                  "future": future}).status_code == 200
        assert post(url + "/rl/act", json.loads(ACT)).status_code == 200
    finally:
        client.set_registered_model_alias(name, "champion", str(good.version))
    _wait(lambda: _health(url)["families"]["forecaster"]["status"] == "ready", 60, "recovery once the alias is back")
    assert post(url + "/forecaster/predict", body).status_code == 200


def test_killing_the_proxy_recovers_without_a_restart_by_hand(server) -> None:
    url, proc = server
    proxies = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name().startswith("ray::ProxyActor")]
    assert len(proxies) == 1, proxies
    proxies[0].kill()

    def serving() -> bool:
        try:
            return post(url + "/rl/act", json.loads(ACT), timeout=5).status_code == 200
        except requests.RequestException:
            return False

    _wait(serving, 120, "requests answered again after the proxy was killed")
    assert _health(url)["status"] == "ok"


def test_families_do_not_block_each_other(server) -> None:
    """Heavy beam searches keep the translator busy; rl and /health answer meanwhile."""
    url, _ = server
    texts = ["In the beginning God created the heavens and the earth and the earth was without form"] * 64
    heavy = {"task": "en-es", "texts": texts, "beam_width": 16, "return_attention": True}
    act = json.loads(ACT)

    def rl_latencies(n: int) -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            assert post(url + "/rl/act", act).status_code == 200
            out.append(time.perf_counter() - t0)
        return out

    idle = statistics.median(rl_latencies(30))
    busy = threading.Event()
    stop = threading.Event()

    def translate_loop() -> None:
        while not stop.is_set():
            busy.set()
            assert post(url + "/translator/translate", heavy, timeout=120).status_code == 200

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(translate_loop) for _ in range(4)]
        busy.wait(10)
        time.sleep(0.5)
        loaded = statistics.median(rl_latencies(30))
        health = [requests.get(url + "/health", timeout=10).status_code for _ in range(5)]
        still_translating = not all(f.done() for f in futures)
        stop.set()
        for f in futures:
            f.result(timeout=300)
    assert still_translating
    assert health == [200] * 5
    assert loaded < 10 * idle, f"/rl/act p50 {loaded * 1000:.1f} ms while translating vs {idle * 1000:.1f} ms idle"


# ----------------------------------------------------------------------------- its own server
def test_mlflow_unreachable_key_required_and_sigterm_leaves_no_process(trained_repo: Path) -> None:
    """A second `quartet serve`, beyond loopback with an API key, on a real `mlflow server`:
    the MLflow server is stopped and an rl replica killed; the restarted replica serves its cached
    version. Then SIGTERM: everything it started is gone within 15 s."""
    ui_port, port, key = free_port(), free_port(), "test-key-" + os.urandom(8).hex()
    url = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {key}"}
    log = trained_repo / "serve-sigterm.log"
    with background([*QUARTET, "ui", "--port", str(ui_port)], trained_repo, trained_repo / "ui-faults.log") as ui:
        wait_http(f"http://127.0.0.1:{ui_port}/health", timeout=90)
        env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ui_port}", "QUARTET_API_KEY": key}
        serve = background([*QUARTET, "serve", "--host", "0.0.0.0", "--port", str(port)], trained_repo, log, env)
        with serve as proc:
            _wait(lambda: _ok(url + "/health", auth), 240, "the second server ready")
            assert requests.get(url + "/health", timeout=10).status_code == 401
            assert requests.post(url + "/rl/act", data=ACT, timeout=10,
                                 headers={"Authorization": "Bearer wrong", "content-type": "application/json"}).status_code == 401
            models = requests.get(url + "/models", headers=auth, timeout=10)
            assert models.status_code == 200 and key not in models.text

            os.killpg(ui.pid, signal.SIGTERM)  # MLflow goes away ...
            ui.wait(30)
            victim = serve_replica_pids(proc.pid, "quartet-rl", "rl")[0]
            os.kill(victim, signal.SIGKILL)  # ... and a replica restarts without it

            def sources() -> set[str]:
                r = requests.get(url + "/models", headers=auth, timeout=10)
                assert r.status_code in (200, 503), r.text  # 503: the replica board restarting, never a 500
                models = r.json()["models"] if r.status_code == 200 else []
                return {r["source"] for m in models if m["name"] == "quartet-rl-CartPole-v1" for r in m["replicas"]}

            # The new replica cannot ask MLflow; it serves the version it finds in the node's cache.
            _wait(lambda: victim not in serve_replica_pids(proc.pid, "quartet-rl", "rl") and "cache" in sources(), 180,
                  f"a restarted rl replica serving from its cache ({sources()})")
            rl = requests.get(url + "/health", headers=auth, timeout=10).json()["families"]["rl"]
            assert rl["status"] == "ready" and "unreachable" in json.dumps(rl["notes"]), rl
            r = requests.post(url + "/rl/act", data=ACT, headers={**auth, "content-type": "application/json"}, timeout=10)
            assert r.status_code == 200, r.text

            tree = [proc, *psutil.Process(proc.pid).children(recursive=True)]
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)  # what `kill PID` sends
            proc.wait(timeout=30)
            gone, alive = psutil.wait_procs([p for p in tree if p.pid != proc.pid], timeout=max(0.1, 15 - (time.monotonic() - t0)))
            stopped_in = time.monotonic() - t0
            assert not alive, f"left behind: {[(p.pid, p.name()) for p in alive]}"
            assert stopped_in <= 15, stopped_in
    assert key not in log.read_text()


def _ok(url: str, headers: dict) -> bool:
    try:
        return requests.get(url, headers=headers, timeout=5).status_code == 200
    except requests.RequestException:
        return False
