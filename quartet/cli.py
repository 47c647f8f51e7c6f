"""`quartet <stage> <family> <task>`, `quartet serve`, `quartet submit ...`: the only wiring of
families into verbs. Every command is also a plain function that tests call directly; each stage
writes one small file that the next stage reads (the DVC outputs in dvc.yaml).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from components import cluster, config, data, stages, track
from components.config import REPO_ROOT, ConfigError, Params, layout
from components.data import dvc_dir_md5  # noqa: F401  (quartet.cli.dvc_dir_md5, as before)
from families import families, get

log = logging.getLogger("quartet")
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
submit_app = typer.Typer(no_args_is_help=True, help="Submit work to a running Ray cluster (ray job submit).")
app.add_typer(submit_app, name="submit")
cluster_app = typer.Typer(no_args_is_help=True, help="A local Ray cluster of separate hosts (network namespaces; root).")
app.add_typer(cluster_app, name="cluster")

ProfileOpt = Annotated[
    str | None, typer.Option("--profile", envvar="QUARTET_PROFILE", help="Apply profiles/<name>.yaml over params.yaml.")
]


def _params(profile: str | None, root: Path = REPO_ROOT) -> Params:
    return config.load(root, profile)


def _task_params(params: Params, family: str, task: str) -> config.TaskParams:
    return stages.task_params(params, get(family), task)


def make_data(root: Path = REPO_ROOT, verify: bool = True, force: bool = False) -> str:
    """Materialise data/ from every family's sources, check it against data.dvc."""
    return stages.make_data(families().values(), root, verify, force)


@app.command("data")
def data_cmd(
    verify: Annotated[bool, typer.Option(help="Check data/ against the md5 in data.dvc.")] = True,
    force: Annotated[bool, typer.Option(help="Regenerate even if data/ exists.")] = False,
    push: Annotated[bool, typer.Option(help="Push data/ to the default DVC remote (cluster jobs pull it).")] = True,
) -> None:
    """Materialise data/ from its sources, check it against data.dvc, push it to the DVC remote."""
    md5 = make_data(REPO_ROOT, verify, force)
    typer.echo(f"data/ ok: {md5}")
    if push:
        from components import datasync

        try:
            typer.echo(f"pushed to the DVC remote {datasync.push(REPO_ROOT)}")
        except ConfigError as e:  # the local pipeline never needs the remote: warn, do not fail
            typer.echo(f"warning: data/ not pushed: {e}", err=True)


# ----------------------------------------------------------------------------- stages
def run_stage(name: str, family: str, task: str, profile: str | None = None, root: Path = REPO_ROOT) -> Any:
    """One stage of one (family, task), as `dvc repro` runs it (components/stages.py)."""
    return stages.STAGES[name](get(family), task, _params(profile, root), root)


@app.command("repro", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def repro_cmd(
    ctx: typer.Context,
    timeout: Annotated[float, typer.Option(help="Seconds before the whole run is stopped.")] = 7200,
) -> None:
    """`dvc repro [ARGS]` with one local Ray shared by every stage (what `make repro` runs)."""
    dvc = str(Path(sys.executable).parent / "dvc")
    code = cluster.run_with_one_ray(_params(None), [dvc, "repro", *ctx.args], REPO_ROOT, timeout)
    if code:
        raise typer.Exit(code)


@app.command("check-metrics")
def check_metrics_cmd(
    rev: Annotated[str, typer.Argument(help="The revision whose metrics are the reference.")] = "HEAD",
) -> None:
    """After `make repro`: are the metrics those of REV within reproducibility.yaml's tolerances?"""
    from components import reproducibility

    problems = reproducibility.check(rev)
    for line in problems:
        typer.echo(line)
    typer.echo(f"{len(problems)} metric(s) outside the tolerances of {reproducibility.TOLERANCES}" if problems
               else f"every metric within the tolerances of {reproducibility.TOLERANCES} (against {rev})")
    if problems:
        raise typer.Exit(1)


@app.command("promote")
def promote_cmd(
    family: Annotated[str, typer.Argument()], task: Annotated[str, typer.Argument()],
    version: Annotated[str, typer.Argument(help="registered model version to make @champion")],
    profile: ProfileOpt = None,
) -> None:
    """Move @champion to VERSION by hand (when `register` could not compare it with the champion)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    params = _params(profile)
    _task_params(params, family, task)
    mlflow.set_tracking_uri(config.tracking_uri(params))
    name = track.registered_name(family, task)
    try:
        track.promote(name, version)
    except MlflowException as e:
        raise ConfigError(f"cannot promote {name} v{version}: {str(e).splitlines()[0]}") from None
    typer.echo(f"{name}@champion -> v{version}")


def run_and_report(name: str, family: str, task: str, profile: str | None) -> None:
    """One stage, then its one-line outcome (register: promoted or not, and why)."""
    t0 = time.perf_counter()
    out = run_stage(name, family, task, profile)
    if name == "register":
        typer.echo(f"{out['name']} v{out['version']}: {'promoted to @champion' if out['promoted'] else 'not promoted'} "
                   f"({out['reason']})")
    typer.echo(f"{name} {family}/{task} done in {time.perf_counter() - t0:.1f} s")


def _stage_command(name: str) -> None:
    fn = stages.STAGES[name]

    def command(
        family: Annotated[str, typer.Argument(help="forecaster | ...")],
        task: Annotated[str, typer.Argument(help="e.g. synthetic, vic_elec")],
        profile: ProfileOpt = None,
    ) -> None:
        run_and_report(name, family, task, profile)

    command.__doc__ = fn.__doc__
    app.command(name)(command)


for _name in stages.STAGES:
    _stage_command(_name)


@app.command("task")
def task_cmd(
    family: Annotated[str, typer.Argument(help="forecaster | translator | generative | rl")],
    task: Annotated[str, typer.Argument(help="e.g. Breakout (an extra task: not a dvc.yaml stage)")],
    profile: ProfileOpt = None,
) -> None:
    """Every stage of one task in order, prepare to register: how an extra task runs (rl Breakout,
    too slow for the default pipeline). A pipeline task belongs to `dvc repro`, which tracks it."""
    fam = get(family)
    if task in fam.tasks:
        raise ConfigError(f"{family}/{task} is a pipeline task: run `dvc repro` (or `quartet repro`), which tracks it")
    for name in stages.STAGES:
        run_and_report(name, family, task, profile)


# ----------------------------------------------------------------------------- serve + ui
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
UI_PORT = 5000  # `quartet ui` / `make ui`


def serve_specs(params: Params | None = None) -> list[Any]:
    """What the app serves: every family's pipeline tasks, and (given params, whose registry is
    asked) each extra task that has a @champion (Family.extra_tasks: trained on request only)."""
    from components.serve import FamilyServeSpec

    extra = extra_champions(params) if params is not None else set()
    return [
        FamilyServeSpec(f.name, f"{f.predictor.__module__}:{f.predictor.__name__}",
                        f.tasks + tuple(t for t in f.extra_tasks if (f.name, t) in extra), f.routes,
                        f.demo_panel.read_text() if f.demo_panel and f.demo_panel.is_file() else "")
        for f in families().values()
    ]


def extra_champions(params: Params) -> set[tuple[str, str]]:
    """(family, task) of the extra tasks with a @champion; none when the registry cannot say."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri(params))
    found = set()
    for f in families().values():
        for t in f.extra_tasks:
            try:
                if track.champion(track.registered_name(f.name, t)) is not None:
                    found.add((f.name, t))
            except Exception as e:  # noqa: BLE001 - an extra task is optional: the others still serve
                log.warning("%s/%s: not served, the registry did not answer (%s)", f.name, t, type(e).__name__)
    return found


def serve_settings(params: Params, host: str) -> Any:
    """params.serve -> the plain settings every replica gets (beyond loopback: an API key)."""
    from components.serve import ServeSettings

    s = params.serve
    loopback = host in LOOPBACK_HOSTS
    return ServeSettings(
        tracking_uri=config.tracking_uri(params), cache_dir=str(config.resolve(s.cache_dir)),
        max_body_bytes=s.max_body_bytes, max_batch_size=s.max_batch_size, max_ongoing_requests=s.max_ongoing_requests,
        max_queued_requests=s.max_queued_requests, replica_cpus=s.replica_cpus, num_replicas=dict(s.num_replicas),
        poll_s=s.poll_s, health_timeout_s=s.health_timeout_s, torch_threads=s.torch_threads, access_log=s.access_log,
        loopback_only=loopback, require_api_key=not loopback, mlflow_ui=mlflow_ui_url(params),
    )


def mlflow_ui_url(params: Params) -> str:
    """Where a user opens the runs: the tracking server itself, else what `make ui` starts."""
    uri = config.tracking_uri(params)
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else f"http://127.0.0.1:{UI_PORT}"


def serve_app(args: dict[str, Any] | None = None) -> Any:
    """Serve application builder (`serve run quartet.cli:serve_app`, infra/serve/*.yaml):
    args `family: rl` builds that family's app (route prefix /rl), no family the gateway (/)."""
    from components.serve import build_family_app, build_gateway_app

    args = args or {}
    params = _params(args.get("profile") or os.environ.get("QUARTET_PROFILE"))
    settings = serve_settings(params, args.get("host", params.serve.host))
    specs = {s.family: s for s in serve_specs(params)}
    family = args.get("family")
    if family is None:
        return build_gateway_app(list(specs.values()), settings)
    if family not in specs:
        raise ConfigError(f"serve_app: unknown family {family!r} (known: {', '.join(specs)})")
    return build_family_app(specs[family], settings)


def served_champions(params: Params) -> dict[str, bool]:
    """registered model name -> whether it has a @champion, for every family and task."""
    import mlflow

    mlflow.set_tracking_uri(config.tracking_uri(params))
    return {
        track.registered_name(f.name, t): track.champion(track.registered_name(f.name, t)) is not None
        for f in families().values()
        for t in f.tasks
    }


@app.command("serve")
def serve_cmd(
    host: Annotated[str | None, typer.Option(help="Bind address (default params serve.host, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default params serve.port, 8000).")] = None,
    block: Annotated[bool, typer.Option(help="Keep serving until Ctrl-C.")] = True,
    address: Annotated[str | None, typer.Option(
        help="Deploy to this Ray cluster's dashboard (http://HEAD:8265) instead of a local Ray.")] = None,
    profile: ProfileOpt = None,
) -> None:
    """Serve every family's @champion models over HTTP (OpenAPI page at /docs)."""
    params = _params(profile)
    if address:  # before Ray is imported: the client's token settings are read once
        url = deploy_to_cluster(address, host, port or params.serve.port, profile)
        typer.echo(f"serving on {url}  (docs: {url}/docs; requests need Authorization: Bearer $QUARTET_API_KEY)")
        return
    from components.serve import API_KEY_ENV, api_key_from_env, applications, start

    host, port = host or params.serve.host, port or params.serve.port
    if host not in LOOPBACK_HOSTS and not api_key_from_env():
        raise ConfigError(f"serving on {host} (beyond loopback) needs an API key: export {API_KEY_ENV}=... "
                          "(clients send Authorization: Bearer <key>)")
    champions = served_champions(params)
    if not any(champions.values()):
        raise ConfigError(
            f"nothing to serve: no @champion model in {config.tracking_uri(params)} (run `make repro` first)"
        )
    for name, found in champions.items():
        if not found:
            log.warning("%s@champion not found: its task will answer 503 until one is registered", name)

    with stop_on_signals(), cluster.ray_session(params):
        with cluster.deadline(params.serve.ready_timeout_s, "serve start"):
            start(applications(serve_specs(params), serve_settings(params, host)), host, port)
        typer.echo(f"serving on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
        if not block:
            return
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopping")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM (`kill`, a container stop) ends the block like Ctrl-C does, so the `finally`s that
    stop Serve and the Ray this process started run; the previous handler is restored after."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def deploy_to_cluster(address: str, host: str | None, port: int, profile: str | None,
                      timeout_s: float = 300, root: Path = REPO_ROOT) -> str:
    """`serve deploy` through the dashboard's REST API: the app of `quartet serve`, with this
    checkout's code uploaded as its working_dir, HTTP on the head's address (one proxy, on the
    head), replicas wherever the cluster has CPUs. The champions come from the cluster's MLflow
    (the nodes' MLFLOW_TRACKING_URI); the API key from the nodes' QUARTET_API_KEY."""
    from urllib.parse import urlparse

    _client_auth(address, root)
    from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

    host = host or urlparse(address).hostname or "0.0.0.0"
    client = ServeSubmissionClient(address)
    runtime_env = {"working_dir": str(root), "excludes": cluster.JOB_EXCLUDES,
                   "env_vars": {"QUARTET_PROFILE": profile or "", "QUARTET_GIT_COMMIT": track.git_commit(root)}}
    client._upload_working_dir_if_needed(runtime_env)  # local dir -> gcs:// package, in place (as job submit does)
    from components.serve import GATEWAY_APP, family_app_name

    apps = [{"name": GATEWAY_APP, "route_prefix": "/", "import_path": "quartet.cli:serve_app",
             "args": {"profile": profile, "host": host}, "runtime_env": runtime_env}]
    apps += [{"name": family_app_name(f), "route_prefix": f"/{f}", "import_path": "quartet.cli:serve_app",
              "args": {"profile": profile, "host": host, "family": f}, "runtime_env": runtime_env} for f in families()]
    client.deploy_applications({"proxy_location": "HeadOnly", "http_options": {"host": host, "port": port},
                                "applications": apps})
    end = time.monotonic() + timeout_s
    statuses: dict[str, str] = {}
    while time.monotonic() < end:
        details = client.get_serve_details().get("applications", {})
        statuses = {a["name"]: details.get(a["name"], {}).get("status", "NOT_STARTED") for a in apps}
        failed = [n for n, st in statuses.items() if st == "DEPLOY_FAILED"]
        if failed:
            raise ConfigError(f"the Serve app {failed[0]} failed to deploy on {address}: "
                              f"{details[failed[0]].get('message', '')[-1500:]}")
        if set(statuses.values()) == {"RUNNING"}:
            return f"http://{host}:{port}"
        time.sleep(2)
    raise TimeoutError(f"the Serve apps on {address} were not RUNNING within {timeout_s:.0f} s (last: {statuses})")


@app.command("status")
def status_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    port: Annotated[int | None, typer.Option(help="The served app's port (default params serve.port).")] = None,
    profile: ProfileOpt = None,
) -> None:
    """What `dvc repro` would rerun, each task's champion and test metric, the served app's health,
    the tracking store in use."""
    from quartet import status

    params = _params(profile)
    s = status.gather(params, families(), REPO_ROOT, port)
    typer.echo(json.dumps(s.as_dict(), indent=2) if as_json else status.render(s))


@app.command("ui")
def ui_cmd(port: Annotated[int, typer.Option(help="UI port on 127.0.0.1.")] = UI_PORT, profile: ProfileOpt = None) -> None:
    """Open the MLflow UI on 127.0.0.1 over the pipeline's tracking store."""
    params = _params(profile)
    uri = config.tracking_uri(params)
    if uri.startswith("http"):
        typer.echo(f"the tracking store is a server already: open {track.ui_url(uri)}")
        return
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", uri, "--default-artifact-root", config.artifact_root(params)]
    typer.echo("$ " + shlex.join(cmd))
    # the 3.17 UI opens an experiment on its GenAI overview unless the link asks for model training
    typer.echo(f"open {track.ui_url(f'http://127.0.0.1:{port}')}")
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(sys.executable, cmd)


# ----------------------------------------------------------------------------- cluster jobs
def _client_auth(address: str, root: Path) -> None:
    """Give the Ray client the cluster's token: RAY_AUTH_TOKEN from the environment, else the local
    cluster's own secrets when `address` is its head (`make cluster-up`)."""
    from components import localcluster

    if not os.environ.get("RAY_AUTH_TOKEN"):
        p = localcluster.plan(_params(None, root), root)
        if p.head.ip in address and p.secrets_file.is_file():
            for key, value in localcluster.client_env(p).items():
                os.environ.setdefault(key, value)
    if os.environ.get("RAY_AUTH_TOKEN"):
        os.environ["RAY_AUTH_MODE"] = "token"


def _client_mlflow(mlflow_uri: str | None, address: str, root: Path) -> str | None:
    """The MLflow server the submitting user reads results from (the cluster's, by default)."""
    if mlflow_uri:
        return mlflow_uri
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri if uri and uri.startswith("http") else None


def submit(
    verb: str,
    family: str,
    tasks: list[str] | None,
    address: str,
    profile: str = "cluster",
    mlflow_uri: str | None = None,
    wait: bool = True,
    timeout_s: float = 3600,
    root: Path = REPO_ROOT,
) -> dict[str, Any]:
    """`ray job submit` one family's stages: pull the pinned data (DVC), prepare, then `tune`
    (verb "tune") or train -> evaluate -> register (verb "train"). Returns the job's outcome; for
    tune, the best parameters come back to tuning/<family>/<task>/best_params.cluster.yaml."""
    import uuid

    from components import datasync

    params = _params(profile, root)
    fam = get(family)
    tasks = list(tasks or fam.tasks)
    for t in tasks:
        _task_params(params, family, t)
    _client_auth(address, root)
    stages = ["prepare", "tune"] if verb == "tune" else ["prepare", "train", "evaluate", "register"]
    steps = ["python -m quartet.cli pull-data"]
    steps += [f"python -m quartet.cli {stage} {family} {t}" for t in tasks for stage in stages]
    submission = f"quartet-{verb}-{family}-{uuid.uuid4().hex[:8]}"
    env = {k: cluster.RAY_ENV[k] for k in cluster.JOB_ENV} | cluster.KERNEL_PINS | {
        "QUARTET_PROFILE": profile, "QUARTET_GIT_COMMIT": track.git_commit(root),
        "QUARTET_DVC_REMOTE_URL": datasync.default_remote_url(root), "QUARTET_SUBMISSION_ID": submission}
    if mlflow_uri:
        env["MLFLOW_TRACKING_URI"] = mlflow_uri  # else the cluster's own (its nodes' environment)
    job_id, status = cluster.submit_job(address, " && ".join(steps), env, root, wait, timeout_s, submission)
    out: dict[str, Any] = {"job_id": job_id, "status": status, "tasks": tasks}
    if wait and verb == "tune":
        out["best_params"] = _fetch_best_params(family, tasks, submission, _client_mlflow(mlflow_uri, address, root), root)
    return out


def _fetch_best_params(family: str, tasks: list[str], submission: str, uri: str | None, root: Path) -> dict[str, str]:
    """Download each sweep's best_params.yaml from the MLflow server into the checkout, beside
    the local tune output (adopt it with `quartet adopt-tuning FAMILY TASK`)."""
    from mlflow import MlflowClient

    if not uri:
        log.warning("no MLflow server to fetch the best parameters from (pass --mlflow-uri)")
        return {}
    client = MlflowClient(tracking_uri=uri)
    params = _params(None, root)
    got = {}
    for t in tasks:
        exp = client.get_experiment_by_name(track.experiment_name(params, family, t))
        runs = client.search_runs(
            [exp.experiment_id], f"tags.`quartet.submission` = '{submission}' and tags.`quartet.stage` = 'tune'"
        ) if exp else []
        if not runs:
            raise ConfigError(f"job {submission} finished but {uri} has no sweep run of {family}/{t}")
        dst = layout(family, t, root).best_params.with_name("best_params.cluster.yaml")
        dst.parent.mkdir(parents=True, exist_ok=True)
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            local = client.download_artifacts(runs[0].info.run_id, "best_params.yaml", d)
            data.write_text_atomic(dst, Path(local).read_text())
        got[t] = str(dst.relative_to(root))
    return got


SubmitTasks = Annotated[list[str] | None, typer.Argument(help="Tasks (default: all of the family's).")]
AddressOpt = Annotated[str, typer.Option(help="Ray dashboard / Jobs API, e.g. http://HEAD:8265", envvar="RAY_JOBS_ADDRESS")]
SubmitProfile = Annotated[str, typer.Option(help="Profile(s) applied inside the job, e.g. cluster or cluster,tiny.")]
MlflowOpt = Annotated[str | None, typer.Option(help="MLflow server for the job's runs (default: the cluster's own).")]
WaitOpt = Annotated[bool, typer.Option(help="Wait for the job to finish.")]
TimeoutOpt = Annotated[float, typer.Option(help="Seconds to wait for the job.")]


@submit_app.command("tune")
def submit_tune_cmd(
    family: Annotated[str, typer.Argument(help="family to tune, e.g. forecaster")],
    task: SubmitTasks = None, address: AddressOpt = "http://127.0.0.1:8265", profile: SubmitProfile = "cluster",
    mlflow_uri: MlflowOpt = None, wait: WaitOpt = True, timeout: TimeoutOpt = 3600,
) -> None:
    """Tune FAMILY on a Ray cluster (pull data, prepare, tune); best params come back here."""
    out = submit("tune", family, task, address, profile, mlflow_uri, wait, timeout)
    typer.echo(f"job {out['job_id']}: {out['status']}")
    for t, path in out.get("best_params", {}).items():
        typer.echo(f"{family}/{t}: best parameters in {path} (use them: quartet adopt-tuning {family} {t})")


@submit_app.command("train")
def submit_train_cmd(
    family: Annotated[str, typer.Argument(help="family to train, e.g. forecaster")],
    task: SubmitTasks = None, address: AddressOpt = "http://127.0.0.1:8265", profile: SubmitProfile = "cluster",
    mlflow_uri: MlflowOpt = None, wait: WaitOpt = True, timeout: TimeoutOpt = 3600,
) -> None:
    """Train, evaluate and register FAMILY on a Ray cluster (the cluster's MLflow gets the model)."""
    out = submit("train", family, task, address, profile, mlflow_uri, wait, timeout)
    typer.echo(f"job {out['job_id']}: {out['status']}")


@app.command("adopt-tuning")
def adopt_tuning_cmd(family: Annotated[str, typer.Argument()], task: Annotated[str, typer.Argument()]) -> None:
    """Use a cluster sweep's best params locally: they become the tune stage's output
    (`dvc commit`), so `dvc repro` retrains from them without tuning again."""
    lay = layout(family, task)
    src = lay.best_params.with_name("best_params.cluster.yaml")
    if not src.is_file():
        raise ConfigError(f"{src}: not found (run `quartet submit tune {family} {task} --address ...` first)")
    data.write_text_atomic(lay.best_params, src.read_text())
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), "commit", "-f", "-q", f"tune@{family}-{task}"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise ConfigError(f"dvc commit tune@{family}-{task} failed: {proc.stderr.strip()[-400:]}")
    typer.echo(f"{lay.best_params.relative_to(REPO_ROOT)} <- {src.name}; `dvc repro` now retrains from it")


@app.command("pull-data")
def pull_data_cmd(
    remote_url: Annotated[str | None, typer.Option(envvar="QUARTET_DVC_REMOTE_URL", help="DVC remote to pull from.")] = None,
) -> None:
    """Fetch data/ as pinned by data.dvc from the DVC remote (what cluster jobs run first)."""
    from components import datasync

    md5 = datasync.pull(REPO_ROOT, remote_url)
    typer.echo(f"data/ ok: {md5}")


# ----------------------------------------------------------------------------- local cluster
@cluster_app.command("up")
def cluster_up_cmd(profile: ProfileOpt = None) -> None:
    """Start (or repair) head + worker hosts: PostgreSQL, mlflow server, Ray with token auth."""
    from components import localcluster

    localcluster.require_root("cluster-up")
    s = localcluster.up(_params(profile))
    typer.echo(localcluster.format_status(s))
    typer.echo(f"up in {s['up_s']} s. Client settings: eval \"$(.venv/bin/quartet cluster env)\"")


@cluster_app.command("down")
def cluster_down_cmd(profile: ProfileOpt = None) -> None:
    """Stop every process of every host and remove the namespaces and the bridge (idempotent)."""
    from components import localcluster

    localcluster.require_root("cluster-down")
    removed = localcluster.down(_params(profile))
    typer.echo("removed: " + (", ".join(removed) if removed else "nothing (the cluster was not up)"))


@cluster_app.command("status")
def cluster_status_cmd(
    profile: ProfileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
) -> None:
    """The hosts, their Ray nodes and resources, the MLflow and dashboard URLs."""
    from components import localcluster

    s = localcluster.status(_params(profile))
    typer.echo(json.dumps(s, indent=2) if as_json else localcluster.format_status(s))
    if not s["running"]:
        raise typer.Exit(1)


@cluster_app.command("env")
def cluster_env_cmd(profile: ProfileOpt = None) -> None:
    """`export` lines for a client shell: Ray token, job address, MLflow server and credentials."""
    from components import localcluster

    for key, value in localcluster.client_env(localcluster.plan(_params(profile))).items():
        typer.echo(f"export {key}={shlex.quote(value)}")


@cluster_app.command("kill-host")
def cluster_kill_host_cmd(name: Annotated[str, typer.Argument(help="e.g. worker-2")], profile: ProfileOpt = None) -> None:
    """Kill every process of one host (its raylet first), as a machine failure would."""
    from components import localcluster

    n = localcluster.stop_host(_params(profile), name)
    typer.echo(f"{name}: killed {n} processes; `quartet cluster up` brings it back")


# ----------------------------------------------------------------------------- profiles
@app.command("profile")
def profile_cmd(
    name: Annotated[str, typer.Argument(help="profiles/<name>.yaml")],
    output: Annotated[Path, typer.Option(help="Where to write the merged params.")] = Path("params.yaml"),
) -> None:
    """Write params.yaml with a profile's overrides applied (DVC then tracks the change)."""
    write_profile(name, REPO_ROOT / output if not output.is_absolute() else output)
    typer.echo(f"wrote {output} with profile {name!r}")


def write_profile(name: str, output: Path, root: Path = REPO_ROOT) -> None:
    merged = config.raw_params(root, name)
    config.validate(merged, f"params.yaml + profiles/{name}.yaml")
    header = f"# params.yaml with profiles/{name}.yaml applied (quartet profile {name}).\n"
    data.write_text_atomic(output, header + yaml.safe_dump(merged, sort_keys=False))


def main() -> None:
    cluster.apply_env()
    logging.basicConfig(level=os.environ.get("QUARTET_LOG", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = app(standalone_mode=False)  # typer.Exit(n) comes back as n here
        if isinstance(code, int) and code:
            sys.exit(code)
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
    except TimeoutError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(3)
    except (typer.Exit, typer.Abort) as e:
        sys.exit(getattr(e, "exit_code", 1))
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
