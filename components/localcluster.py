"""A Ray cluster of separate hosts on this one machine: `make cluster-up` / `cluster-down`.

Why: a user tries a cluster before renting one, and our cluster code must have run across real
host boundaries (own addresses, own Ray temp dirs, traffic over a network) before anyone trusts
it. Each host is a Linux network namespace joined to a bridge by a veth pair; every namespace
still sees the same filesystem, which stands in for the shared storage (NFS/EFS/a RWX volume).

    head      PostgreSQL (runs, registry and MLflow's users) · `mlflow server` with that backend,
              proxied artifacts and basic auth · `ray start --head` with token auth
    worker-N  `ray start --address <head>:6379`, CPUs from params (cluster.hosts)
    shared    <state_dir>/shared: Ray storage_path, the DVC remote, MLflow's artifact root

Every host listens only on its own address on the private bridge; nothing is reachable from
outside this machine (the hosts have no route beyond the bridge). Secrets (Ray token, database
and MLflow passwords) are generated once into <state_dir>/secrets.json (mode 600) and given to
the host processes through their environment, as a Kubernetes Secret would be.

Every wait has a timeout; `down` stops every process of every namespace by pid and removes the
namespaces and the bridge, also after a half-failed `up`. Needs root and iproute2; PostgreSQL
from Debian's `postgresql` package.
"""

from __future__ import annotations

import glob
import ipaddress
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.config import REPO_ROOT, ConfigError, Params, resolve

log = logging.getLogger(__name__)

PG_PORT, MLFLOW_PORT, RAY_PORT, DASHBOARD_PORT, SERVE_PORT = 5432, 5000, 6379, 8265, 8000
OBJECT_STORE_BYTES = 128 * 1024**2
BIN = Path(sys.executable).parent  # the venv whose ray/mlflow every host runs (the "image")


class ClusterError(ConfigError):
    """Something the user can fix (not root, a missing package, a busy subnet): says what and how."""


# ----------------------------------------------------------------------------- the plan (pure)
@dataclass(frozen=True)
class Host:
    name: str
    ip: str
    cpus: int
    netns: str
    veth: str  # the bridge-side end; the namespace end is always eth0


@dataclass(frozen=True)
class Plan:
    """Everything `up`/`down`/`status` touch, derived from params alone."""

    name: str
    bridge: str
    bridge_ip: str
    prefixlen: int
    hosts: tuple[Host, ...]
    state_dir: Path
    run_dir: Path  # short paths: Ray's unix sockets must stay < 108 bytes; Postgres needs a dir it can own

    @property
    def head(self) -> Host:
        return next(h for h in self.hosts if h.name == "head")

    @property
    def workers(self) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.name != "head")

    @property
    def shared_dir(self) -> Path:
        return self.state_dir / "shared"

    @property
    def secrets_file(self) -> Path:
        return self.state_dir / "secrets.json"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.head.ip}:{MLFLOW_PORT}"

    @property
    def dashboard_url(self) -> str:
        return f"http://{self.head.ip}:{DASHBOARD_PORT}"

    @property
    def ray_address(self) -> str:
        return f"{self.head.ip}:{RAY_PORT}"

    @property
    def serve_url(self) -> str:
        return f"http://{self.head.ip}:{SERVE_PORT}"

    @property
    def dvc_remote(self) -> Path:
        return self.shared_dir / "dvc"

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ClusterError(f"no host {name!r} in cluster.hosts (hosts: {[h.name for h in self.hosts]})")


def plan(params: Params, root: Path = REPO_ROOT) -> Plan:
    c = params.cluster
    net = ipaddress.ip_network(c.subnet)
    addrs = list(net.hosts())
    state = resolve(c.state_dir, root)
    short = hashlib.md5(str(state).encode()).hexdigest()[:8]
    names = ["head"] + sorted(n for n in c.hosts if n != "head")
    hosts = tuple(
        Host(n, str(addrs[9 + i]), c.hosts[n].cpus, f"{c.name}-{n}", f"{c.name}v{i}") for i, n in enumerate(names)
    )
    return Plan(c.name, f"{c.name}br0", str(addrs[0]), net.prefixlen, hosts, state,
                Path("/tmp") / f"{c.name}-{short}")


# ----------------------------------------------------------------------------- small helpers
def _run(cmd: list[str], timeout: float = 30, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise ClusterError(f"`{' '.join(cmd)}` failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-800:]}")
    return proc


def _in(host: Host, cmd: list[str]) -> list[str]:
    return ["ip", "netns", "exec", host.netns, *cmd]


def wait_tcp(ip: str, port: int, timeout: float, what: str, logfile: Path | None = None) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((ip, port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    hint = f"; see {logfile}" if logfile else ""
    raise ClusterError(f"{what} did not listen on {ip}:{port} within {timeout:.0f} s{hint}")


def wait_http(url: str, timeout: float, what: str, logfile: Path | None = None, ok=(200,)) -> None:
    import requests

    end = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < end:
        try:
            r = requests.get(url, timeout=2)
            if r.status_code in ok:
                return
            last = r.status_code
        except requests.RequestException as e:
            last = type(e).__name__
        time.sleep(0.5)
    hint = f"; see {logfile}" if logfile else ""
    raise ClusterError(f"{what} not ready at {url} within {timeout:.0f} s (last: {last}){hint}")


def netns_list() -> set[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def netns_pids(netns: str) -> list[int]:
    out = _run(["ip", "netns", "pids", netns], check=False).stdout
    return [int(p) for p in out.split()]


def _proc_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def kill_pids(pids: list[int], timeout: float = 15) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL what is left."""
    alive = list(pids)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    end = time.monotonic() + timeout
    while alive and time.monotonic() < end:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and _state(p) != "Z"]
        time.sleep(0.2)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "X"


# ----------------------------------------------------------------------------- preflight
def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise ClusterError(f"{what} needs root (it creates and removes network namespaces, a bridge and veth "
                           f"pairs): run it as root, e.g. `sudo make {what}`")


def preflight(p: Plan) -> None:
    """Root, iproute2, PostgreSQL, and a subnet nobody else uses: each missing piece names its fix."""
    require_root("cluster-up")
    if not shutil.which("ip"):
        raise ClusterError("`ip` not found: install iproute2 (apt-get install iproute2)")
    pg_bin()
    for tool in ("runuser",):
        if not shutil.which(tool):
            raise ClusterError(f"`{tool}` not found: install util-linux (apt-get install util-linux)")
    net = ipaddress.ip_network(f"{p.bridge_ip}/{p.prefixlen}", strict=False)
    out = _run(["ip", "-o", "-4", "addr", "show"], check=False).stdout
    for line in out.splitlines():
        fields = line.split()
        iface, cidr = fields[1], fields[3]
        if iface != p.bridge and ipaddress.ip_interface(cidr).network.overlaps(net):
            raise ClusterError(f"subnet {net} is already used by {iface} ({cidr}): set cluster.subnet in params.yaml "
                               "to a free private /24")


def pg_bin() -> Path:
    """Debian's versioned PostgreSQL bin dir (initdb/postgres are not on PATH there)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda s: int(s.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ClusterError("PostgreSQL not found: install it (apt-get install postgresql)")


# ----------------------------------------------------------------------------- secrets + env
def load_secrets(p: Plan, create: bool = False) -> dict[str, str]:
    if p.secrets_file.is_file():
        return json.loads(p.secrets_file.read_text())
    if not create:
        raise ClusterError(f"no cluster secrets at {p.secrets_file}: run `make cluster-up` first")
    values = {"ray_token": secrets.token_hex(32), "pg_password": secrets.token_hex(16),
              "mlflow_user": "admin", "mlflow_password": secrets.token_hex(16),
              "flask_secret": secrets.token_hex(16), "serve_api_key": secrets.token_hex(24)}
    p.state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(p.secrets_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    return values


def client_env(p: Plan, sec: dict[str, str] | None = None) -> dict[str, str]:
    """What a client (a user's shell, `quartet submit`, a test) needs to talk to this cluster."""
    sec = sec or load_secrets(p)
    return {
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": sec["ray_token"],
        "RAY_ADDRESS": p.dashboard_url,
        "MLFLOW_TRACKING_URI": p.mlflow_url,
        "MLFLOW_TRACKING_USERNAME": sec["mlflow_user"],
        "MLFLOW_TRACKING_PASSWORD": sec["mlflow_password"],
        "QUARTET_API_KEY": sec["serve_api_key"],  # the served app beyond loopback (Authorization: Bearer)
    }


def node_env(p: Plan, sec: dict[str, str]) -> dict[str, str]:
    """The environment of every Ray process on every host (a pod's env on Kubernetes): the token,
    the MLflow server and its credentials, where the shared storage is mounted."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MLFLOW_", "QUARTET_"))}
    env.update(client_env(p, sec))
    env.pop("RAY_ADDRESS")
    env.update({
        "PATH": f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # a real multi-host cluster: advertise the host's address
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
        "RAY_DEDUP_LOGS": "0",
        "RAY_CHDIR_TO_TRIAL_DIR": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "QUARTET_SHARED_DIR": str(p.shared_dir),
        # every namespace shares one hostname (resolving to 127.0.x.1): tell gloo which interface
        # reaches the other hosts, as one does on any multi-homed machine
        "GLOO_SOCKET_IFNAME": "eth0",
        "PYTHONUNBUFFERED": "1",
    })
    return env


# ----------------------------------------------------------------------------- network
def _network_up(p: Plan) -> None:
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    if f": {p.bridge}:" not in links:
        _run(["ip", "link", "add", p.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{p.bridge_ip}/{p.prefixlen}", "dev", p.bridge])
    _run(["ip", "link", "set", p.bridge, "up"])
    existing = netns_list()
    for h in p.hosts:
        if h.netns in existing:
            continue
        _run(["ip", "netns", "add", h.netns])
        _run(["ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.netns])
        _run(["ip", "link", "set", h.veth, "master", p.bridge, "up"])
        _run(_in(h, ["ip", "addr", "add", f"{h.ip}/{p.prefixlen}", "dev", "eth0"]))
        _run(_in(h, ["ip", "link", "set", "eth0", "up"]))
        _run(_in(h, ["ip", "link", "set", "lo", "up"]))


def _spawn(h: Host, cmd: list[str], log_name: str, env: dict[str, str], p: Plan) -> subprocess.Popen:
    """A long-running process inside host `h`, in its own session, logged to logs/<log_name>.log."""
    p.logs_dir.mkdir(parents=True, exist_ok=True)
    out = open(p.logs_dir / f"{log_name}.log", "ab")
    return subprocess.Popen(_in(h, cmd), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                            cwd=p.state_dir)


# ----------------------------------------------------------------------------- head services
def _postgres_up(p: Plan, sec: dict[str, str], timeout: float) -> None:
    h, pgb = p.head, pg_bin()
    data, sock = p.run_dir / "pg" / "data", p.run_dir / "pg" / "sock"
    if _pg_ready(p):
        return
    env = {"PATH": f"{pgb}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if not (data / "PG_VERSION").is_file():
        shutil.rmtree(data, ignore_errors=True)
        sock.mkdir(parents=True, exist_ok=True)
        data.mkdir(parents=True, exist_ok=True)
        for d in (p.run_dir / "pg", data, sock):
            shutil.chown(d, "postgres", "postgres")
        data.chmod(0o700)
        # initdb refuses root: the server runs as Debian's `postgres` user. trust on the local
        # socket only (cluster-up talks to it as the superuser); network clients need a password.
        _run(["runuser", "-u", "postgres", "--", str(pgb / "initdb"), "-D", str(data), "-A", "trust", "-U",
              "postgres", "-E", "UTF8"], timeout=120, env=env)
        with open(data / "pg_hba.conf", "a") as f:
            f.write(f"host all all {p.bridge_ip}/{p.prefixlen} scram-sha-256\n")
    cmd = ["runuser", "-u", "postgres", "--", str(pgb / "postgres"), "-D", str(data), "-p", str(PG_PORT),
           "-c", f"listen_addresses={h.ip}", "-c", f"unix_socket_directories={sock}", "-c", "max_connections=200"]
    _spawn(h, cmd, "head-postgres", env, p)
    wait_tcp(h.ip, PG_PORT, timeout, "PostgreSQL", p.logs_dir / "head-postgres.log")
    psql = [str(pgb / "psql"), "-h", str(sock), "-p", str(PG_PORT), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-qAt"]
    roles = _run(psql + ["-c", "SELECT rolname FROM pg_roles WHERE rolname='mlflow'"], env=env).stdout
    if "mlflow" not in roles:
        _run(psql + ["-c", f"CREATE ROLE mlflow LOGIN PASSWORD '{sec['pg_password']}'"], env=env)
    dbs = _run(psql + ["-c", "SELECT datname FROM pg_database"], env=env).stdout.split()
    for db in ("mlflow", "mlflow_auth"):
        if db not in dbs:
            _run(psql + ["-c", f"CREATE DATABASE {db} OWNER mlflow"], env=env)


def _pg_ready(p: Plan) -> bool:
    try:
        with socket.create_connection((p.head.ip, PG_PORT), timeout=1):
            return True
    except OSError:
        return False


def pg_uri(p: Plan, sec: dict[str, str], db: str = "mlflow") -> str:
    return f"postgresql+psycopg2://mlflow:{sec['pg_password']}@{p.head.ip}:{PG_PORT}/{db}"


def _mlflow_up(p: Plan, sec: dict[str, str], timeout: float) -> None:
    h = p.head
    if _http_ok(p.mlflow_url + "/health"):
        return
    artifacts = p.shared_dir / "mlartifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    auth_ini = p.state_dir / "mlflow-auth.ini"
    fd = os.open(auth_ini, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("[mlflow]\ndefault_permission = READ\n"
                f"database_uri = {pg_uri(p, sec, 'mlflow_auth')}\n"
                f"admin_username = {sec['mlflow_user']}\nadmin_password = {sec['mlflow_password']}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                # A password check is a deliberately slow hash (~0.3 s here); Tune logs each metric
                # as its own request, so without MLflow's own cache of good credentials a sweep
                # spends seconds per epoch on authentication.
                "auth_cache_ttl_seconds = 300\nauth_cache_max_size = 1000\n")
    env = node_env(p, sec) | {
        # the store URI (with its password) through the environment, not the command line
        "MLFLOW_BACKEND_STORE_URI": pg_uri(p, sec),
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": sec["flask_secret"],
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    cmd = [str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--host", h.ip, "--port", str(MLFLOW_PORT),
           "--workers", "1", "--serve-artifacts", "--artifacts-destination", str(artifacts)]
    _spawn(h, cmd, "head-mlflow", env, p)
    wait_http(p.mlflow_url + "/health", timeout, "mlflow server", p.logs_dir / "head-mlflow.log")


def _http_ok(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


# ----------------------------------------------------------------------------- Ray nodes
def raylet_pids(h: Host) -> list[int]:
    return [pid for pid in netns_pids(h.netns) if _proc_name(pid) == "raylet"]


def _ray_start(p: Plan, h: Host, sec: dict[str, str], timeout: float) -> None:
    if raylet_pids(h):
        return
    leftovers = netns_pids(h.netns)  # a host whose raylet died: clear it before it rejoins
    if h.name == "head":
        leftovers = [pid for pid in leftovers if "postgres" not in _cmdline(pid) and "mlflow" not in _cmdline(pid)
                     and _proc_name(pid) not in ("postgres", "gunicorn", "uvicorn")]
    kill_pids(leftovers)
    tmp = p.run_dir / f"ray-{h.name}"
    common = ["--node-ip-address", h.ip, "--num-cpus", str(h.cpus), "--num-gpus", "0", "--temp-dir", str(tmp),
              "--object-store-memory", str(OBJECT_STORE_BYTES), "--disable-usage-stats"]
    if h.name == "head":
        # Tune trials that only drive a TorchTrainer run on the head (components.tune.driver_resources)
        cmd = [str(BIN / "ray"), "start", "--head", "--port", str(RAY_PORT), "--dashboard-host", h.ip,
               "--dashboard-port", str(DASHBOARD_PORT), "--resources", json.dumps({"quartet_driver": 1000}), *common]
    else:
        cmd = [str(BIN / "ray"), "start", "--address", p.ray_address, *common]
    logfile = p.logs_dir / f"{h.name}-ray-start.log"
    p.logs_dir.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as out:
        proc = subprocess.run(_in(h, cmd), stdout=out, stderr=subprocess.STDOUT, env=node_env(p, sec),
                              timeout=timeout, cwd=p.state_dir)
    if proc.returncode != 0:
        raise ClusterError(f"`ray start` on {h.name} failed ({proc.returncode}); see {logfile}")


def state_api(p: Plan, what: str, sec: dict[str, str] | None = None, timeout: float = 10,
              **filters: str) -> list[dict[str, Any]]:
    """Ray's state API on the head (`nodes`, `actors`, ...), authenticated with the cluster token."""
    import requests

    sec = sec or load_secrets(p)
    query: dict[str, Any] = {"limit": 1000, "detail": "true"}
    if filters:
        query |= {"filter_keys": list(filters), "filter_predicates": ["="] * len(filters),
                  "filter_values": list(filters.values())}
    r = requests.get(f"{p.dashboard_url}/api/v0/{what}", params=query,
                     headers={"Authorization": f"Bearer {sec['ray_token']}"}, timeout=timeout)
    r.raise_for_status()
    return r.json()["data"]["result"]["result"]


def alive_nodes(p: Plan, sec: dict[str, str] | None = None, timeout: float = 10) -> list[dict[str, Any]]:
    """The cluster's alive nodes (dead ones stay listed in Ray's state API)."""
    return [n for n in state_api(p, "nodes", sec, timeout) if n.get("state") == "ALIVE"]


def _wait_nodes(p: Plan, sec: dict[str, str], timeout: float) -> list[dict[str, Any]]:
    end = time.monotonic() + timeout
    want = {h.ip for h in p.hosts}
    seen: set[str] = set()
    while time.monotonic() < end:
        try:
            nodes = alive_nodes(p, sec)
            seen = {n["node_ip"] for n in nodes}
            if want <= seen:
                return nodes
        except Exception:  # dashboard still starting
            pass
        time.sleep(1)
    raise ClusterError(f"nodes {sorted(want - seen)} did not join {p.ray_address} within {timeout:.0f} s; "
                       f"see {p.logs_dir}")


# ----------------------------------------------------------------------------- up / down / status
def up(params: Params, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Bring up (or repair) the cluster; a no-op for what is already running. Idempotent: a host
    whose raylet died is cleared and rejoined. On failure, everything started is torn down."""
    p = plan(params, root)
    timeout = params.cluster.ready_timeout_s
    preflight(p)
    started_fresh = not any(h.netns in netns_list() for h in p.hosts)
    t0 = time.perf_counter()
    try:
        if not p.secrets_file.is_file() and (p.run_dir / "pg").exists():
            log.warning("no secrets for the existing database in %s: starting a new one", p.run_dir / "pg")
            shutil.rmtree(p.run_dir / "pg")
        sec = load_secrets(p, create=True)
        for d in (p.shared_dir / "ray_results", p.dvc_remote, p.run_dir):
            d.mkdir(parents=True, exist_ok=True)
        p.run_dir.chmod(0o755)
        _network_up(p)
        _postgres_up(p, sec, timeout)
        _mlflow_up(p, sec, timeout)
        _ray_start(p, p.head, sec, timeout)
        wait_http(p.dashboard_url + "/api/version", timeout, "Ray dashboard", p.logs_dir / "head-ray-start.log",
                  ok=(200, 401))
        for h in p.workers:
            _ray_start(p, h, sec, timeout)
        _wait_nodes(p, sec, timeout)
    except BaseException:
        if started_fresh:
            log.error("cluster-up failed: tearing down what it started")
            down(params, root)
        raise
    out = status(params, root)
    out["up_s"] = round(time.perf_counter() - t0, 1)
    return out


def down(params: Params, root: Path = REPO_ROOT) -> list[str]:
    """Stop every process in every host namespace (by pid), remove the namespaces, veths and the
    bridge. Idempotent; keeps the state dir (secrets, logs, shared storage, Postgres data)."""
    p = plan(params, root)
    require_root("cluster-down")
    removed = []
    existing = netns_list()
    pids = {h.name: netns_pids(h.netns) for h in p.hosts if h.netns in existing}
    # Clients first (Ray, MLflow), all hosts at once, so that PostgreSQL then stops fast and clean.
    kill_pids([pid for ps in pids.values() for pid in ps if _proc_name(pid) != "postgres"], timeout=10)
    pg_data = p.run_dir / "pg" / "data"
    if p.head.netns in existing and (pg_data / "postmaster.pid").is_file():
        _run(["runuser", "-u", "postgres", "--", str(pg_bin() / "pg_ctl"), "-D", str(pg_data), "-m", "fast",
              "-w", "-t", "20", "stop"], check=False, timeout=40)
    for h in p.hosts:
        if h.netns not in existing:
            continue
        kill_pids(netns_pids(h.netns), timeout=5)
        _run(["ip", "netns", "del", h.netns], check=False)
        removed.append(f"{h.netns} ({len(pids[h.name])} processes)")
    links = _run(["ip", "-o", "link", "show"], check=False).stdout
    for h in p.hosts:
        if f": {h.veth}@" in links or f": {h.veth}:" in links:
            _run(["ip", "link", "del", h.veth], check=False)
    if f": {p.bridge}:" in links:
        _run(["ip", "link", "del", p.bridge], check=False)
        removed.append(p.bridge)
    # Ray's per-host temp dirs (sockets, session logs) die with the hosts; Postgres data stays.
    for h in p.hosts:
        shutil.rmtree(p.run_dir / f"ray-{h.name}", ignore_errors=True)
    return removed


def status(params: Params, root: Path = REPO_ROOT) -> dict[str, Any]:
    """Hosts, their Ray nodes and resources, and the URLs to use; `running` is False when down."""
    p = plan(params, root)
    existing = netns_list() if shutil.which("ip") else set()
    out: dict[str, Any] = {
        "running": p.head.netns in existing,
        "mlflow": p.mlflow_url, "dashboard": p.dashboard_url, "ray_address": p.ray_address,
        "serve": p.serve_url, "shared_dir": str(p.shared_dir), "dvc_remote": str(p.dvc_remote),
        "secrets": str(p.secrets_file), "hosts": [],
    }
    nodes: dict[str, dict[str, Any]] = {}
    if out["running"] and p.secrets_file.is_file():
        try:
            nodes = {n["node_ip"]: n for n in alive_nodes(p)}
        except Exception as e:  # report, do not fail: status is what one runs when something is wrong
            out["error"] = f"Ray dashboard not answering: {type(e).__name__}"
    for h in p.hosts:
        node = nodes.get(h.ip)
        out["hosts"].append({
            "name": h.name, "ip": h.ip, "netns": h.netns in existing,
            "ray": "alive" if node else "down",
            "resources": {k: v for k, v in (node or {}).get("resources_total", {}).items()
                          if k in ("CPU", "GPU", "memory", "object_store_memory")},
        })
    out["mlflow_ok"] = out["running"] and _http_ok(p.mlflow_url + "/health")
    return out


def format_status(s: dict[str, Any]) -> str:
    lines = [f"cluster: {'up' if s['running'] else 'down'}"]
    for h in s["hosts"]:
        res = ", ".join(f"{k}={v:g}" if k in ("CPU", "GPU") else f"{k}={v / 2**20:.0f}MiB"
                        for k, v in sorted(h["resources"].items()))
        lines.append(f"  {h['name']:<10} {h['ip']:<15} ray {h['ray']:<5} {res}")
    lines += [f"  MLflow     {s['mlflow']}  ({'ok' if s.get('mlflow_ok') else 'not answering'}; user/password in {s['secrets']})",
              f"  dashboard  {s['dashboard']}  (jobs: quartet submit ... --address {s['dashboard']})",
              f"  Ray        {s['ray_address']}   Serve {s['serve']}",
              f"  shared     {s['shared_dir']}  (DVC remote {s['dvc_remote']})"]
    if s.get("error"):
        lines.append(f"  error: {s['error']}")
    return "\n".join(lines)


def stop_host(params: Params, name: str, root: Path = REPO_ROOT) -> int:
    """Kill every process of one host (its raylet first, as a machine failure would): returns how many."""
    p = plan(params, root)
    h = p.host(name)
    for pid in raylet_pids(h):
        os.kill(pid, signal.SIGKILL)
    pids = netns_pids(h.netns)
    kill_pids(pids, timeout=5)
    return len(pids)
