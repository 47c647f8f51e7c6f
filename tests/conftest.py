"""Shared fixtures: loopback-only Ray settings, a temp copy of the repo, free ports, a local Ray."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.cluster import apply_env

apply_env()
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("QUARTET_PROFILE", None)
os.environ.pop("RAY_ADDRESS", None)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Processes the tests start (dvc stages, Ray jobs) must find this venv's python first.
os.environ["PATH"] = f"{BIN}:{os.environ['PATH']}"
# `python -m` from a repo copy imports that copy's code (the console script would import this repo).
QUARTET = [sys.executable, "-m", "quartet.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_repo(dst: Path) -> Path:
    """Tracked + untracked-not-ignored files into dst, as a fresh git repo with one commit."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    if (REPO / "data").is_dir():
        shutil.copytree(REPO / "data", dst / "data")
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run(["git", "init", "-q"], cwd=dst, check=True)
    subprocess.run([*git, "add", "-A"], cwd=dst, check=True)
    subprocess.run([*git, "commit", "-qm", "copy"], cwd=dst, check=True)
    return dst


def run(cmd: list[str], cwd: Path, timeout: float = 600, check: bool = True, env: dict | None = None):
    """A subprocess with the venv first on PATH and a hard timeout."""
    full_env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def wait_http(url: str, timeout: float) -> None:
    import requests

    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException as e:
            last = e
        time.sleep(1)
    raise TimeoutError(f"{url} not ready after {timeout} s ({last})")


@contextlib.contextmanager
def background(cmd: list[str], cwd: Path, log: Path, env: dict | None = None,
               stop: signal.Signals = signal.SIGTERM) -> Iterator[subprocess.Popen]:
    """A server process in its own session, logged to `log`, stopped (then killed) on exit."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            # The leader alone, as `kill PID` would: it stops what it started (`quartet serve` shuts
            # Serve and its Ray down). Signalling the whole group killed those first and left the
            # leader waiting 60 s on a controller that was gone.
            with contextlib.suppress(ProcessLookupError):  # a test may have stopped it already
                proc.send_signal(stop)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
            with contextlib.suppress(ProcessLookupError):  # what the leader left in its group
                os.killpg(proc.pid, signal.SIGKILL)


def listening_addresses(proc: subprocess.Popen) -> list[tuple[str, str]]:
    """(ip, process name) of every TCP listener of `proc` and its descendants."""
    import psutil

    pids = {proc.pid} | {c.pid for c in psutil.Process(proc.pid).children(recursive=True)}
    return [(c.laddr.ip, psutil.Process(c.pid).name()) for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in pids]


LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "repo")


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray for the in-process Train/Tune tests (2 CPUs, no dashboard, loopback)."""
    import ray

    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=128 * 1024**2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo copy on the tiny profile after one real `dvc repro` (shared by the serving tests)."""
    from quartet.cli import write_profile

    root = copy_repo(tmp_path_factory.mktemp("trained") / "repo")
    write_profile("tiny", root / "params.yaml", root=root)
    run([*QUARTET, "data"], cwd=root, timeout=120)
    t0 = time.perf_counter()
    proc = run([*QUARTET, "repro"], cwd=root, timeout=900)  # one local Ray for every stage
    (root / "repro_wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    (root / "repro.log").write_text(proc.stdout + proc.stderr)
    # The extra task (not a dvc stage) the way a user runs one: every stage, then it is served.
    proc = run([*QUARTET, "task", "rl", "Breakout"], cwd=root, timeout=600)
    (root / "task-breakout.log").write_text(proc.stdout + proc.stderr)
    return root


@pytest.fixture(scope="session")
def server(trained_repo: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`quartet serve` over the trained repo's champions, on a free loopback port (one per session)."""
    port = free_port()
    # Serve checks its proxy every 10 s by default; the proxy-kill test need not wait that long.
    env = {"RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": "2"}
    # SIGTERM, not SIGINT: a test run started in the background of a script (`make test &`) inherits
    # SIGINT ignored, so Python never turns it into KeyboardInterrupt and the stop waited out its 60 s.
    with background([*QUARTET, "serve", "--port", str(port)], trained_repo, trained_repo / "serve.log",
                    env=env, stop=signal.SIGTERM) as proc:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", timeout=240)
        yield url, proc


def post(url: str, body: dict | str, timeout: float = 60) -> "requests.Response":
    """POST a JSON body (or a raw string, to send invalid JSON) with a timeout."""
    import json

    import requests

    data = body if isinstance(body, str) else json.dumps(body)
    return requests.post(url, data=data, headers={"content-type": "application/json"}, timeout=timeout)
