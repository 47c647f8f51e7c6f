"""infra/ checked against the code: pure text/YAML checks, no network, no docker, no cluster.

Why: nothing else runs these files before a user does (`ray up`, `kubectl apply`, `docker
build`), so a renamed command, a profile that asks for GPUs, an image tag that differs between
two files or a token pasted into a manifest would only show on someone's cloud bill. Each check
is a helper that returns a list of problems (empty: fine), so the tests at the bottom can also
prove that every check fails on a broken copy.
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import importlib
import json
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from components import config

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
DOCKERFILE = INFRA / "docker" / "Dockerfile"
DOCKERIGNORE = INFRA / "docker" / "Dockerfile.dockerignore"
LAUNCHER = INFRA / "ray" / "cluster.yaml"
SERVE_CONFIG = INFRA / "serve" / "serve_config.yaml"
K8S_RAY = {name: INFRA / "k8s" / name for name in ("raycluster.yaml", "rayjob-tune.yaml", "rayservice.yaml")}
SHARED_STORAGE = INFRA / "k8s" / "shared-storage.yaml"
SHARED_DIR = "/mnt/shared/quartet"  # QUARTET_SHARED_DIR on every node (profiles/cluster.yaml uses it)
SECRET_NAME = "quartet-secrets"
LOOPBACK = ("127.0.0.1", "localhost", "::1")  # as quartet.cli.serve_app decides "beyond loopback"


# ----------------------------------------------------------------------------- reading the files
def infra_files() -> list[Path]:
    return sorted(p for p in INFRA.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def pyproject() -> dict[str, Any]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pin(package: str) -> str:
    """The exact version pyproject.toml pins for `package` (extras ignored)."""
    for dep in pyproject()["project"]["dependencies"]:
        m = re.fullmatch(rf"{re.escape(package)}(\[[^\]]*\])?==(\S+)", dep, re.IGNORECASE)
        if m:
            return m.group(2)
    raise AssertionError(f"pyproject.toml pins no {package}")


def cluster_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The RayCluster spec inside a KubeRay resource (RayCluster, RayJob, RayService)."""
    spec = doc.get("spec", {})
    return {"RayCluster": spec, "RayJob": spec.get("rayClusterSpec"),
            "RayService": spec.get("rayClusterConfig")}.get(doc.get("kind"))


def groups(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """("head", headGroupSpec) then (groupName, workerGroupSpec) for each worker group."""
    return [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec.get("workerGroupSpecs", [])]


def containers(group: dict[str, Any]) -> list[dict[str, Any]]:
    return group["template"]["spec"]["containers"]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def quantity(value: Any) -> float:
    """A Kubernetes CPU quantity: 2, "4", "500m"."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def gpus(container: dict[str, Any]) -> float:
    res = container.get("resources", {})
    return max(float(res.get(k, {}).get("nvidia.com/gpu", 0)) for k in ("requests", "limits"))


def head_resources(start_params: dict[str, Any]) -> dict[str, float]:
    """KubeRay's rayStartParams.resources: a JSON object quoted for the shell, '"{\\"a\\": 1}"'."""
    raw = start_params.get("resources")
    if not raw:
        return {}
    return json.loads(str(raw).strip().strip("'\"").replace('\\"', '"'))


def serve_config_v2(doc: dict[str, Any]) -> dict[str, Any]:
    return yaml.safe_load(doc["spec"]["serveConfigV2"])


def text_snippets(path: Path, text: str | None = None) -> list[str]:
    """The parts of a file that are commands or code, not prose: fenced blocks and `spans` of
    Markdown; in other files every non-comment line, the comment lines written as indented
    commands ("#   quartet submit ...") and `spans` inside comments."""
    text = path.read_text() if text is None else text
    spans = re.findall(r"`([^`\n]+)`", text)
    if path.suffix == ".md":
        blocks = re.findall(r"```[^\n]*\n(.*?)```", text, re.DOTALL)
        return spans + [line for b in blocks for line in b.splitlines()]
    out = list(spans)
    for line in text.splitlines():
        code, _, comment = line.partition("#") if line.lstrip().startswith("#") else (line, "", "")
        out.append(code)
        if comment.startswith("  "):
            out.append(comment.strip())
    return out


# ----------------------------------------------------------------------------- commands, paths, profiles
COMMAND = re.compile(r"(?:^|[\s`(;&|]|\$\(|/)(?:quartet|python -m quartet\.cli)\s+([\w][\w-]*(?:\s+[^\s&;|`)\"']+)*)")


def cli_tree() -> Any:
    """The typer app as a command tree (typer 0.29 vendors click: groups are the commands that
    have `.commands`, so the walk below duck-types rather than importing click's classes)."""
    import quartet.cli

    return typer.main.get_command(quartet.cli.app)


def is_group(cmd: Any) -> bool:
    return isinstance(getattr(cmd, "commands", None), dict)


def command_problems(snippets: list[str]) -> list[str]:
    """Every `quartet X [Y]` / `python -m quartet.cli X` names a command of the typer app (a
    subcommand for groups), and its FAMILY / TASK arguments, when spelled out, exist."""
    import families

    root, fams, problems = cli_tree(), families.families(), []
    for snippet in snippets:
        for m in COMMAND.finditer(snippet):
            words = m.group(1).split()
            cmd, path = root, []
            while is_group(cmd) and words and re.fullmatch(r"[a-z][\w-]*", words[0]):
                name = words.pop(0)
                path.append(name)
                if name not in cmd.commands:
                    problems.append(f"{' '.join(path)!r}: no such quartet command (in {snippet.strip()!r})")
                    cmd = None
                    break
                cmd = cmd.commands[name]
            if cmd is None or is_group(cmd):
                continue
            args = [p.name for p in cmd.params if p.param_type_name == "argument"]
            values = dict(zip(args, [w for w in words if not w.startswith("-")][: len(args)]))
            family, task = values.get("family"), values.get("task")
            if family and re.fullmatch(r"[a-z][\w-]*", family):
                if family not in fams:
                    problems.append(f"{' '.join(path)} {family}: no such family (known: {sorted(fams)})")
                elif task and re.fullmatch(r"[a-z][\w.-]*", task) and task not in fams[family].all_tasks:
                    problems.append(f"{' '.join(path)} {family} {task}: no such task (known: {fams[family].all_tasks})")
    return problems


def import_path_problems(text: str) -> list[str]:
    """Every `package.module:attribute` of ours (a Serve import_path, an entry point) imports."""
    problems = []
    for module, attr in re.findall(r"\b((?:families|quartet|components)(?:\.\w+)*):([A-Za-z_]\w*)", text):
        try:
            if not hasattr(importlib.import_module(module), attr):
                problems.append(f"{module}:{attr}: the module has no attribute {attr!r}")
        except ImportError as e:
            problems.append(f"{module}:{attr}: {e}")
    return problems


def profiles_named(text: str) -> set[str]:
    """Profile names a file applies: --profile X, QUARTET_PROFILE=X / value: X, serve args profile."""
    found = set(re.findall(r"--profile[ =]([\w,-]+)", text))
    found |= set(re.findall(r"QUARTET_PROFILE[=:]\s*([\w,-]+)", text))
    found |= set(re.findall(r"name: QUARTET_PROFILE, value: ([\w,-]+)", text))
    found |= set(re.findall(r"^\s*profile: ([\w,-]+)", text, re.MULTILINE))
    return {f for f in found if f not in ("null", "None")}


def profile_problems(text: str) -> list[str]:
    known = {p.stem for p in (REPO / "profiles").glob("*.yaml")}
    problems = []
    for value in sorted(profiles_named(text)):
        for name in config.profile_names(value):
            if name not in known:
                problems.append(f"profile {name!r} (in {value!r}) is not in profiles/ (known: {sorted(known)})")
    return problems


PARAMS_KEY = re.compile(r"`(ray|paths|mlflow|serve|cluster)\.([a-z_]+)`|\b(ray|paths|mlflow|serve|cluster)\.([a-z]+_[a-z_]+)\b")


def params_key_problems(text: str) -> list[str]:
    """Every params key the docs/comments name (`serve.replica_cpus`, paths.outputs_root, ...)
    is a field of components.config.Params."""
    problems = []
    for m in PARAMS_KEY.finditer(text):
        section, key = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
        model = config.Params.model_fields[section].annotation
        if key not in model.model_fields:
            problems.append(f"{section}.{key}: not a params key (known: {sorted(model.model_fields)})")
    return problems


# ----------------------------------------------------------------------------- image, GPUs, CPUs
IMAGE = re.compile(r"([\w.-]+(?:/[\w.-]+)*/quartet):([\w.-]*\w)")


def image_refs(text: str) -> list[tuple[str, str]]:
    return IMAGE.findall(text)


def allowed_tags() -> dict[str, str]:
    version = pyproject()["project"]["version"]
    return {"cpu": f"{version}-cpu", "gpu": f"{version}-gpu"}


def image_tag_problems(text: str, where: str) -> list[str]:
    tags = allowed_tags()
    return [f"{where}: image {repo}:{tag}, expected REGISTRY/quartet:{tags['cpu']} (or {tags['gpu']})"
            for repo, tag in image_refs(text) if repo != "REGISTRY/quartet" or tag not in tags.values()]


def k8s_gpu_problems(spec: dict[str, Any], where: str) -> list[str]:
    """A GPU image only where GPUs are requested, and GPUs only in a worker group with that image."""
    problems = []
    for name, group in groups(spec):
        for c in containers(group):
            wants, gpu_image = gpus(c) > 0, c["image"].endswith("-gpu")
            if name == "head" and wants:
                problems.append(f"{where}: the head requests GPUs")
            if wants != gpu_image:
                problems.append(f"{where}: group {name}: image {c['image']} with {gpus(c):g} GPUs requested")
    return problems


def launcher_gpu_problems(cfg: dict[str, Any]) -> list[str]:
    problems = []
    default = cfg["docker"]["image"]
    if default.endswith("-gpu"):
        problems.append(f"cluster.yaml: the default image {default} is the GPU variant")
    for name, node in cfg["available_node_types"].items():
        image = node.get("docker", {}).get("worker_image", default)
        declares = float(node.get("resources", {}).get("GPU", 0)) > 0
        if image.endswith("-gpu") != declares:
            problems.append(f"cluster.yaml: node type {name}: image {image} with resources {node.get('resources')}")
    return problems


def asks_for_gpus(params: config.Params) -> bool:
    return any(t.tune.gpus_per_trial or t.train.gpus_per_worker for ts in params.families.values() for t in ts.values())


def has_gpu_group(path: Path) -> bool:
    if path == LAUNCHER:
        nodes = yaml.safe_load(path.read_text())["available_node_types"].values()
        return any(float(n.get("resources", {}).get("GPU", 0)) > 0 for n in nodes)
    return any(gpus(c) > 0 for d in load_all(path) for _, g in groups(cluster_spec(d)) for c in containers(g))


def profile_gpu_problems(text: str, gpu_group: bool, where: str) -> list[str]:
    """A profile the file applies may ask for GPUs only if the file has a GPU worker group."""
    return [f"{where}: profile {value} asks for GPUs, and no worker group has any"
            for value in sorted(profiles_named(text)) if asks_for_gpus(config.load(REPO, value)) and not gpu_group]


def task_sizes(params: config.Params) -> list[tuple[str, float, float]]:
    """(what, CPUs of its largest single process, CPUs all its workers need at once) per task."""
    out = []
    for family, tasks in params.families.items():
        for task, tp in tasks.items():
            t, tr = tp.tune, tp.train
            if t.launcher == "trainer":
                out.append((f"{family}/{task} tune trial", tr.cpus_per_worker, t.num_workers_per_trial * tr.cpus_per_worker))
            else:
                out.append((f"{family}/{task} tune trial", t.cpus_per_trial, t.cpus_per_trial))
            out.append((f"{family}/{task} train", tr.cpus_per_worker, tr.num_workers * tr.cpus_per_worker))
    return out


def cpu_fit_problems(spec: dict[str, Any], params: config.Params, where: str) -> list[str]:
    """Every trial and Train run of the profile fits one CPU worker group (pods x CPUs each)."""
    cpu_groups = [(name, g) for name, g in groups(spec)[1:] if not any(gpus(c) for c in containers(g))]
    if not cpu_groups:
        return [f"{where}: no CPU worker group"]
    fits = {name: (quantity(containers(g)[0]["resources"]["limits"]["cpu"]),
                   quantity(containers(g)[0]["resources"]["limits"]["cpu"]) * g.get("maxReplicas", g["replicas"]))
            for name, g in cpu_groups}
    problems = []
    for what, one, total in task_sizes(params):
        if not any(one <= pod and total <= all_pods for pod, all_pods in fits.values()):
            problems.append(f"{where}: {what} needs {total:g} CPUs ({one:g} per process); groups offer {fits}")
    return problems


def serve_replicas(cfg: dict[str, Any]) -> list[tuple[str, float, Any]]:
    """(deployment, CPUs per replica, replicas) of every app of a Serve config: the options
    quartet.cli.serve_app builds from the app's args (params.yaml `serve:` of its profile),
    overridden by the config's entry for that deployment, as Serve applies them (an entry's
    ray_actor_options replace the code's whole; a replica without num_cpus takes 1)."""
    out = []
    for app in cfg["applications"]:
        built = built_deployment(app.get("args") or {})
        entry = next((d for d in app.get("deployments", []) if d["name"] == built.name), {})
        actor = entry.get("ray_actor_options", built.ray_actor_options or {})
        out.append((built.name, float(actor.get("num_cpus", 1)),
                    entry.get("num_replicas", built._deployment_config.num_replicas)))
    return out


def serve_fit_problems(doc: dict[str, Any]) -> list[str]:
    """The replicas of the RayService's Serve config fit the CPUs of its pods."""
    spec = cluster_spec(doc)
    offered = float(spec["headGroupSpec"]["rayStartParams"].get("num-cpus", 0))
    pod_cpus = []
    for _, g in groups(spec)[1:]:
        cpu = quantity(containers(g)[0]["resources"]["limits"]["cpu"])
        pod_cpus.append(cpu)
        offered += cpu * g["replicas"]
    needed, problems = 0.0, []
    for name, each, replicas in serve_replicas(serve_config_v2(doc)):
        if not isinstance(replicas, int):
            problems.append(f"deployment {name}: num_replicas {replicas!r}: this check counts a fixed number only")
            continue
        needed += each * replicas
        if each > max(pod_cpus):
            problems.append(f"deployment {name}: {each:g} CPUs per replica, pods have {max(pod_cpus):g}")
    if needed > offered:
        problems.append(f"Serve replicas need {needed:g} CPUs, the RayService offers {offered:g}")
    return problems


# ----------------------------------------------------------------------------- serve apps vs the code
SERVE_IMPORT_PATH = "quartet.cli:serve_app"
SERVE_ARGS = {"profile", "host", "family"}  # what quartet.cli.serve_app reads
SERVE_KEY_ENV = ("QUARTET_API_KEY", "QUARTET_API_KEY_FILE")  # components.serve.api_key_from_env


def serve_configs() -> list[tuple[str, dict[str, Any]]]:
    return [("serve_config.yaml", yaml.safe_load(SERVE_CONFIG.read_text())),
            ("rayservice.yaml", serve_config_v2(load_all(K8S_RAY["rayservice.yaml"])[0]))]


@functools.cache
def _built_deployment(profile: str | None, family: str | None) -> Any:
    import quartet.cli

    # On loopback, so building needs no API key: the host changes no name and no option.
    return quartet.cli.serve_app({"profile": profile, "host": "127.0.0.1", "family": family})._bound_deployment


def built_deployment(args: dict[str, Any]) -> Any:
    """The (ingress) deployment quartet.cli.serve_app builds from a Serve config's args."""
    return _built_deployment(args.get("profile"), args.get("family"))


@functools.cache
def code_apps() -> dict[str, dict[str, Any]]:
    """The apps `quartet serve` runs (components.serve.applications()): name -> route prefix,
    the `family` arg serve_app builds it from (None: the gateway), its deployment's name."""
    import families
    import quartet.cli
    from components.serve import GATEWAY_APP, applications, family_app_name

    family_of = {GATEWAY_APP: None} | {family_app_name(f): f for f in families.families()}
    settings = quartet.cli.serve_settings(config.load(REPO), "127.0.0.1")
    return {name: {"route_prefix": prefix, "family": family_of.get(name, "?"), "deployment": app._bound_deployment.name}
            for name, prefix, app in applications(quartet.cli.serve_specs(), settings)}


def serve_app_problems(cfg: dict[str, Any], where: str) -> list[str]:
    """A Serve config's applications are the ones the code builds: the same names (the gateway
    asks each family app by name), route prefixes, import path, the args serve_app reads with
    the family the app is named after, and an entry for the one deployment each app builds
    (Serve refuses an entry for a deployment the app lacks, only at deploy time)."""
    want, problems = code_apps(), []
    apps = {a["name"]: a for a in cfg["applications"]}
    problems += [f"{where}: no application {n!r} (the code builds {sorted(want)})"
                 for n in sorted(set(want) - set(apps))]
    problems += [f"{where}: application {n!r} is not one the code builds ({sorted(want)})"
                 for n in sorted(set(apps) - set(want))]
    for name in sorted(set(apps) & set(want)):
        app, w = apps[name], want[name]
        args = app.get("args") or {}
        if app.get("route_prefix") != w["route_prefix"]:
            problems.append(f"{where}: {name}: route_prefix {app.get('route_prefix')!r}, "
                            f"the code uses {w['route_prefix']!r}")
        if app.get("import_path") != SERVE_IMPORT_PATH:
            problems.append(f"{where}: {name}: import_path {app.get('import_path')!r}, expected {SERVE_IMPORT_PATH}")
        if set(args) - SERVE_ARGS:
            problems.append(f"{where}: {name}: args {sorted(set(args) - SERVE_ARGS)} are not read by serve_app")
        if args.get("family") != w["family"]:
            problems.append(f"{where}: {name}: args.family is {args.get('family')!r}, "
                            f"the app is built from {w['family']!r}")
        listed = [d["name"] for d in app.get("deployments", [])]
        if listed != [w["deployment"]]:
            problems.append(f"{where}: {name}: deployments {listed}, the app builds one: {w['deployment']!r}")
    return problems


def serve_batch_problems(cfg: dict[str, Any], where: str) -> list[str]:
    """A family replica that holds fewer requests than serve.max_batch_size never fills a batch
    (params.yaml refuses that; an override in a Serve config would slip past it)."""
    problems = []
    for app in cfg["applications"]:
        args = app.get("args") or {}
        if args.get("family") is None:
            continue  # the gateway does not batch
        built = built_deployment(args)
        entry = next((d for d in app.get("deployments", []) if d["name"] == built.name), {})
        ongoing = entry.get("max_ongoing_requests", built._deployment_config.max_ongoing_requests)
        batch = config.load(REPO, args.get("profile")).serve.max_batch_size
        if ongoing < batch:
            problems.append(f"{where}: {built.name}: max_ongoing_requests {ongoing} < serve.max_batch_size {batch}")
    return problems


def serve_key_problems(cfg: dict[str, Any], node_env: dict[str, Any], mounts: list[str], where: str) -> list[str]:
    """Beyond loopback every app (the gateway and each family) refuses to start without an API
    key: each must find QUARTET_API_KEY or QUARTET_API_KEY_FILE in its runtime_env or on every
    node, and a key file must lie under a path the nodes have (`mounts`)."""
    problems = []
    for app in cfg["applications"]:
        env = {**node_env, **(app.get("runtime_env") or {}).get("env_vars", {})}
        if not any(k in env for k in SERVE_KEY_ENV):
            problems.append(f"{where}: {app['name']}: neither its runtime_env nor the nodes set "
                            f"{' or '.join(SERVE_KEY_ENV)}")
        key_file = env.get("QUARTET_API_KEY_FILE")
        if "QUARTET_API_KEY" not in env and key_file and not any(covers(m, key_file) for m in mounts):
            problems.append(f"{where}: {app['name']}: the key file {key_file} is under none of {mounts}")
    return problems


def launcher_env(cfg: dict[str, Any]) -> dict[str, str]:
    """The environment the cluster launcher's docker run_options set on every node."""
    return dict(re.findall(r"(?:--env[= ]|-e )(\w+)=(\S+)", " ".join(cfg["docker"]["run_options"])))


# ----------------------------------------------------------------------------- serve, auth, shared dir
def serve_config_problems(cfg: dict[str, Any], where: str) -> list[str]:
    """Multi-node Serve: proxies on a non-loopback host, every app told so (args.host), and no
    API key value in the config itself (only a file path; the key is read where each app's
    replicas run)."""
    problems = []
    host = cfg.get("http_options", {}).get("host")
    if host is None or host in LOOPBACK:
        problems.append(f"{where}: http_options.host is {host!r}: other nodes / the Service cannot reach it")
    for app in cfg["applications"]:
        arg = (app.get("args") or {}).get("host")
        if arg is None or arg in LOOPBACK:
            problems.append(f"{where}: app {app['name']} args.host is {arg!r}: the app would not require an API key")
        if "QUARTET_API_KEY" in app.get("runtime_env", {}).get("env_vars", {}):
            problems.append(f"{where}: app {app['name']} carries the API key itself; use QUARTET_API_KEY_FILE or node env")
    return problems


def secret_ref(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    if not entry or "value" in entry:
        return None
    return entry.get("valueFrom", {}).get("secretKeyRef")


def token_auth_problems(containers_: list[tuple[str, dict[str, Any]]], where: str) -> list[str]:
    """RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from a Secret (never a literal) on each container."""
    problems = []
    for name, c in containers_:
        env = env_of(c)
        if env.get("RAY_AUTH_MODE", {}).get("value") != "token":
            problems.append(f"{where}: {name}: RAY_AUTH_MODE is not 'token'")
        if not secret_ref(env.get("RAY_AUTH_TOKEN")):
            problems.append(f"{where}: {name}: RAY_AUTH_TOKEN does not come from a secretKeyRef")
    return problems


def ray_containers(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = cluster_spec(doc)
    return [(f"{name}/{c['name']}", c) for name, g in groups(spec) for c in containers(g)]


def client_containers(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Ray clients that KubeRay starts for a resource: the RayJob submitter pod."""
    tpl = doc.get("spec", {}).get("submitterPodTemplate")
    return [(f"submitter/{c['name']}", c) for c in tpl["spec"]["containers"]] if tpl else []


def rwx_claims() -> set[str]:
    return {d["metadata"]["name"] for d in load_all(SHARED_STORAGE)
            if d["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in d["spec"]["accessModes"]}


def covers(mount: str, path: str) -> bool:
    mount = mount.rstrip("/")
    return path == mount or path.startswith(mount + "/")


def k8s_shared_dir_problems(doc: dict[str, Any], where: str) -> list[str]:
    """QUARTET_SHARED_DIR on every Ray container, and the RWX volume mounted at (or above) it."""
    problems, claims = [], rwx_claims()
    for gname, g in groups(cluster_spec(doc)):
        volumes = {v["name"]: v for v in g["template"]["spec"].get("volumes", [])}
        for c in containers(g):
            value = env_of(c).get("QUARTET_SHARED_DIR", {}).get("value")
            if value != SHARED_DIR:
                problems.append(f"{where}: {gname}: QUARTET_SHARED_DIR is {value!r}, expected {SHARED_DIR}")
                continue
            shared = [m for m in c.get("volumeMounts", []) if covers(m["mountPath"], value) and not m.get("subPath")
                      and volumes.get(m["name"], {}).get("persistentVolumeClaim", {}).get("claimName") in claims]
            if not shared:
                problems.append(f"{where}: {gname}: no ReadWriteMany volume ({sorted(claims)}) mounted at {value}")
    return problems


def launcher_ray_start_commands(cfg: dict[str, Any]) -> list[str]:
    return [c for key in ("head_start_ray_commands", "worker_start_ray_commands") for c in cfg[key] if "ray start" in c]


def launcher_auth_problems(cfg: dict[str, Any]) -> list[str]:
    """`ray start` on every node runs with RAY_AUTH_MODE=token and the token read from a mounted
    file whose source lies outside the repository (so it cannot be committed)."""
    problems = []
    mounts = cfg.get("file_mounts", {})
    starts = launcher_ray_start_commands(cfg)
    if len(starts) < 2:
        problems.append("cluster.yaml: no `ray start` in head_start_ray_commands and worker_start_ray_commands")
    for cmd in starts:
        if "RAY_AUTH_MODE=token" not in cmd:
            problems.append(f"cluster.yaml: no RAY_AUTH_MODE=token for {cmd!r}")
        m = re.search(r'RAY_AUTH_TOKEN="\$\(cat ([^)\s]+)\)"', cmd)
        if not m:
            problems.append(f"cluster.yaml: RAY_AUTH_TOKEN is not read from a file in {cmd!r}")
            continue
        sources = [src for target, src in mounts.items() if covers(target, m.group(1))]
        if not sources:
            problems.append(f"cluster.yaml: the token file {m.group(1)} is not under any file_mounts target")
        for src in sources:
            if not src.startswith(("~", "/")) or (src.startswith("/") and covers(str(REPO), src)):
                problems.append(f"cluster.yaml: the token comes from {src!r}, inside the repository")
    return problems


def launcher_shared_dir_problems(cfg: dict[str, Any]) -> list[str]:
    opts = " ".join(cfg["docker"]["run_options"])
    problems = []
    if not re.search(rf"(--env[= ]|-e )QUARTET_SHARED_DIR={re.escape(SHARED_DIR)}(\s|$)", opts):
        problems.append(f"cluster.yaml: docker run_options do not set QUARTET_SHARED_DIR={SHARED_DIR}")
    volumes = re.findall(r"(?:--volume[= ]|-v )([^:\s]+):([^:\s]+)", opts)
    hosts = [h for h, cont in volumes if covers(cont, SHARED_DIR)]
    if not hosts:
        problems.append(f"cluster.yaml: no docker volume mounted at (or above) {SHARED_DIR}")
    init = " ".join(cfg.get("initialization_commands", []))
    for h in hosts:
        if not re.search(rf"mount -t nfs4?\b.*\s{re.escape(h)}(\s|$)", init):
            problems.append(f"cluster.yaml: nothing shared (NFS) is mounted at {h} on the host")
    return problems


# ----------------------------------------------------------------------------- secrets
HEX = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{32,}(?![0-9A-Fa-f])")
ASSIGNED = re.compile(r"(?i)\b[\w-]*(?:password|passwd|secret|token|api[_-]?key)[\w-]*[\"']?\s*[:=]\s*[\"']?([^\s\"'`,;)]*)")
PLACEHOLDER = re.compile(r"(CHANGE_ME\w*|[$<{\[(].*|\.\.\.|[A-Z][A-Z0-9_]*|)")


def secret_problems(text: str, where: str, code: bool = False) -> list[str]:
    """Things that look like a real credential: long hex strings (tokens, keys) other than DVC's
    md5s, and password/token/key assignments whose value is not a placeholder (CHANGE_ME, ${VAR},
    $(command), an UPPER_CASE name, ...). In Python (`code`) only the hex rule applies:
    assignments there are code, not values."""
    problems = []
    for n, line in enumerate(text.splitlines(), 1):
        for m in HEX.finditer(line):
            if not re.search(r"md5[\"']?\s*:\s*[\"']?$", line[: m.start()]):
                problems.append(f"{where}:{n}: a {len(m.group())}-digit hex string (a token?)")
        if code:
            continue
        for m in ASSIGNED.finditer(line):
            value = m.group(1)
            real = (not PLACEHOLDER.fullmatch(value) and len(value) >= 8 and re.search(r"\d", value))
            if real:
                problems.append(f"{where}:{n}: {m.group(0)!r} looks like a real secret")
    return problems


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30).stdout
    return [REPO / p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def secret_keys_created_in_readme() -> set[str]:
    text = (INFRA / "README.md").read_text()
    block = re.search(rf"kubectl create secret generic {SECRET_NAME}((?:[^\n]*\\\n)*[^\n]*)", text)
    assert block, "infra/README.md shows no `kubectl create secret generic quartet-secrets ...`"
    return set(re.findall(r"--from-literal=([\w.-]+)=", block.group(1)))


# ----------------------------------------------------------------------------- Dockerfile
def dockerfile_copies(text: str) -> set[str]:
    sources = set()
    for line in text.splitlines():
        if line.startswith("COPY "):
            sources |= {s.rstrip("/") for s in line.split()[1:-1] if not s.startswith("--")}
    return sources


def package_dirs() -> set[str]:
    """Top-level package directories setuptools installs (tool.setuptools.packages.find.include)."""
    include = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    return {p.name for p in REPO.iterdir() if (p / "__init__.py").is_file()
            and any(fnmatch.fnmatch(p.name, pat) for pat in include)}


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    need = package_dirs() | {"profiles", "params.yaml", "dvc.yaml", "data.dvc", ".dvc", "pyproject.toml"}
    copied = dockerfile_copies(text)
    problems += [f"Dockerfile does not COPY {p}" for p in sorted(need - copied)]
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")}
    problems += [f"Dockerfile COPYs {p}, which Dockerfile.dockerignore excludes" for p in sorted(copied & ignored)]
    problems += [f"Dockerfile COPYs {p}, which is not in the repository" for p in sorted(copied) if not (REPO / p).exists()]
    if not re.search(r"tomllib\.load\(open\('pyproject\.toml'.*\['dependencies'\].*pip install -r", text, re.DOTALL):
        problems.append("Dockerfile does not install the dependency pins read from pyproject.toml")
    m = re.search(r"ray\.__version__ == '([^']+)'", text)
    if not m or m.group(1) != pin("ray"):
        problems.append(f"Dockerfile checks ray {m.group(1) if m else None}, pyproject pins {pin('ray')}")
    m = re.search(r"ARG TORCH_VERSION=(\S+)", text)
    if not m or m.group(1) != pin("torch"):
        problems.append(f"Dockerfile installs torch {m.group(1) if m else None}, pyproject pins {pin('torch')}")
    return problems


# ============================================================================= the checks
def test_every_command_named_in_infra_exists_in_the_cli() -> None:
    """A renamed or removed verb must not survive in a manifest, a comment command or the README."""
    snippets = [s for p in infra_files() for s in text_snippets(p)]
    assert any("pull-data" in s for s in snippets)  # the parser sees the RayJob entrypoint
    assert command_problems(snippets) == []


def test_every_import_path_named_in_infra_is_importable() -> None:
    """Serve's import_path (quartet.cli:serve_app) is resolved on the cluster: resolve it here."""
    text = "\n".join(p.read_text() for p in infra_files())
    assert "quartet.cli:serve_app" in text
    assert import_path_problems(text) == []


def test_every_profile_named_in_infra_exists_and_validates() -> None:
    """--profile / QUARTET_PROFILE / serve args profile: a missing profile fails only inside a job."""
    for path in infra_files():
        assert profile_problems(path.read_text()) == [], path
        for value in profiles_named(path.read_text()):
            config.load(REPO, value)  # merged over params.yaml, validated (raises naming the key)


def test_params_keys_named_in_infra_exist() -> None:
    """The docs and comments point users at params keys: each must be a field of Params."""
    text = "\n".join(p.read_text() for p in infra_files())
    assert PARAMS_KEY.search(text)
    assert params_key_problems(text) == []


def test_serve_configs_list_the_gateway_and_every_family_app_and_follow_serves_schema() -> None:
    """The applications and deployment names are the ones components/serve.py builds: a renamed
    family app would leave the gateway's /health asking for an app that is not there, and an
    entry for a deployment the app lacks (or a field Serve does not know) is refused only at
    deploy time."""
    import families
    from ray.serve.schema import ServeDeploySchema

    from components.serve import GATEWAY_APP, family_app_name

    # What the checks compare with, from the code: the gateway at / and one app per family.
    apps = code_apps()
    assert {n: a["route_prefix"] for n, a in apps.items()} == {GATEWAY_APP: "/"} | {
        family_app_name(f): f"/{f}" for f in families.families()}
    assert {a["family"]: a["deployment"] for a in apps.values()} == {None: "gateway"} | {
        f: f for f in families.families()}
    for where, cfg in serve_configs():
        ServeDeploySchema.model_validate(cfg)
        assert serve_app_problems(cfg, where) == []


def test_serve_app_builds_each_configured_app_from_its_args(monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve calls quartet.cli:serve_app(args) on the cluster: call it here with each app's
    args (beyond loopback, so with a key, as the nodes have one) and compare the deployment it
    builds with the one the config configures."""
    import quartet.cli

    monkeypatch.setenv("QUARTET_API_KEY", "test-key")
    for where, cfg in serve_configs():
        for app in cfg["applications"]:
            built = quartet.cli.serve_app(app.get("args"))._bound_deployment
            assert [d["name"] for d in app["deployments"]] == [built.name], (where, app["name"])


class FakeServeClient:
    """ray.dashboard's ServeSubmissionClient as deploy_to_cluster uses it: keeps what it is sent."""

    deployed: dict[str, Any] = {}

    def __init__(self, address: str) -> None:
        self.address = address

    def _upload_working_dir_if_needed(self, runtime_env: dict[str, Any]) -> None:
        pass

    def deploy_applications(self, cfg: dict[str, Any]) -> None:
        FakeServeClient.deployed = copy.deepcopy(cfg)

    def get_serve_details(self) -> dict[str, Any]:
        return {"applications": {a["name"]: {"status": "RUNNING"} for a in self.deployed["applications"]}}


def test_serve_configs_deploy_the_apps_of_quartet_serve_address(monkeypatch: pytest.MonkeyPatch) -> None:
    """`quartet serve --address ... --host 0.0.0.0 --profile cluster` (deploy_to_cluster) and
    the config files deploy the same apps: names, route prefixes, import path, args."""
    import quartet.cli
    from ray.dashboard.modules.serve import sdk

    monkeypatch.setattr(sdk, "ServeSubmissionClient", FakeServeClient)
    monkeypatch.setattr(FakeServeClient, "deployed", {})
    monkeypatch.setenv("RAY_AUTH_TOKEN", "test-token")  # the client's token: no local cluster is asked
    monkeypatch.setenv("RAY_AUTH_MODE", "token")         # (restored after the test)
    quartet.cli.deploy_to_cluster("http://127.0.0.1:8265", "0.0.0.0", 8000, "cluster", timeout_s=10)

    def shape(cfg: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
        return {a["name"]: (a["route_prefix"], a["import_path"], a.get("args") or {}) for a in cfg["applications"]}

    deployed = shape(FakeServeClient.deployed)
    assert set(deployed) == set(code_apps())
    for where, cfg in serve_configs():
        assert shape(cfg) == deployed, where


def test_serve_config_overrides_keep_batches_possible() -> None:
    for where, cfg in serve_configs():
        assert serve_batch_problems(cfg, where) == []


def test_image_tag_is_the_same_everywhere() -> None:
    """One image, one tag (the project version, -cpu; -gpu for GPU groups) in every file."""
    cpu = f"REGISTRY/quartet:{allowed_tags()['cpu']}"
    for path in infra_files():
        assert image_tag_problems(path.read_text(), str(path.relative_to(REPO))) == []
    for path in (DOCKERFILE, LAUNCHER, INFRA / "README.md", *K8S_RAY.values()):
        assert cpu in path.read_text(), f"{path.relative_to(REPO)} does not use {cpu}"


def test_gpus_only_in_gpu_worker_groups() -> None:
    """A GPU request outside a GPU group never schedules; a CUDA image on a CPU node is waste."""
    assert launcher_gpu_problems(yaml.safe_load(LAUNCHER.read_text())) == []
    for name, path in K8S_RAY.items():
        for doc in load_all(path):
            assert k8s_gpu_problems(cluster_spec(doc), name) == []
    for name, path in [("cluster.yaml", LAUNCHER), *K8S_RAY.items()]:
        assert profile_gpu_problems(path.read_text(), has_gpu_group(path), name) == []


def test_cluster_profile_asks_for_no_gpus() -> None:
    """`--profile cluster` runs on CPU groups; GPUs come only from `--profile cluster,gpu`."""
    params = config.load(REPO, "cluster")
    for family, tasks in params.families.items():
        for task, tp in tasks.items():
            assert tp.tune.gpus_per_trial == 0 and tp.train.gpus_per_worker == 0, f"{family}/{task}"
    assert asks_for_gpus(config.load(REPO, "cluster,gpu"))  # the check above can see GPUs


def test_trials_and_train_runs_fit_a_worker_group() -> None:
    """A trial bigger than a worker group waits forever (Ray only warns); check the sizes."""
    params = config.load(REPO, "cluster")
    for name in ("raycluster.yaml", "rayjob-tune.yaml"):
        for doc in load_all(K8S_RAY[name]):
            assert cpu_fit_problems(cluster_spec(doc), params, name) == []


def test_serve_replicas_fit_the_rayservice_pods() -> None:
    doc = load_all(K8S_RAY["rayservice.yaml"])[0]
    assert serve_fit_problems(doc) == []
    # The worker group's comment does the sum: it must be this config's.
    replicas = serve_replicas(serve_config_v2(doc))
    assert len(replicas) == len(code_apps())
    m = re.search(r"# (\d+) replicas x ([\d.]+) CPU = ([\d.]+) CPUs", K8S_RAY["rayservice.yaml"].read_text())
    assert m, "rayservice.yaml: the worker group's comment no longer sums the replicas"
    assert int(m.group(1)) == sum(n for _, _, n in replicas)
    assert {float(m.group(2))} == {cpus for _, cpus, _ in replicas}
    assert float(m.group(3)) == sum(cpus * n for _, cpus, n in replicas)


def test_head_offers_the_driver_resource() -> None:
    """Trials that only drive a TorchTrainer ask for quartet_driver when the cluster offers it
    (components/tune.py); the heads of the clusters that run jobs must offer it."""
    from components.tune import DRIVER_RESOURCE

    for name in ("raycluster.yaml", "rayjob-tune.yaml"):
        for doc in load_all(K8S_RAY[name]):
            params = cluster_spec(doc)["headGroupSpec"]["rayStartParams"]
            assert head_resources(params).get(DRIVER_RESOURCE, 0) > 0, name
            assert params.get("num-cpus") == "0", name
    head = yaml.safe_load(LAUNCHER.read_text())["available_node_types"]["ray.head.default"]
    assert head["resources"].get(DRIVER_RESOURCE, 0) > 0


def test_multi_node_serve_binds_beyond_loopback_with_an_api_key() -> None:
    """On a cluster the proxy must be reachable from other nodes, and beyond loopback every app
    (the gateway and each family) refuses to start without an API key where its replicas run."""
    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    assert serve_config_problems(cfg, "serve_config.yaml") == []
    launcher = yaml.safe_load(LAUNCHER.read_text())
    assert serve_key_problems(cfg, launcher_env(launcher), list(launcher["file_mounts"]), "serve_config.yaml") == []
    assert serve_key_problems(cfg, {}, list(launcher["file_mounts"]), "serve_config.yaml") == []  # self-contained too
    doc = load_all(K8S_RAY["rayservice.yaml"])[0]
    assert serve_config_problems(serve_config_v2(doc), "rayservice.yaml") == []
    for name, c in ray_containers(doc):
        assert secret_ref(env_of(c).get("QUARTET_API_KEY")), f"rayservice.yaml: {name}: no QUARTET_API_KEY from a Secret"
    on_every_pod = set.intersection(*(set(env_of(c)) for _, c in ray_containers(doc)))
    node_env = dict.fromkeys(on_every_pod, "<from the Secret>")
    assert serve_key_problems(serve_config_v2(doc), node_env, [], "rayservice.yaml") == []


def test_token_auth_on_every_ray_container_from_a_secret() -> None:
    for name, path in K8S_RAY.items():
        for doc in load_all(path):
            assert token_auth_problems(ray_containers(doc) + client_containers(doc), name) == []


def test_cluster_launcher_passes_token_auth_to_ray_start() -> None:
    assert launcher_auth_problems(yaml.safe_load(LAUNCHER.read_text())) == []


def test_secret_refs_name_the_keys_the_readme_creates() -> None:
    """One Secret, the keys of the documented `kubectl create secret` command (and the same file
    names for the cluster launcher), so a manifest never waits on a key nobody created."""
    keys = secret_keys_created_in_readme()
    assert {"ray-auth-token", "api-key"} <= keys
    for name, path in K8S_RAY.items():
        for doc in load_all(path):
            for cname, c in ray_containers(doc) + client_containers(doc):
                for entry in c.get("env", []):
                    ref = secret_ref(entry)
                    if ref:
                        assert (ref["name"], ref["key"]) in {(SECRET_NAME, k) for k in keys}, f"{name}: {cname}: {ref}"
    files = set(re.findall(r"/etc/quartet/secrets/([\w.-]+)", LAUNCHER.read_text() + SERVE_CONFIG.read_text()))
    assert files and files <= keys, files - keys


def test_shared_dir_set_and_mounted_on_every_ray_node() -> None:
    """profiles/cluster.yaml puts checkpoints and stage outputs under ${QUARTET_SHARED_DIR}:
    every node must have it, on storage that every node shares."""
    raw = config.raw_params(REPO, "cluster")
    assert raw["ray"]["storage_path"].startswith("${QUARTET_SHARED_DIR}/")
    assert raw["paths"]["outputs_root"].startswith("${QUARTET_SHARED_DIR}/")
    for name, path in K8S_RAY.items():
        for doc in load_all(path):
            assert k8s_shared_dir_problems(doc, name) == []
    assert launcher_shared_dir_problems(yaml.safe_load(LAUNCHER.read_text())) == []


def test_rayjob_runs_the_steps_of_quartet_submit_tune() -> None:
    """The RayJob runs the image's code the way `quartet submit tune` does: pull the pinned data,
    prepare, tune, with the cluster profile."""
    doc = load_all(K8S_RAY["rayjob-tune.yaml"])[0]
    steps = [shlex.split(s) for s in doc["spec"]["entrypoint"].split("&&")]
    assert [s[:4] for s in steps] == [["python", "-m", "quartet.cli", "pull-data"],
                                      ["python", "-m", "quartet.cli", "prepare"],
                                      ["python", "-m", "quartet.cli", "tune"]]
    assert steps[1][4:6] == steps[2][4:6]  # the same family and task
    head = containers(cluster_spec(doc)["headGroupSpec"])[0]
    for step in steps[1:]:
        profile = step[step.index("--profile") + 1] if "--profile" in step else env_of(head)["QUARTET_PROFILE"]["value"]
        assert "cluster" in config.profile_names(profile)
    assert env_of(head).get("QUARTET_DVC_REMOTE_URL", {}).get("value"), "pull-data needs a DVC remote every pod reads"


def test_no_secret_committed() -> None:
    """No tracked file and no file under infra/ holds something that looks like a credential."""
    problems = []
    for path in sorted(set(tracked_text_files()) | set(infra_files())):
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        problems += secret_problems(text, str(path.relative_to(REPO)), code=path.suffix == ".py")
    assert problems == []


def test_local_secrets_stay_out_of_git_jobs_and_the_image() -> None:
    from components.cluster import JOB_EXCLUDES

    for path in ("infra/mlflow/.env", ".cluster/secrets.json", ".dvc/config.local"):
        assert subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO, timeout=30).returncode == 0, path
    assert {"infra/mlflow/.env", ".cluster"} <= set(JOB_EXCLUDES)
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert {"infra/mlflow/.env", ".cluster", ".dvc/config.local"} <= ignored


def test_dockerfile_installs_the_pyproject_pins_and_copies_the_code() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_kuberay_ray_version_is_the_pyproject_pin() -> None:
    for name, path in K8S_RAY.items():
        for doc in load_all(path):
            assert cluster_spec(doc)["rayVersion"] == pin("ray"), name


# ============================================================================= the checks can fail
def k8s_doc(name: str) -> dict[str, Any]:
    return copy.deepcopy(load_all(K8S_RAY[name])[0])


def test_checks_catch_broken_commands_profiles_and_keys() -> None:
    assert command_problems(["python -m quartet.cli pull-dta"])
    assert command_problems(["quartet submit tuen forecaster"])
    assert command_problems(["python -m quartet.cli prepare forecaster no_such_task"])
    assert not command_problems(["quartet submit tune forecaster synthetic --profile cluster"])
    assert import_path_problems("import_path: quartet.cli:serve_ap")
    assert profile_problems("--profile cluster,gpux")
    assert profile_problems("- {name: QUARTET_PROFILE, value: clustr}")
    assert params_key_problems("see `serve.replica_cpu`")


def test_checks_catch_broken_images_gpus_and_sizes() -> None:
    assert image_tag_problems("image: REGISTRY/quartet:0.1.0", "x")
    assert image_tag_problems("image: registry.example/quartet:0.2.0-cpu", "x")
    doc = k8s_doc("raycluster.yaml")
    containers(cluster_spec(doc)["workerGroupSpecs"][0])[0]["image"] = f"REGISTRY/quartet:{allowed_tags()['gpu']}"
    assert k8s_gpu_problems(cluster_spec(doc), "x")
    doc = k8s_doc("rayjob-tune.yaml")
    containers(cluster_spec(doc)["headGroupSpec"])[0]["resources"]["limits"]["nvidia.com/gpu"] = 1
    assert k8s_gpu_problems(cluster_spec(doc), "x")
    for g in cluster_spec(doc)["workerGroupSpecs"]:
        containers(g)[0]["resources"]["limits"]["cpu"] = "500m"   # a 1-CPU Train worker fits no pod
    assert cpu_fit_problems(cluster_spec(doc), config.load(REPO, "cluster"), "x")
    assert profile_gpu_problems(K8S_RAY["rayjob-tune.yaml"].read_text().replace("--profile cluster", "--profile cluster,gpu"),
                                has_gpu_group(K8S_RAY["rayjob-tune.yaml"]), "x")
    cfg = yaml.safe_load(LAUNCHER.read_text())
    cfg["available_node_types"]["ray.worker.gpu"]["resources"] = {}
    assert launcher_gpu_problems(cfg)
    doc = k8s_doc("rayservice.yaml")
    spec = yaml.safe_load(doc["spec"]["serveConfigV2"])
    spec["applications"][0]["deployments"][0]["num_replicas"] = 20
    doc["spec"]["serveConfigV2"] = yaml.safe_dump(spec)
    assert serve_fit_problems(doc)
    doc = k8s_doc("rayservice.yaml")
    cluster_spec(doc)["workerGroupSpecs"][0]["replicas"] = 1   # 3.5 CPUs of replicas, 2 offered
    assert serve_fit_problems(doc)
    spec = serve_config_v2(doc)
    for app in spec["applications"]:
        del app["deployments"]                                  # the code's options still count:
    s = config.load(REPO, "cluster").serve                     # params.yaml serve:, 1 gateway
    families = [app["args"].get("family") for app in spec["applications"]]
    assert serve_replicas(spec) == [
        (f or "gateway", s.replica_cpus, s.num_replicas.get(f, s.num_replicas.get("default", 1)) if f else 1)
        for f in families]


def test_checks_catch_serve_apps_that_differ_from_the_code() -> None:
    def broken(edit: Any) -> dict[str, Any]:
        cfg = json.loads(json.dumps(yaml.safe_load(SERVE_CONFIG.read_text())))  # unshares the YAML aliases
        edit({a["name"]: a for a in cfg["applications"]}, cfg)
        return cfg

    assert serve_app_problems(broken(lambda apps, cfg: None), "x") == []
    assert serve_app_problems(broken(lambda apps, cfg: apps["quartet"]["deployments"][0].update(name="ingress")), "x")
    assert serve_app_problems(broken(lambda apps, cfg: apps["quartet-rl"].update(route_prefix="/r")), "x")
    assert serve_app_problems(broken(lambda apps, cfg: apps["quartet-rl"]["args"].update(family="translator")), "x")
    assert serve_app_problems(broken(lambda apps, cfg: apps["quartet"]["args"].update(family="rl")), "x")
    assert serve_app_problems(broken(lambda apps, cfg: apps["quartet-rl"]["args"].update(families=["rl"])), "x")
    assert serve_app_problems(broken(lambda apps, cfg: apps["quartet-rl"].update(import_path="quartet.cli:app")), "x")
    assert serve_app_problems(broken(lambda apps, cfg: apps["quartet-rl"].update(name="quartet-r")), "x")
    assert serve_app_problems(broken(lambda apps, cfg: cfg["applications"].pop()), "x")
    assert serve_app_problems(broken(lambda apps, cfg: apps["quartet-rl"]["deployments"].append({"name": "rl2"})), "x")
    assert serve_batch_problems(broken(lambda apps, cfg: apps["quartet-rl"]["deployments"][0].update(
        max_ongoing_requests=config.load(REPO, "cluster").serve.max_batch_size - 1)), "x")
    mounts = list(yaml.safe_load(LAUNCHER.read_text())["file_mounts"])
    assert serve_key_problems(broken(lambda apps, cfg: apps["quartet-rl"].pop("runtime_env")), {}, mounts, "x")
    assert not serve_key_problems(broken(lambda apps, cfg: apps["quartet-rl"].pop("runtime_env")),
                                  {"QUARTET_API_KEY_FILE": "/etc/quartet/secrets/api-key"}, mounts, "x")
    assert serve_key_problems(broken(lambda apps, cfg: apps["quartet-rl"]["runtime_env"]["env_vars"].update(
        QUARTET_API_KEY_FILE="/home/me/api-key")), {}, mounts, "x")


def test_checks_catch_loopback_serve_literal_tokens_and_missing_shared_dir() -> None:
    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    cfg["http_options"]["host"] = "127.0.0.1"
    assert serve_config_problems(cfg, "x")
    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    cfg["applications"][0]["args"]["host"] = "127.0.0.1"
    assert serve_config_problems(cfg, "x")
    doc = k8s_doc("raycluster.yaml")
    worker = containers(cluster_spec(doc)["workerGroupSpecs"][0])[0]
    worker["env"] = [e if e["name"] != "RAY_AUTH_TOKEN" else {"name": "RAY_AUTH_TOKEN", "value": "ab" * 16}
                     for e in worker["env"]]
    assert token_auth_problems(ray_containers(doc), "x")
    doc = k8s_doc("rayservice.yaml")
    containers(cluster_spec(doc)["workerGroupSpecs"][0])[0]["volumeMounts"] = [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert k8s_shared_dir_problems(doc, "x")
    cfg = yaml.safe_load(LAUNCHER.read_text())
    cfg["worker_start_ray_commands"] = ["ray stop", "ray start --address=$RAY_HEAD_IP:6379"]
    assert launcher_auth_problems(cfg)
    cfg = yaml.safe_load(LAUNCHER.read_text())
    cfg["file_mounts"]["/etc/quartet/secrets"] = "./secrets"
    assert launcher_auth_problems(cfg)
    cfg = yaml.safe_load(LAUNCHER.read_text())
    cfg["docker"]["run_options"] = [o for o in cfg["docker"]["run_options"] if "QUARTET_SHARED_DIR" not in o]
    assert launcher_shared_dir_problems(cfg)


@pytest.mark.parametrize("line", [
    "RAY_AUTH_TOKEN=" + "3f9a" * 16,                       # a generated hex token
    "POSTGRES_PASSWORD=" + "hunter2" + "hunter2",          # a literal password
    "      mlflow-password: " + "s3cr3t-" + "value-1",
])
def test_secret_check_flags_real_looking_values(line: str) -> None:
    assert secret_problems(line, "x")


@pytest.mark.parametrize("line", [
    "POSTGRES_PASSWORD=CHANGE_ME",
    "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD in .env}",
    '--from-literal=ray-auth-token="$(openssl rand -hex 32)"',
    "- md5: e27ef55a46180807e388007b5734fc13.dir",
    "MLFLOW_TRACKING_PASSWORD=...",
])
def test_secret_check_accepts_placeholders(line: str) -> None:
    assert secret_problems(line, "x") == []


def test_dockerfile_check_catches_a_missing_copy_and_a_drifted_pin() -> None:
    text = DOCKERFILE.read_text()
    assert dockerfile_problems(text.replace("COPY families ./families\n", ""))
    assert dockerfile_problems(text.replace(f"== '{pin('ray')}'", "== '2.59.0'"))
    assert dockerfile_problems(text.replace("pip install -r /tmp/requirements.txt", "pip install ray"))
