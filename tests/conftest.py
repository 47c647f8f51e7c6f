"""Shared fixtures: loopback-only Ray settings, a temp copy of the repo, free ports, a local Ray."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
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


class TrainedRepoBuild:
    """The tiny-profile pipeline behind `trained_repo`, built in a thread from the end of
    collection on, so the tests that run first (the cluster's, the DDP ones) overlap its ~8
    minutes, most of which wait on Ray and MLflow. Its commands run in their own process group
    with the environment of the session's start (a test that sets MLFLOW_TRACKING_URI later must
    not leak into them), and `stop()` kills a group still running when the session ends."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
        self.error: BaseException | None = None
        self.proc: subprocess.Popen | None = None
        self.stopping = False
        self.thread = threading.Thread(target=self._build, name="trained-repo", daemon=True)

    def start(self) -> TrainedRepoBuild:
        self.thread.start()
        return self

    def _run(self, cmd: list[str], log: Path, timeout: float) -> None:
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
                raise AssertionError(f"{cmd} ran past {timeout} s (log: {log})") from None
        if code != 0 or self.stopping:
            tail = log.read_text()[-5000:]
            raise AssertionError(f"{cmd} failed ({code}), log {log}:\n{tail}")

    def _build(self) -> None:
        try:
            from quartet.cli import write_profile

            copy_repo(self.root)
            write_profile("tiny", self.root / "params.yaml", root=self.root)
            self._run([*QUARTET, "data"], self.root / "data.log", timeout=120)
            t0 = time.perf_counter()
            self._run([*QUARTET, "repro"], self.root / "repro.log", timeout=900)  # one local Ray for every stage
            (self.root / "repro_wall_s.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
            # The extra task (not a dvc stage) the way a user runs one: every stage, then it is served.
            self._run([*QUARTET, "task", "rl", "Breakout"], self.root / "task-breakout.log", timeout=600)
        except BaseException as e:  # handed to the fixture, which raises it in the test that waits
            self.error = e

    def result(self, timeout: float) -> Path:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise TimeoutError(f"the tiny-profile pipeline in {self.root} is not done after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.root

    def stop(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        self.thread.join(60)


_BUILD: TrainedRepoBuild | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the pipeline build now if a collected test will need it."""
    global _BUILD
    if session.config.option.collectonly or not any("trained_repo" in item.fixturenames for item in session.items):
        return
    _BUILD = TrainedRepoBuild(session.config._tmp_path_factory.mktemp("trained") / "repo").start()


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _BUILD is not None:
        _BUILD.stop()


@pytest.fixture(scope="session")
def trained_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repo copy on the tiny profile after one real `dvc repro` and `quartet task rl Breakout`
    (shared by the serving tests); built in the background since collection ended."""
    global _BUILD
    if _BUILD is None:  # a test run that did not go through collection with this conftest
        _BUILD = TrainedRepoBuild(tmp_path_factory.mktemp("trained") / "repo").start()
    return _BUILD.result(timeout=1500)


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
