"""Serving benchmark (issue 11): quartet's served app side by side with Ray Serve's own floor and
`mlflow models serve` of the same champion, measured the same way in one run.

Why side by side: this machine is noisy and the load generator shares its two cores with the
server, so only ratios taken in one run mean anything. Targets:
- sequential p50 of `/rl/act` and `/forecaster/predict` <= 1.25x the one-hop no-op Serve floor;
- throughput at 32 clients >= `mlflow models serve`'s and >= quartet's own 8-client figure;
- batching visible: quartet with `max_batch_size: 1` vs the default under the same load, and
  requests carrying many observations.

Every server runs alone (started, measured, stopped) so they never compete for the cores:
1. `floor-1`: a no-op deployment that is its own FastAPI ingress (one hop: proxy -> replica);
2. `floor-2`: a FastAPI ingress that calls a second no-op deployment (two hops);
3. `mlflow`: `mlflow models serve --env-manager local` of the rl and forecaster champions;
4. `quartet`: `quartet serve` over the repo's champions (default params), then again with
   `max_batch_size: 1`.

    python -m bench.serve [--repo DIR] [--seconds 5] [--sequential 300] [--only floor,mlflow,quartet]

DIR is a checkout after `make repro` (its mlruns hold the champions); default this repo.
Writes bench/results/serve.json and prints Markdown; it never writes BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.config import REPO_ROOT

RESULTS = REPO_ROOT / "bench" / "results" / "serve.json"
CLIENTS = (1, 8, 32)
CARTPOLE_OBS = [0.0273, -0.0061, 0.0359, 0.0197]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ----------------------------------------------------------------------------- load generator
class Client:
    """One keep-alive HTTP/1.1 connection (what a real client library holds open)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> int:
        try:
            self.conn.request("POST", path, body, {"content-type": "application/json", **(headers or {})})
            r = self.conn.getresponse()
            r.read()
            return r.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            return 0  # connection error


def sequential(port: int, path: str, body: bytes, n: int) -> dict[str, float]:
    """n requests one after another: latency percentiles in ms (after 30 warm-up requests)."""
    c = Client(port)
    for _ in range(30):
        c.post(path, body)
    lat, bad = [], 0
    for _ in range(n):
        t0 = time.perf_counter()
        status = c.post(path, body)
        lat.append((time.perf_counter() - t0) * 1000)
        bad += status != 200
    lat.sort()
    return {"p50_ms": round(statistics.median(lat), 2), "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 2),
            "errors": bad, "n": n}


def throughput(port: int, path: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """`clients` threads, each a keep-alive connection sending back to back for `seconds`."""
    stop = time.monotonic() + seconds
    counts = [0] * clients
    errors = [0] * clients
    lat: list[list[float]] = [[] for _ in range(clients)]

    def worker(i: int) -> None:
        c = Client(port)
        c.post(path, body)  # connect + warm
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            status = c.post(path, body)
            lat[i].append((time.perf_counter() - t0) * 1000)
            counts[i] += 1
            errors[i] += status != 200

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    wall = time.monotonic() - t0
    all_lat = sorted(x for xs in lat for x in xs)
    return {"req_s": round(sum(counts) / wall, 1), "errors": sum(errors),
            "p50_ms": round(statistics.median(all_lat), 2) if all_lat else None,
            "p99_ms": round(all_lat[int(0.99 * (len(all_lat) - 1))], 2) if all_lat else None}


class SteadyLoad:
    """`clients` threads sending `path` back to back until `total` requests were answered (or
    `stop()`); counts every status. The fault tests and `bench.serve kill|swap` use it."""

    def __init__(self, port: int, path: str, body: bytes, clients: int = 4, total: int = 2000,
                 headers: dict[str, str] | None = None) -> None:
        self.port, self.path, self.body, self.clients, self.total = port, path, body, clients, total
        self.headers = headers or {}
        self.statuses: dict[int, int] = {}
        self.bodies: list[bytes] = []  # one in 20 responses, to see which version answered
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.threads = [threading.Thread(target=self._work, daemon=True) for _ in range(clients)]

    @property
    def done(self) -> int:
        return sum(self.statuses.values())

    @property
    def failed(self) -> int:
        return sum(n for s, n in self.statuses.items() if s != 200)

    def _work(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        while not self._stop.is_set() and self.done < self.total:
            try:
                conn.request("POST", self.path, self.body, {"content-type": "application/json", **self.headers})
                r = conn.getresponse()
                payload, status = r.read(), r.status
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                payload, status = b"", 0
            with self.lock:
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if status == 200 and self.done % 20 == 0:
                    self.bodies.append(payload)

    def start(self) -> "SteadyLoad":
        for t in self.threads:
            t.start()
        return self

    def wait(self, timeout: float) -> None:
        end = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, end - time.monotonic()))
        self._stop.set()
        for t in self.threads:
            t.join(10)

    def wait_for(self, n: int, timeout: float) -> None:
        end = time.monotonic() + timeout
        while self.done < n and time.monotonic() < end:
            time.sleep(0.05)


def serve_replica_pids(root_pid: int, app: str, deployment: str) -> list[int]:
    """Pids of the Serve replica processes of `app`'s `deployment` under `root_pid`."""
    import psutil

    found = []
    for p in psutil.Process(root_pid).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            title = " ".join(p.cmdline())
            if title.startswith(f"ray::ServeReplica:{app}:{deployment}"):
                found.append(p.pid)
    return found


def _with_task(drawn: tuple[Any, str, bool]) -> Any:
    case, task, use = drawn
    if use and isinstance(case.body, dict):
        case.body["task"] = task
    return case


def fuzz(url: str, cases_per_operation: int, seed: int = 0, headers: dict[str, str] | None = None,
         on_case: Any = None, cases_for: dict[str, int] | None = None) -> dict[str, Any]:
    """Property-based fuzz of the served OpenAPI schema (schemathesis + hypothesis): valid and
    invalid bodies for every operation (`cases_for` caps slow ones by path, e.g. a whole rendered
    episode per case). Returns case counts by status and the first 5xx seen."""
    import requests
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    from hypothesis.errors import Unsatisfiable

    schema = schemathesis.openapi.from_url(url + "/openapi.json", headers=headers or {})
    session = requests.Session()
    health = session.get(url + "/health", headers=headers or {}, timeout=30).json()
    # Random strings are never a served task: half the valid cases name a real one, to reach the models.
    tasks = {f"/{f}/": sorted(h["ready"]) for f, h in health["families"].items() if h["ready"]}
    statuses: dict[str, int] = {}
    server_errors: list[dict[str, Any]] = []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
            known = next((t for prefix, t in tasks.items() if op.path.startswith(prefix)), [])
            strategy = op.as_strategy(generation_mode=mode)
            if known and mode == schemathesis.GenerationMode.POSITIVE:
                strategy = st.tuples(strategy, st.sampled_from(known), st.booleans()).map(_with_task)

            @hseed(seed)
            @settings(max_examples=(cases_for or {}).get(op.path, cases_per_operation), deadline=None, database=None,
                      suppress_health_check=list(HealthCheck), phases=(Phase.generate,))
            @given(case=strategy)
            def check(case: Any) -> None:
                response = case.call(base_url=url, session=session, headers=headers or {}, timeout=60)
                key = f"{op.method.upper()} {op.path} {response.status_code}"
                statuses[key] = statuses.get(key, 0) + 1
                if response.status_code >= 500 and len(server_errors) < 5:
                    server_errors.append({"operation": f"{op.method.upper()} {op.path}", "status": response.status_code,
                                          "body": str(case.body)[:500], "response": response.text[:500]})
                if on_case:
                    on_case(response)

            try:
                check()
            except Unsatisfiable:  # e.g. no invalid input exists for GET /health
                pass
    total = sum(statuses.values())
    return {"cases": total, "server_errors": sum(n for k, n in statuses.items() if int(k.rsplit(" ", 1)[1]) >= 500),
            "by_status": statuses, "first_server_errors": server_errors}


# ----------------------------------------------------------------------------- servers
@contextlib.contextmanager
def server(cmd: list[str], cwd: Path, ready_url: str, log: Path, env: dict[str, str] | None = None,
           timeout: float = 300) -> Iterator[subprocess.Popen]:
    """Start a server in its own process group, wait for `ready_url`, stop it (group) on exit."""
    import requests

    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            end = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{cmd[:4]} exited ({proc.returncode}); see {log}")
                with contextlib.suppress(requests.RequestException):
                    if requests.get(ready_url, timeout=2).status_code == 200:
                        break
                if time.monotonic() > end:
                    raise TimeoutError(f"{ready_url} not ready within {timeout} s; see {log}")
                time.sleep(1)
            yield proc
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            time.sleep(2)  # let Ray's processes exit before the next server starts


def tree_rss_mb(proc: subprocess.Popen) -> dict[str, float]:
    """Resident memory of the server's process tree, by process name (Ray names its actors)."""
    import psutil

    out: dict[str, float] = {}
    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        with contextlib.suppress(psutil.Error):
            name = p.name()
            if "ServeReplica" in " ".join(p.cmdline()[:1]) or name.startswith("ray::"):
                name = p.cmdline()[0] if p.cmdline() else name
            out[name] = round(out.get(name, 0) + p.memory_info().rss / 2**20, 1)
    return out


def floor_main(hops: int, port: int) -> None:
    """The no-op Serve app (run in its own process by `measure_floor`)."""
    import ray
    from fastapi import FastAPI
    from ray import serve

    from components.cluster import apply_env

    apply_env()
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    app = FastAPI()

    no_access_log = {"enable_access_log": False}  # as quartet's default (serve.access_log: false)

    @serve.deployment(max_ongoing_requests=64, logging_config=no_access_log)
    class Noop:
        def __call__(self, body: dict) -> dict:
            return {"ok": True}

    @serve.deployment(max_ongoing_requests=64, logging_config=no_access_log)
    @serve.ingress(app)
    class Ingress:
        def __init__(self, inner: Any = None) -> None:
            self.inner = inner

        @app.post("/rl/act")
        async def act(self, body: dict) -> dict:
            if self.inner is not None:
                return await self.inner.remote(body)
            return {"ok": True}

        @app.get("/health")
        def health(self) -> dict:
            return {"status": "ok"}

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Ingress.bind(Noop.bind()) if hops == 2 else Ingress.bind(), route_prefix="/")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()


# ----------------------------------------------------------------------------- bodies
def bodies() -> dict[str, dict[str, Any]]:
    """Request bodies per route: one observation / one series, and a many-observation request."""
    series = [round(0.5 * __import__("math").sin(i / 4), 4) for i in range(50)]
    return {
        "rl_act": {"task": "CartPole-v1", "observations": [CARTPOLE_OBS]},
        "rl_act_64": {"task": "CartPole-v1", "observations": [CARTPOLE_OBS] * 64},
        "forecaster_predict": {"task": "synthetic", "series": [series], "horizon": 10},
    }


ROUTES = {"rl_act": "/rl/act", "rl_act_64": "/rl/act", "forecaster_predict": "/forecaster/predict"}


def measure(port: int, routes: dict[str, bytes], seconds: float, n_seq: int, wrap: str | None = None) -> dict[str, Any]:
    """Sequential latency per route, throughput at 1/8/32 clients per route."""
    out: dict[str, Any] = {}
    for key, body in routes.items():
        path = "/invocations" if wrap else ROUTES[key]
        out[key] = {"sequential": sequential(port, path, body, n_seq),
                    "clients": {str(c): throughput(port, path, body, c, seconds) for c in CLIENTS}}
        print(f"  {key}: {json.dumps(out[key])}", flush=True)
    return out


def encode(routes: list[str], wrap: str | None = None) -> dict[str, bytes]:
    b = bodies()
    return {k: json.dumps({"inputs": b[k]} if wrap else b[k]).encode() for k in routes}


def bench_env() -> dict[str, str]:
    return {"RAY_USAGE_STATS_ENABLED": "0", "MLFLOW_DISABLE_TELEMETRY": "true",
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}


def run(repo: Path, seconds: float, n_seq: int, only: set[str], logs: Path) -> dict[str, Any]:
    py = sys.executable
    env = bench_env()
    results: dict[str, Any] = {}
    if "floor" in only:
        for hops in (1, 2):
            port = free_port()
            print(f"floor-{hops} (no-op Serve, {hops} hop{'s' * (hops > 1)})", flush=True)
            cmd = [py, "-m", "bench.serve", "floor", "--hops", str(hops), "--port", str(port)]
            with server(cmd, REPO_ROOT, f"http://127.0.0.1:{port}/health", logs / f"floor-{hops}.log", env) as proc:
                results[f"floor-{hops}"] = measure(port, encode(["rl_act"]), seconds, n_seq)
                results[f"floor-{hops}"]["rss_mb"] = tree_rss_mb(proc)
    if "mlflow" in only:
        uri = f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}"
        for key, model in (("rl_act", "quartet-rl-CartPole-v1"), ("forecaster_predict", "quartet-forecaster-synthetic")):
            port = free_port()
            print(f"mlflow models serve {model}@champion", flush=True)
            cmd = [py, "-m", "mlflow", "models", "serve", "-m", f"models:/{model}@champion", "--env-manager", "local",
                   "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
            with server(cmd, repo, f"http://127.0.0.1:{port}/ping", logs / f"mlflow-{key}.log",
                        {**env, "MLFLOW_TRACKING_URI": uri}) as proc:
                routes = [key, "rl_act_64"] if key == "rl_act" else [key]
                results.setdefault("mlflow", {}).update(measure(port, encode(routes, wrap="inputs"), seconds, n_seq,
                                                                wrap="inputs"))
                results["mlflow"][f"rss_mb_{key}"] = tree_rss_mb(proc)
    if "quartet" in only:
        # The repo's params may be a test profile: each variant states its serve settings.
        for label, settings in (("quartet", QUARTET_DEFAULTS), ("quartet-unbatched", {**QUARTET_DEFAULTS, "max_batch_size": 1})):
            print(label, flush=True)
            with quartet_server(repo, settings, logs / f"{label}.log", env) as (port, proc):
                results[label] = measure(port, encode(["rl_act", "rl_act_64", "forecaster_predict"]), seconds, n_seq)
                results[label]["rss_mb"] = tree_rss_mb(proc)
                if label == "quartet":
                    results[label]["isolation"] = isolation(port, n_seq)
                    print(f"  isolation: {json.dumps(results[label]['isolation'])}", flush=True)
    return results


def isolation(port: int, n: int) -> dict[str, Any]:
    """`/rl/act` and `/health` p50, idle and while 4 clients keep the translator busy with
    64-text beam searches (families must not block each other)."""
    import requests

    texts = ["In the beginning God created the heavens and the earth and the earth was without form"] * 64
    heavy = json.dumps({"task": "en-es", "texts": texts, "beam_width": 16, "return_attention": True}).encode()
    act = encode(["rl_act"])["rl_act"]

    def health_p50() -> float:
        lat = []
        for _ in range(max(20, n // 10)):
            t0 = time.perf_counter()
            requests.get(f"http://127.0.0.1:{port}/health", timeout=30)
            lat.append((time.perf_counter() - t0) * 1000)
        return round(statistics.median(lat), 2)

    out = {"idle": {"rl_act_p50_ms": sequential(port, "/rl/act", act, n)["p50_ms"], "health_p50_ms": health_p50()}}
    load = SteadyLoad(port, "/translator/translate", heavy, clients=4, total=10**9).start()
    try:
        load.wait_for(4, 120)
        out["translator_busy"] = {"rl_act_p50_ms": sequential(port, "/rl/act", act, n)["p50_ms"],
                                  "health_p50_ms": health_p50()}
    finally:
        load._stop.set()
        load.wait(120)
    out["translator_busy"]["translations_answered"] = load.done
    return out


# Every family named: profiles merge dicts, so {default: 1} alone would keep a test profile's rl: 2.
QUARTET_DEFAULTS: dict[str, Any] = {
    "num_replicas": {"default": 1, "forecaster": 1, "translator": 1, "generative": 1, "rl": 1},
    "max_batch_size": 16, "poll_s": 10, "access_log": False}
BENCH_PROFILE = "_bench_serve"


@contextlib.contextmanager
def quartet_server(repo: Path, settings: dict[str, Any], log: Path, env: dict[str, str],
                   extra_env: dict[str, str] | None = None) -> Iterator[tuple[int, subprocess.Popen]]:
    """`quartet serve` in `repo` with these `serve:` settings (a temporary profile file)."""
    port = free_port()
    profile = repo / "profiles" / f"{BENCH_PROFILE}.yaml"
    profile.write_text(json.dumps({"serve": settings}) + "\n")  # JSON is YAML
    try:
        cmd = [sys.executable, "-m", "quartet.cli", "serve", "--port", str(port), "--profile", BENCH_PROFILE]
        with server(cmd, repo, f"http://127.0.0.1:{port}/health", log, {**env, **(extra_env or {})}) as proc:
            wait_ready(port, 240)
            yield port, proc
    finally:
        profile.unlink(missing_ok=True)


def wait_ready(port: int, timeout: float) -> None:
    """/health says every family is ready (the gateway answers before the family replicas do)."""
    import requests

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(requests.RequestException, ValueError):
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=5).json().get("status") == "ok":
                return
        time.sleep(1)
    raise TimeoutError(f"quartet serve on port {port} not ready within {timeout} s")


def faults(repo: Path, requests_n: int, fuzz_cases: int, logs: Path, env: dict[str, str]) -> dict[str, Any]:
    """The fault tests, longer: SIGKILL one of two rl replicas under load, a champion swap under
    load, and the schema fuzz, against one `quartet serve` (two rl replicas, 2 s poll)."""
    import mlflow
    from mlflow import MlflowClient

    out: dict[str, Any] = {}
    settings = {**QUARTET_DEFAULTS, "num_replicas": {"default": 1, "rl": 2}, "poll_s": 2}
    body = encode(["rl_act"])["rl_act"]
    with quartet_server(repo, settings, logs / "quartet-faults.log", env) as (port, proc):
        pids = serve_replica_pids(proc.pid, "quartet-rl", "rl")
        load = SteadyLoad(port, "/rl/act", body, clients=4, total=requests_n).start()
        load.wait_for(requests_n // 4, 300)
        t0 = time.monotonic()
        os.kill(pids[0], signal.SIGKILL)
        load.wait(600)
        out["replica_kill"] = {"requests": load.done, "failed": load.failed, "statuses": load.statuses,
                               "clients": 4, "wall_s": round(time.monotonic() - t0, 1)}
        print("replica kill:", json.dumps(out["replica_kill"]), flush=True)

        mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlruns' / 'mlflow.db'}")  # this process only: it ends here
        client, name = MlflowClient(), "quartet-rl-CartPole-v1"
        v1 = client.get_model_version_by_alias(name, "champion")
        v2 = client.create_model_version(name, v1.source, run_id=v1.run_id, tags=v1.tags)
        load = SteadyLoad(port, "/rl/act", body, clients=4, total=requests_n).start()
        load.wait_for(requests_n // 4, 300)
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "quartet.cli", "promote", "rl", "CartPole-v1", str(v2.version)],
                       cwd=repo, check=True, timeout=120, capture_output=True)
        load.wait(600)
        versions = [json.loads(b)["model_version"] for b in load.bodies]
        subprocess.run([sys.executable, "-m", "quartet.cli", "promote", "rl", "CartPole-v1", str(v1.version)],
                       cwd=repo, check=True, timeout=120, capture_output=True)
        out["champion_swap"] = {"requests": load.done, "failed": load.failed, "statuses": load.statuses,
                                "first_version": versions[0], "last_version": versions[-1],
                                "wall_s": round(time.monotonic() - t0, 1)}
        print("champion swap:", json.dumps(out["champion_swap"]), flush=True)
        wait_ready(port, 120)
        t0 = time.monotonic()
        out["fuzz"] = fuzz(f"http://127.0.0.1:{port}", fuzz_cases, seed=1)
        out["fuzz"]["wall_s"] = round(time.monotonic() - t0, 1)
        print("fuzz:", out["fuzz"]["cases"], "cases,", out["fuzz"]["server_errors"], "5xx", flush=True)
    return out


def _deployment(process_title: str) -> str:
    """'ray::ServeReplica:quartet-rl:rl' -> 'rl'."""
    return process_title.rsplit(":", 1)[-1]


def summary(r: dict[str, Any]) -> str:
    """The Markdown table for BENCHMARKS.md."""
    rows = ["| server | route | seq p50 / p99 ms | 1 client req/s | 8 clients | 32 clients |", "|---|---|---|---|---|---|"]
    for name in ("floor-1", "floor-2", "mlflow", "quartet", "quartet-unbatched"):
        for key in ("rl_act", "rl_act_64", "forecaster_predict"):
            m = r.get(name, {}).get(key)
            if not m:
                continue
            s, c = m["sequential"], m["clients"]
            rows.append(f"| {name} | {key} | {s['p50_ms']} / {s['p99_ms']} | {c['1']['req_s']} | {c['8']['req_s']} | "
                        f"{c['32']['req_s']} |")
    ratios = []
    with contextlib.suppress(KeyError):
        floor = r["floor-1"]["rl_act"]["sequential"]["p50_ms"]
        for key in ("rl_act", "forecaster_predict"):
            q = r["quartet"][key]
            ratios.append(f"- quartet {key}: p50 {q['sequential']['p50_ms'] / floor:.2f}x the one-hop floor, "
                          f"{q['sequential']['p50_ms'] / r['mlflow'][key]['sequential']['p50_ms']:.2f}x mlflow; "
                          f"32-client throughput {q['clients']['32']['req_s'] / r['mlflow'][key]['clients']['32']['req_s']:.2f}x "
                          f"mlflow, {q['clients']['32']['req_s'] / q['clients']['8']['req_s']:.2f}x its own 8-client figure")
    with contextlib.suppress(KeyError):
        iso = r["quartet"]["isolation"]
        ratios.append(f"- families apart: /rl/act p50 {iso['idle']['rl_act_p50_ms']} ms idle, "
                      f"{iso['translator_busy']['rl_act_p50_ms']} ms while the translator runs beam searches; "
                      f"/health p50 {iso['idle']['health_p50_ms']} / {iso['translator_busy']['health_p50_ms']} ms")
    with contextlib.suppress(KeyError):
        rss = r["quartet"]["rss_mb"]
        replicas = {k: v for k, v in rss.items() if "ServeReplica" in k}
        ratios.append(f"- memory: {len(replicas)} replica processes {sum(replicas.values()):.0f} MB "
                      f"({', '.join(f'{_deployment(k)} {v:.0f}' for k, v in sorted(replicas.items()))}); "
                      f"whole tree {sum(rss.values()):.0f} MB")
    return "\n".join(rows + [""] + ratios)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd")
    fl = sub.add_parser("floor", help="(internal) run the no-op Serve app")
    fl.add_argument("--hops", type=int, default=1)
    fl.add_argument("--port", type=int, required=True)
    ap.add_argument("--repo", type=Path, default=REPO_ROOT)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--sequential", type=int, default=300)
    ap.add_argument("--only", default="floor,mlflow,quartet", help="any of floor,mlflow,quartet,faults")
    ap.add_argument("--requests", type=int, default=10_000, help="faults: requests per kill / swap run")
    ap.add_argument("--fuzz-cases", type=int, default=1000, help="faults: fuzz cases per operation and mode")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.cmd == "floor":
        return floor_main(args.hops, args.port)
    repo = args.repo.resolve()
    if not (repo / "mlruns" / "mlflow.db").is_file():
        sys.exit(f"{repo}/mlruns/mlflow.db not found: run `make repro` there first (the benchmark serves its champions)")
    logs = repo / "bench-serve-logs"
    logs.mkdir(exist_ok=True)
    t0 = time.time()
    only = set(args.only.split(","))
    results = run(repo, args.seconds, args.sequential, only, logs)
    if "faults" in only:
        results["faults"] = faults(repo, args.requests, args.fuzz_cases, logs, bench_env())
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.node()} {os.cpu_count()} cpus",
              "command": "python -m bench.serve " + " ".join(argv if argv is not None else sys.argv[1:]).replace(
                  str(args.repo), "DIR"),  # no machine paths in the results
              "repo": "this checkout" if repo == REPO_ROOT else "DIR: a checkout after `make repro` (tiny profile)",
              "seconds_per_point": args.seconds, "wall_s": round(time.time() - t0), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n")
    print(summary(results))


if __name__ == "__main__":
    main()
