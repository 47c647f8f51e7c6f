"""Local vs remote Ray, loopback-only settings, job submission, and deadlines.

Why: on this kind of machine Ray would bind the eth0 address and turn token auth on; every
process we start must listen on 127.0.0.1 only. Every wait here has a timeout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from components.config import ConfigError, Params, REPO_ROOT
from components.kernels import KERNEL_PINS

log = logging.getLogger(__name__)

# Set before Ray starts (stack-verified.md): loopback listeners, no token auth, faster Train
# health checks, no telemetry from Ray, MLflow or DVC.
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_DEDUP_LOGS": "0",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DVC_NO_ANALYTICS": "1",
    "RAY_CHDIR_TO_TRIAL_DIR": "0",
}

# Variables a job or worker needs to see the same MLflow store and settings as the driver.
PROPAGATED = ("MLFLOW_TRACKING_URI", "QUARTET_PROFILE", "QUARTET_GIT_COMMIT")
# What a job on someone's cluster inherits from us: telemetry and per-run behaviour only, never
# the loopback or auth settings (those belong to the cluster's own configuration).
JOB_ENV = ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_USAGE_STATS_ENABLED", "RAY_DEDUP_LOGS", "MLFLOW_DISABLE_TELEMETRY",
           "DVC_NO_ANALYTICS", "RAY_CHDIR_TO_TRIAL_DIR")


def apply_env() -> None:
    """Process-wide settings every entry point applies first: Ray's (loopback, no usage stats)
    and the CPU kernel pins (components/session.py), which Ray's workers inherit."""
    for key, value in {**RAY_ENV, **KERNEL_PINS}.items():
        os.environ.setdefault(key, value)


# Worker log lines that repeat without telling a user anything, dropped from the terminal (they stay
# in the session's log files, /tmp/ray/session_*/logs):
# - Ray Train v2's detached placement-group cleaner asks the State API every few seconds whether
#   the controller lives; without a dashboard (ours is off by default) each ask fails and warns:
#   ~130 lines per `make repro`;
# - two lines per epoch per worker about the checkpoint it reported (our epoch line says more);
# - an error-level note on every train run about Train's own PreemptionWatcher actor
#   (ray-project/ray#53727), which no user code can act on.
BENIGN_WORKER_LINES = (
    "Failed to query Ray Train Controller actor state",
    "Checkpoint successfully created at: Checkpoint(",
    "Reporting training result ",
    "'PreemptionWatcher' and ID: ",
)


def keep_worker_line(line: str) -> bool:
    return not any(pattern in line for pattern in BENIGN_WORKER_LINES)


def quiet_benign_worker_logs() -> bool:
    """Filter BENIGN_WORKER_LINES out of the worker logs Ray prints on this driver. Ray has no
    public hook for it: its printer is swapped for one that filters first; when Ray's internals
    differ (another version), nothing changes and False is returned."""
    try:
        from ray._private import worker as ray_worker

        dispatcher = ray_worker.global_worker_stdstream_dispatcher
        ignore_prefix = ray_worker._should_ignore_worker_log_prefix(ray_worker.global_worker)
        printer = ray_worker.print_to_stdstream
    except (ImportError, AttributeError):
        return False

    def print_kept(data: dict[str, Any]) -> None:
        lines = [line for line in data.get("lines", []) if keep_worker_line(line)]
        if lines:
            printer({**data, "lines": lines}, ignore_prefix=ignore_prefix)

    with contextlib.suppress(Exception):
        if any(name == "ray_print_logs" for name, _ in dispatcher.handlers):  # log_to_driver is on
            dispatcher.remove_handler("ray_print_logs")  # ray.shutdown removes ours by this name
            dispatcher.add_handler("ray_print_logs", print_kept)
            return True
    return False


def ray_address(params: Params) -> str | None:
    return os.environ.get("RAY_ADDRESS") or params.ray.address


@contextlib.contextmanager
def ray_session(params: Params) -> Iterator[None]:
    """Connect to the configured cluster, or start a local one on 127.0.0.1 sized from params."""
    apply_env()
    import ray

    if ray.is_initialized():
        yield
        return
    address = ray_address(params)
    env_vars = {k: os.environ[k] for k in (*RAY_ENV, *KERNEL_PINS, *PROPAGATED) if k in os.environ}
    if os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        ray.init()  # inside `ray job submit`: the job's runtime env already carries our variables
    elif address:
        ray.init(address=address, runtime_env={"env_vars": env_vars}, log_to_driver=True)
    else:
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise RuntimeError(
                "Ray was imported before components.cluster.apply_env() (or with "
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=1): a local Ray would listen beyond 127.0.0.1"
            )
        ray.init(
            address="local",  # always a fresh local instance, never a `ray start` cluster found on disk
            num_cpus=params.ray.num_cpus,
            num_gpus=0,
            include_dashboard=params.ray.include_dashboard,
            object_store_memory=params.ray.object_store_mb * 1024**2,
            runtime_env={"env_vars": env_vars},
        )
    quiet_benign_worker_logs()
    try:
        yield
    finally:
        ray.shutdown()


def run_with_one_ray(params: Params, command: list[str], cwd: Path, timeout_s: float) -> int:
    """Run `command` (e.g. `dvc repro`) with one local Ray that every Ray-using process it starts
    attaches to (RAY_ADDRESS), instead of each stage starting and stopping its own (~5 s each,
    40 stages). The Ray is this process's: on 127.0.0.1, sized from params, and shut down when
    the command ends, fails or times out (its process group is killed on timeout). With
    RAY_ADDRESS already set (a cluster), the command runs against that one."""
    import subprocess

    env = dict(os.environ)
    with contextlib.ExitStack() as stack:
        if not ray_address(params):
            stack.enter_context(ray_session(params))
            import ray

            env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
            log.info("one local Ray for the whole run at %s", env["RAY_ADDRESS"])
        proc = subprocess.Popen(command, cwd=cwd, env=env, start_new_session=True)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{' '.join(command)} did not finish within {timeout_s:.0f} s") from None
        finally:
            if proc.poll() is None:  # timed out, or Ctrl-C / SIGTERM here: stop the whole group
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)


@contextlib.contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the block runs past `seconds` (no silent hangs)."""

    def _expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what} did not finish within {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- jobs
JOB_EXCLUDES = [".git", ".venv", "data", "prepared", "models", "mlruns", "ray_results", ".serve-cache", ".dvc/cache",
                ".dvc/tmp", ".dvc/config.local", ".cluster", "infra/mlflow/.env", "tuning", "registry", "*.log"]


def submit_job(
    address: str,
    entrypoint: str,
    env_vars: dict[str, str],
    working_dir: Path = REPO_ROOT,
    wait: bool = True,
    timeout_s: float = 1800,
    submission_id: str | None = None,
) -> tuple[str, str]:
    """`ray job submit` through the SDK: upload the repo (without data/outputs), run, wait.

    The job pulls its raw data from the DVC remote; results go to the cluster's MLflow server.
    A cluster with token auth needs RAY_AUTH_MODE=token and RAY_AUTH_TOKEN here (the SDK sends
    it); without them the Jobs API answers 401 and this says so.
    Returns (submission id, final status).
    """
    from ray.job_submission import JobStatus, JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
        job_id = client.submit_job(
            entrypoint=entrypoint, submission_id=submission_id,
            runtime_env={"working_dir": str(working_dir), "excludes": JOB_EXCLUDES, "env_vars": env_vars},
        )
    except Exception as e:  # the SDK raises AuthenticationError, ConnectionError or RuntimeError
        text = str(e)
        if type(e).__name__ == "AuthenticationError" or "401" in text or "403" in text:
            raise ConfigError(f"the Ray cluster at {address} refused the job: token authentication failed "
                              "(set RAY_AUTH_TOKEN, e.g. eval \"$(quartet cluster env)\")") from None
        if isinstance(e, (ConnectionError, RuntimeError)):
            raise ConfigError(f"cannot submit to {address}: {text.splitlines()[0] if text else type(e).__name__}") from None
        raise
    log.info("submitted job %s to %s: %s", job_id, address, entrypoint)
    if not wait:
        return job_id, "PENDING"
    end = time.monotonic() + timeout_s
    status = client.get_job_status(job_id)
    while status not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        if time.monotonic() > end:
            client.stop_job(job_id)
            raise TimeoutError(f"job {job_id} did not finish within {timeout_s:.0f} s (stopped)")
        time.sleep(2)
        status = client.get_job_status(job_id)
    if status != JobStatus.SUCCEEDED:
        logs = client.get_job_logs(job_id)
        raise RuntimeError(f"job {job_id} ended {status}; last log lines:\n" + "\n".join(logs.splitlines()[-30:]))
    return job_id, status.value
