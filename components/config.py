"""Load and validate `params.yaml`, resolve paths, apply profiles.

Why one module: every stage, Tune trial, Train worker and Serve replica reads the same params,
so they must agree on defaults and on where things live. Paths are resolved against the repo
root (never the current directory: Tune and Train change it) and errors name the exact key.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent
PARAMS_FILE = "params.yaml"
PROFILES_DIR = "profiles"


class ConfigError(ValueError):
    """A user mistake in params or data: the message says which key/file and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RayParams(_Strict):
    address: str | None = Field(None, description="Ray cluster address; None starts a local Ray.")
    num_cpus: int | None = Field(2, gt=0, description="CPUs of the local Ray (None: all cores).")
    object_store_mb: int = Field(256, gt=0)
    include_dashboard: bool = False
    storage_path: str = Field("ray_results", description="Train/Tune storage; relative = under the repo.")


class PathsParams(_Strict):
    outputs_root: str | None = Field(
        None,
        description="Where stage outputs (prepared splits, models, metrics) go. null: the repo, which "
        "DVC tracks. On a multi-node cluster: a path every node sees (NFS), because Tune trials and "
        "Train workers on any node read the prepared splits.",
    )


class MlflowParams(_Strict):
    tracking_uri: str | None = Field(
        None, description="None: sqlite:///<repo>/mlruns/mlflow.db; MLFLOW_TRACKING_URI overrides."
    )
    artifact_root: str = Field("mlruns/artifacts", description="Artifact root for new experiments.")
    experiment_prefix: str = "quartet"


class ServeParams(_Strict):
    """`quartet serve`: one Serve app per family plus the gateway (components/serve.py)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    replica_cpus: float = Field(0.25, gt=0, description="Ray CPUs each replica reserves (a share: they mostly wait).")
    num_replicas: dict[str, int] = Field(
        default_factory=lambda: {"default": 1},
        description="Replicas per family ('default' for the others); 1 each fits a 2-core machine.")
    max_body_bytes: int = Field(2_000_000, gt=0)
    max_batch_size: int = Field(16, gt=0, description="Requests answered in one pass (1: no batching).")
    max_ongoing_requests: int = Field(32, gt=0, description="Requests a replica holds at once (>= max_batch_size "
                                      "so batches can form).")
    max_queued_requests: int = Field(256, gt=0, description="Requests waiting for a replica; beyond it 503 "
                                     "(bounded memory under overload).")
    poll_s: float = Field(10, gt=0, description="How often replicas check the registry for a new @champion.")
    health_timeout_s: float = Field(2, gt=0, description="How long /health waits for a family's answer.")
    torch_threads: int = Field(1, gt=0, description="torch threads per replica (they share the machine's cores).")
    access_log: bool = Field(False, description="A log line per request in each replica's Serve log (costs "
                             "~5% of a replica's CPU per request; Serve's metrics count requests either way).")
    cache_dir: str = Field(".serve-cache", description="Downloaded champions, by version (relative = under the "
                           "repo): a restarted replica serves its version while MLflow is unreachable.")
    ready_timeout_s: float = Field(120, gt=0)

    @field_validator("num_replicas")
    @classmethod
    def _positive_replicas(cls, v: dict[str, int]) -> dict[str, int]:
        bad = {k: n for k, n in v.items() if n < 1}
        if bad:
            raise ValueError(f"replicas must be >= 1: {bad}")
        return v

    @model_validator(mode="after")
    def _batches_fit(self) -> "ServeParams":
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(f"max_ongoing_requests ({self.max_ongoing_requests}) must be >= max_batch_size "
                             f"({self.max_batch_size}): a replica never holds enough requests to fill a batch")
        return self


class ClusterHostParams(_Strict):
    cpus: int = Field(1, ge=0, description="CPUs this host offers to Ray (`ray start --num-cpus`).")


class ClusterParams(_Strict):
    """`make cluster-up`: a cluster of separate hosts on this machine (network namespaces on a
    bridge), the way one tries a cluster before renting one. See components/localcluster.py."""

    name: str = Field("qc", pattern=r"^[a-z][a-z0-9]{0,5}$",
                      description="Prefix of the namespaces, bridge and veths (Linux names are <= 15 chars).")
    subnet: str = Field("10.213.7.0/24", description="A private /24 the hosts get addresses in; .1 is this machine.")
    state_dir: str = Field(".cluster", description="Pids, logs, secrets, the shared storage; relative = under the repo.")
    hosts: dict[str, ClusterHostParams] = Field(
        default_factory=lambda: {"head": ClusterHostParams(cpus=0), "worker-1": ClusterHostParams(cpus=1),
                                 "worker-2": ClusterHostParams(cpus=1)},
        description="`head` runs PostgreSQL, the MLflow server and the Ray head; the others join it.",
    )
    ready_timeout_s: float = Field(120, gt=0, description="Longest wait for any one piece to come up.")

    @field_validator("subnet")
    @classmethod
    def _slash24(cls, v: str) -> str:
        import ipaddress

        try:
            net = ipaddress.ip_network(v)
        except ValueError as e:
            raise ValueError(f"not a network: {e}") from None
        if net.prefixlen != 24 or not net.is_private or net.version != 4:
            raise ValueError("give a private IPv4 /24, e.g. 10.213.7.0/24")
        return v

    @field_validator("hosts")
    @classmethod
    def _has_head(cls, v: dict[str, ClusterHostParams]) -> dict[str, ClusterHostParams]:
        if "head" not in v or len(v) < 2:
            raise ValueError("needs a host named 'head' and at least one worker host")
        if len(v) > 50:
            raise ValueError("at most 50 hosts")
        for name in v:
            if not re.fullmatch(r"[a-z][a-z0-9-]{0,8}", name):
                raise ValueError(f"host name {name!r}: lowercase letters, digits and '-', at most 9 characters")
        return v


class SpaceSpec(_Strict):
    """One searchable hyperparameter: exactly one of the distributions."""

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    randint: tuple[int, int] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "SpaceSpec":
        given = [k for k in ("choice", "uniform", "loguniform", "randint") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of choice/uniform/loguniform/randint, got {given or 'none'}")
        for k in ("uniform", "loguniform", "randint"):
            lo_hi = getattr(self, k)
            if lo_hi is not None and not lo_hi[0] < lo_hi[1]:
                raise ValueError(f"{k} needs low < high, got {list(lo_hi)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform needs low > 0")
        if self.choice is not None and not self.choice:
            raise ValueError("choice needs at least one value")
        return self


class TuneParams(_Strict):
    models: list[str] = Field(min_length=1, description="Candidate models; the sweep picks one.")
    hparams: dict[str, Any] = Field(
        default_factory=dict, description="The sweep's fixed values (every trial's), under the searched ones; "
        "the train stage has its own (train.hparams), so editing those retrains without tuning again.")
    num_samples: int = Field(gt=0)
    epochs: int = Field(gt=0, description="Max epochs per trial (ASHA max_t).")
    grace_period: int = Field(1, gt=0)
    max_concurrent: int = Field(2, gt=0, description="Upper bound; also capped by free CPUs.")
    cpus_per_trial: float = Field(1, gt=0, description="launcher=function: Ray CPUs per trial; its whole CPUs "
                                  "are also the trial's torch threads.")
    gpus_per_trial: float = Field(0, ge=0, description="launcher=function: GPUs per trial (0: CPU).")
    launcher: Literal["function", "trainer"] = Field(
        "function", description="function: the loop in the trial process; trainer: a TorchTrainer per trial."
    )
    num_workers_per_trial: int = Field(1, gt=0, description="Only for launcher=trainer.")
    max_train_samples: int | None = Field(None, gt=0, description="Subsample the train split for speed.")
    search_space: dict[str, dict[str, SpaceSpec]] = Field(
        default_factory=dict, description="model -> {hparam: distribution}; models without one use defaults."
    )
    timeout_s: float = Field(1800, gt=0)
    max_failures: int = Field(2, ge=0, description="Retries of a trial whose process or node died.")


class TrainParams(_Strict):
    epochs: int = Field(gt=0)
    num_workers: int = Field(1, gt=0)
    cpus_per_worker: float = Field(1, gt=0, description="Ray CPUs per Train worker; its whole CPUs are also "
                                   "its torch threads (also the trial workers' under tune.launcher=trainer).")
    gpus_per_worker: float = Field(0, ge=0, description="GPUs per Ray Train worker (0: CPU, gloo).")
    max_failures: int = Field(1, ge=0)
    hparams: dict[str, Any] = Field(default_factory=dict, description="The final training's values, under the "
                                    "tuned ones (best_params.yaml holds only what the sweep searched).")
    timeout_s: float = Field(1800, gt=0)


class RegisterParams(_Strict):
    must_beat_baselines: bool = Field(
        True, description="Refuse @champion to a model that one of the family's baselines (forecasts that need "
        "no training, e.g. seasonal naive) beats on the test metric; the version is still registered.")


class TaskParams(_Strict):
    prepare: dict[str, Any] = Field(default_factory=dict)
    tune: TuneParams
    train: TrainParams
    evaluate: dict[str, Any] = Field(default_factory=dict)
    # `register` is the params key; the attribute has another name because pydantic models already
    # have a `register` (abc's), which a field would shadow.
    registration: RegisterParams = Field(RegisterParams(), alias="register")


class Params(_Strict):
    seed: int = 42
    ray: RayParams = RayParams()
    mlflow: MlflowParams = MlflowParams()
    serve: ServeParams = ServeParams()
    paths: PathsParams = PathsParams()
    cluster: ClusterParams = ClusterParams()
    families: dict[str, dict[str, TaskParams]] = Field(default_factory=dict)

    @field_validator("families")
    @classmethod
    def _non_empty_tasks(cls, v: dict[str, dict[str, TaskParams]]) -> dict[str, dict[str, TaskParams]]:
        for family, tasks in v.items():
            if not tasks:
                raise ValueError(f"family {family!r} lists no tasks")
        return v

    def task(self, family: str, task: str) -> TaskParams:
        if family not in self.families:
            raise ConfigError(f"params: no section families.{family} (known: {sorted(self.families)})")
        tasks = self.families[family]
        if task not in tasks:
            raise ConfigError(f"params: no task families.{family}.{task} (known: {sorted(tasks)})")
        return tasks[task]


def validate_model(model: type[BaseModel], raw: dict[str, Any], label: str) -> BaseModel:
    """`model.model_validate(raw)`, with errors as one ConfigError naming each key:
    "<label>: <key>: <why>; ..." (e.g. "rl hparams: lr: Input should be greater than 0")."""
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        msgs = "; ".join(f"{'.'.join(map(str, x['loc'])) or '<root>'}: {x['msg']}" for x in e.errors())
        raise ConfigError(f"{label}: {msgs}") from None


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Profiles override params key by key; lists and scalars are replaced whole."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _format_validation_error(source: str, err: ValidationError) -> str:
    lines = [f"{source}: invalid parameters"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        lines.append(f"  - {key}: {e['msg']}")
    return "\n".join(lines)


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def profile_overrides(name: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    path = root / PROFILES_DIR / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / PROFILES_DIR).glob("*.yaml"))
        raise ConfigError(f"unknown profile {name!r}: no {path.relative_to(root)} (known: {known})")
    return read_yaml(path)


def profile_names(profile: str | None) -> list[str]:
    """"cluster,tiny" -> ["cluster", "tiny"]: profiles apply left to right (the last one wins)."""
    return [p.strip() for p in (profile or "").split(",") if p.strip()]


def raw_params(root: Path = REPO_ROOT, profile: str | None = None, params_file: str = PARAMS_FILE) -> dict[str, Any]:
    raw = read_yaml(root / params_file)
    for name in profile_names(profile):
        raw = deep_merge(raw, profile_overrides(name, root))
    return raw


def validate(raw: dict[str, Any], source: str = PARAMS_FILE) -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(source, e)) from None


def load(root: Path = REPO_ROOT, profile: str | None = None, params_file: str = PARAMS_FILE) -> Params:
    """params.yaml (+ profiles/<profile>.yaml), validated. Raises ConfigError naming the key."""
    source = params_file + "".join(f" + {PROFILES_DIR}/{p}.yaml" for p in profile_names(profile))
    return validate(raw_params(root, profile, params_file), source)


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: str) -> str:
    """`${QUARTET_SHARED_DIR}/ray_results` -> the variable's value + "/ray_results".

    Why: where a cluster's shared storage is mounted is a fact of the cluster (each node's
    environment, like a Kubernetes pod's env), not of the profile; an unset variable is an error
    that names it, never an empty string.
    """

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if not os.environ.get(name):
            raise ConfigError(f"{value!r} uses ${{{name}}}, which is not set in this environment "
                              "(on a cluster every node sets it; see infra/README.md)")
        return os.environ[name]

    return _ENV_REF.sub(sub, value)


def resolve(path: str | Path, root: Path = REPO_ROOT) -> Path:
    """Absolute path: relative ones are under the repo root (Ray changes the working directory);
    `${VAR}` references are expanded from the environment."""
    p = Path(expand_env(str(path))).expanduser()
    return p if p.is_absolute() else (root / p).resolve()


def tracking_uri(params: Params, root: Path = REPO_ROOT) -> str:
    """MLFLOW_TRACKING_URI wins; then params; then a sqlite file under mlruns/ (absolute path)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    if params.mlflow.tracking_uri:
        return params.mlflow.tracking_uri
    return f"sqlite:///{resolve('mlruns/mlflow.db', root)}"


def artifact_root(params: Params, root: Path = REPO_ROOT) -> str:
    return resolve(params.mlflow.artifact_root, root).as_uri()


class Layout(_Strict):
    """Where each stage of one (family, task) reads and writes: the contract between stages.

    Raw data lives under the repo (`root`); stage outputs under `out_root` (the repo by default).
    """

    root: Path
    family: str
    task: str
    out_root: Path

    @property
    def key(self) -> str:
        return f"{self.family}-{self.task}"

    @property
    def raw_dir(self) -> Path:
        return self.root / "data" / self.family

    @property
    def prepared_dir(self) -> Path:
        return self.out_root / "prepared" / self.family / self.task

    @property
    def best_params(self) -> Path:
        return self.out_root / "tuning" / self.family / self.task / "best_params.yaml"

    @property
    def model_dir(self) -> Path:
        return self.out_root / "models" / self.family / self.task

    @property
    def metrics_file(self) -> Path:
        return self.out_root / "metrics" / f"{self.key}.json"

    @property
    def plots_dir(self) -> Path:
        return self.out_root / "plots" / self.family / self.task

    @property
    def registry_file(self) -> Path:
        return self.out_root / "registry" / f"{self.key}.json"


def layout(family: str, task: str, root: Path = REPO_ROOT, params: Params | None = None) -> Layout:
    outputs = params.paths.outputs_root if params is not None else None
    return Layout(root=root, family=family, task=task, out_root=resolve(outputs, root) if outputs else root)
