"""Ray Serve: one application per family plus a small gateway app, behind one HTTP proxy.

Why this shape (measured in bench/serve.py, BENCHMARKS.md § Serving):
- **One hop per prediction.** Each family is its own Serve application (route prefix
  `/<family>`) whose FastAPI ingress is also the replica that holds the models. An ingress that
  forwards to a model deployment costs a second hop, ~4 ms on this machine, more than the model.
- **Families never block each other.** Separate apps mean separate replicas and event loops, so a
  slow beam search in `/translator` does not stall `/rl/act`; the gateway (`/`, `/health`,
  `/models`, `/docs`) has replicas of its own.
- **The event loop stays free.** Inference runs in one worker thread per replica; the loop only
  parses, queues and answers, so `/health` and new requests are served while a batch runs.
- **Batching without a wait.** `Batcher` runs a lone request at once and batches whatever queued
  while the previous batch ran. (`@serve.batch` forms the next batch as soon as the previous one
  starts, so with no wait it never batches, and its wait is added to every lone request.)
- **Each task stands alone.** A champion that fails to load, or an MLflow that cannot be reached
  on a restart with nothing cached, makes that task answer 503 with the reason; the others serve.
  Downloads are cached on disk by version, so a restarted replica serves the version it had.
- **Rollout without downtime.** A thread in each replica polls the registry; when `@champion`
  moves it loads the new version beside the old one and swaps a reference. Requests in flight
  finish on the version they started on; each replica reports what it loaded to `ServeBoard`,
  which `/models` reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import inspect
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import serve

from components.family import RequestError

log = logging.getLogger(__name__)

GATEWAY_APP = "quartet"
BOARD_NAME, BOARD_NAMESPACE = "quartet-serve-board", "quartet"


def family_app_name(family: str) -> str:
    return f"quartet-{family}"


@dataclass(frozen=True)
class FamilyServeSpec:
    """What the app needs of a family: its name, Predictor import path, tasks and routes."""

    family: str
    predictor_path: str
    tasks: tuple[str, ...]
    routes: tuple[Any, ...]  # components.family.Route
    demo_js: str = ""  # the family's demo panel script (its text travels with the app config)


@dataclass(frozen=True)
class ServeSettings:
    """The `serve` params a replica needs (plain values: they travel in the Serve config)."""

    tracking_uri: str
    cache_dir: str
    max_body_bytes: int = 2_000_000
    max_batch_size: int = 16
    max_ongoing_requests: int = 32
    max_queued_requests: int = 256
    replica_cpus: float = 0.25
    num_replicas: dict[str, int] = field(default_factory=dict)
    poll_s: float = 10.0
    health_timeout_s: float = 2.0
    torch_threads: int = 1
    access_log: bool = False
    loopback_only: bool = True
    require_api_key: bool = False
    mlflow_ui: str | None = None  # where the demo page links a model's run (None: no links)

    def replicas(self, family: str) -> int:
        return int(self.num_replicas.get(family, self.num_replicas.get("default", 1)))


def bind_internal_grpc_to_loopback() -> None:
    """Ray Serve 2.60 replicas bind their inter-deployment gRPC server on [::]:0, i.e. on every
    interface, whatever the node address. Our servers listen on 127.0.0.1 only, so the replica
    module's helper is wrapped to rewrite that address before the replica starts the server
    (it does so right after our constructor returns)."""
    from ray.serve._private import replica

    original = replica.add_port_to_grpc_server
    if getattr(original, "quartet_loopback", False):
        return

    def loopback(server: Any, address: str) -> Any:
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = "127.0.0.1:" + address.rsplit(":", 1)[1]
        return original(server, address)

    loopback.quartet_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = loopback


# ----------------------------------------------------------------------------- HTTP guards
API_KEY_ENV, API_KEY_FILE_ENV = "QUARTET_API_KEY", "QUARTET_API_KEY_FILE"


def api_key_from_env() -> str | None:
    """The served app's API key: QUARTET_API_KEY, or the file QUARTET_API_KEY_FILE names (a
    mounted secret). Read where the ingress runs, so the key never travels in a Serve config."""
    key = os.environ.get(API_KEY_ENV)
    if not key and os.environ.get(API_KEY_FILE_ENV):
        try:
            key = Path(os.environ[API_KEY_FILE_ENV]).read_text().strip()
        except OSError as e:
            raise RuntimeError(f"{API_KEY_FILE_ENV}: cannot read the API key file: {e.strerror}") from None
    return key or None


def authorized(header: str | None, key: str) -> bool:
    """`Authorization: Bearer <key>`, compared in constant time."""
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").strip().encode(), key.encode())


async def _send_json(send: Any, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": payload})


class ApiKey:
    """ASGI middleware: 401 unless `Authorization: Bearer <key>` (plain ASGI: no per-request task)."""

    def __init__(self, app: Any, key: str) -> None:
        self.app, self.key = app, key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
            if not authorized(header, self.key):
                return await _send_json(send, 401, {"detail": "missing or wrong API key (Authorization: Bearer ...)"},
                                        [(b"www-authenticate", b"Bearer")])
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 once a request body passes `max_bytes`, counted while it streams in.

    Why not read the body and measure it: a chunked body (no Content-Length) would be held whole
    in memory first. Here a declared length over the limit is refused before reading, and a
    streamed one is cut off at the chunk that crosses it.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from fastapi import HTTPException

        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _send_json(send, 413, {"detail": f"request body of {int(length)} bytes exceeds {self.max_bytes}"})
        seen, exceeded, answered = 0, False, False

        async def limited() -> dict:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True  # stop reading; whatever the app answers becomes our 413
                    raise HTTPException(413, f"request body exceeds {self.max_bytes} bytes")
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal answered
            if not exceeded:
                return await send(message)
            if message["type"] == "http.response.start" and not answered:
                answered = True  # FastAPI reports a failed body read as 400: answer 413 instead
                await _send_json(send, 413, {"detail": f"request body exceeds {self.max_bytes} bytes"})

        await self.app(scope, limited, guarded_send)


def _fastapi(title: str, settings: ServeSettings, docs: bool) -> Any:
    """A FastAPI app with quartet's guards: 422 without echoing input, body limit, API key."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    app = FastAPI(title=title, version="1", docs_url="/docs" if docs else None,
                  openapi_url="/openapi.json" if docs else None, redoc_url=None,
                  description="Champion models of the Hands-On ML ch. 15-18 families (contract: DESIGN.md section 5).")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Any:
        # The default handler echoes the input back, which fails on NaN (not JSON): keep loc + msg.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.require_api_key:
        key = api_key_from_env()
        if not key:
            raise RuntimeError(f"serving beyond loopback needs an API key: set {API_KEY_ENV} (or {API_KEY_FILE_ENV}) "
                               "where Ray runs")
        app.add_middleware(ApiKey, key=key)  # added last = runs first: no body is read without the key
    return app


# ----------------------------------------------------------------------------- batching
class Batcher:
    """Opportunistic batching on one worker thread.

    A request that finds the worker idle runs at once (no wait is added to a lone request);
    requests that arrive while a batch runs queue up and go together, up to `max_batch_size`.
    `sizes` counts batches by size, which `/health` reports so a test can see batches form.
    """

    def __init__(self, run_batch: Any, max_batch_size: int, executor: ThreadPoolExecutor) -> None:
        self.run_batch, self.max_batch_size, self.executor = run_batch, max(1, max_batch_size), executor
        self.sizes: dict[int, int] = defaultdict(int)
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, item: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = loop.create_task(self._work())
        future = loop.create_future()
        self._queue.put_nowait((item, future))  # type: ignore[union-attr]
        return await future

    async def _work(self) -> None:
        loop, queue = asyncio.get_running_loop(), self._queue
        assert queue is not None
        while True:
            batch = [await queue.get()]
            while len(batch) < self.max_batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            batch = [(item, fut) for item, fut in batch if not fut.done()]  # a client that left
            if not batch:
                continue
            self.sizes[len(batch)] += 1
            try:
                results = await loop.run_in_executor(self.executor, self.run_batch, [item for item, _ in batch])
            except BaseException as e:  # noqa: BLE001 - every waiter must hear of it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)


# ----------------------------------------------------------------------------- champions on disk
class RegistryUnreachable(RuntimeError):
    """MLflow could not be asked (down, network): not the same as "there is no champion"."""


class NoChampion(LookupError):
    """The registry answered: this task has no `@champion`."""


def champion_version(name: str) -> Any:
    """The `@champion` ModelVersion, or NoChampion / RegistryUnreachable."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from components.track import CHAMPION

    try:
        return MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except MlflowException as e:
        code = getattr(e, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE") or "not found" in str(e).lower():
            raise NoChampion(f"{name}@{CHAMPION} does not exist") from None
        raise RegistryUnreachable(f"MLflow registry unreachable: {str(e).splitlines()[0][:200]}") from None
    except Exception as e:  # requests/OS errors raised before MLflow wraps them
        raise RegistryUnreachable(f"MLflow registry unreachable: {type(e).__name__}: {str(e)[:200]}") from None


@dataclass(frozen=True)
class CachedModel:
    model_dir: Path
    version: str
    info: dict[str, Any]
    source: str  # "registry" (checked against MLflow now) or "cache" (MLflow unreachable)
    note: str = ""


def _write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj))
    os.replace(tmp, path)


def fetch_champion(name: str, cache_dir: Path) -> CachedModel:
    """`name@champion` as a local model dir, downloaded once per version into `cache_dir/name/vN`.

    When MLflow cannot be reached, the version this node last saw as champion is used from the
    cache (and says so); when nothing is cached, RegistryUnreachable propagates."""
    from components.track import download_version, version_info

    home = cache_dir / name
    home.mkdir(parents=True, exist_ok=True)
    pointer = home / "champion.json"
    try:
        mv = champion_version(name)
    except RegistryUnreachable as e:
        if pointer.is_file():
            last = json.loads(pointer.read_text())
            model_dir = home / f"v{last['version']}" / "model_dir"
            if model_dir.is_dir():
                return CachedModel(model_dir, last["version"], last["info"], "cache", f"{e}; serving the cached v{last['version']}")
        raise
    version = str(mv.version)
    target = home / f"v{version}"
    if not (target / "model_dir").is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=f".v{version}-", dir=home))
        try:
            shutil.move(str(download_version(name, version, tmp / "download")), tmp / "model_dir")
            with contextlib.suppress(OSError):  # another replica of this node was faster: keep its copy
                os.rename(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    info = version_info(mv)
    _write_json_atomic(pointer, {"version": version, "info": info})
    return CachedModel(target / "model_dir", version, info, "registry")


@dataclass(frozen=True)
class TaskSlot:
    """What one task of one replica serves right now (swapped whole, never edited)."""

    task: str
    name: str
    predictor: Any = None
    version: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    reason: str = ""  # why it is unavailable, or a note (served from cache, last swap failed)
    loaded_at: float = 0.0
    rejected: str | None = None  # a version that failed to load: not retried until @champion moves again

    @property
    def ready(self) -> bool:
        return self.predictor is not None

    def status(self) -> dict[str, Any]:
        return {"ready": self.ready, "version": self.version, "source": self.source, "reason": self.reason,
                "loaded_at": self.loaded_at}


def load_slot(task: str, name: str, predictor_path: str, cache_dir: Path) -> TaskSlot:
    """A ready slot, or an unavailable one that says why (never raises for a model problem)."""
    from components.track import load_predictor

    try:
        cached = fetch_champion(name, cache_dir)
    except (NoChampion, RegistryUnreachable) as e:
        return TaskSlot(task, name, reason=str(e))
    try:
        predictor = load_predictor(predictor_path, cached.model_dir, model_version=cached.version)
    except Exception as e:  # a broken model must not take the family down
        log.exception("%s v%s failed to load", name, cached.version)
        return TaskSlot(task, name, version=cached.version, rejected=cached.version,
                        reason=f"v{cached.version} failed to load: {type(e).__name__}: {str(e)[:200]}")
    return TaskSlot(task, name, predictor, cached.version, cached.info, cached.source, cached.note, time.time())


# ----------------------------------------------------------------------------- who loaded what
class ServeBoard:
    """A tiny Ray actor where every replica posts what it serves; `/models` reads it.

    Why: a handle call reaches one replica of a deployment, so the version each replica actually
    loaded cannot be asked for through Serve. Entries expire when a replica stops posting."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def post(self, replica: str, entry: dict[str, Any]) -> None:
        self.entries[replica] = {**entry, "replica": replica, "seen": time.time()}

    def read(self, max_age_s: float) -> list[dict[str, Any]]:
        now = time.time()
        self.entries = {k: v for k, v in self.entries.items() if now - v["seen"] <= max_age_s}
        return list(self.entries.values())


def board() -> Any:
    """The board actor, created by whoever asks first. Detached: an actor is owned by the
    process that created it and dies with it, and that may be a replica Serve later kills.
    Restarted if its own process dies (replicas post again on their next poll)."""
    import ray

    return ray.remote(num_cpus=0, max_restarts=-1)(ServeBoard).options(
        name=BOARD_NAME, namespace=BOARD_NAMESPACE, get_if_exists=True, lifetime="detached").remote()


# ----------------------------------------------------------------------------- family app
class FamilyServer:
    """Serve replica of one family: its FastAPI ingress and all its tasks' champions."""

    def __init__(self, spec: FamilyServeSpec, settings: ServeSettings) -> None:
        import mlflow
        import torch

        if settings.loopback_only:
            bind_internal_grpc_to_loopback()
        torch.set_num_threads(settings.torch_threads)
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")  # a registry that hangs must not hang us
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        mlflow.set_tracking_uri(settings.tracking_uri)
        self.spec, self.settings = spec, settings
        self.family = spec.family
        self.cache_dir = Path(settings.cache_dir)
        self.routes = {r.name: r for r in spec.routes}
        self.task_maps = {r.name: dict(r.task_map) for r in spec.routes}
        self.slots: dict[str, TaskSlot] = {
            task: load_slot(task, f"quartet-{spec.family}-{task}", spec.predictor_path, self.cache_dir)
            for task in spec.tasks
        }
        for slot in self.slots.values():
            if not slot.ready:
                log.warning("%s unavailable: %s", slot.name, slot.reason)
        # OpenMP's thread count is per calling thread: set it on the worker too, or torch ops there
        # start a pool sized to the machine that spin-waits between ops, next to the proxy.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{spec.family}-infer",
                                           initializer=torch.set_num_threads, initargs=(settings.torch_threads,))
        self.batcher = Batcher(self._run_batch, settings.max_batch_size, self.executor)
        self.replica_id = self._replica_id()
        self._stop = threading.Event()
        self._board: Any = None
        self._post()
        self._poller = threading.Thread(target=self._poll, name=f"{spec.family}-champion-poll", daemon=True)
        self._poller.start()

    @staticmethod
    def _replica_id() -> str:
        try:
            return serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside Serve (unit tests)
            return f"local-{os.getpid()}"

    # -- requests
    def _resolve(self, route: str, task: str) -> TaskSlot | tuple[int, Any]:
        real = self.task_maps.get(route, {}).get(task, task)
        slot = self.slots.get(real)
        if slot is None:
            served = sorted(t for t, s in self.slots.items() if s.ready)
            aliases = sorted(a for a, t in self.task_maps.get(route, {}).items() if t in served)
            return 404, {"message": f"unknown {self.family} task {task!r}", "served_tasks": sorted(served + aliases)}
        if not self.routes[route].serves(real):
            answered = [t for t in self.slots if self.routes[route].serves(t)]
            return 422, {"message": f"{self.family} task {task!r} is not answered on /{self.family}/{route} "
                                    f"(it answers {', '.join(answered)})"}
        if not slot.ready:
            return 503, {"message": f"{self.family} task {task!r} is unavailable", "reason": slot.reason}
        return slot

    async def answer(self, route: str, body: Any) -> Any:
        from fastapi.responses import JSONResponse, Response

        slot = self._resolve(route, body.task)
        if isinstance(slot, tuple):
            return JSONResponse(status_code=slot[0], content={"detail": slot[1]})
        status, payload = await self.batcher.submit((route, slot, body))
        if status == 200:
            return Response(content=payload, media_type="application/json")
        return JSONResponse(status_code=status, content={"detail": payload})

    def _run_batch(self, items: list[tuple[str, TaskSlot, Any]]) -> list[tuple[int, Any]]:
        """Worker thread: one pass per (route, loaded version); JSON is encoded here too."""
        results: list[tuple[int, Any] | None] = [None] * len(items)
        groups: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, (route, slot, _) in enumerate(items):
            groups[(route, id(slot))].append(i)
        for (route, _), idx in groups.items():
            slot = items[idx[0]][1]
            method = getattr(slot.predictor, self.routes[route].method)  # the method the family's Route names
            for i, answer in zip(idx, self._answer_group(method, [items[i][2] for i in idx])):
                results[i] = answer
        return results  # type: ignore[return-value]

    @staticmethod
    def _answer_group(method: Any, bodies: list[Any]) -> list[tuple[int, Any]]:
        try:
            return [(200, r.model_dump_json().encode()) for r in method(bodies)]
        except Exception:
            # One bad request must not fail its batch-mates: answer them one by one.
            out: list[tuple[int, Any]] = []
            for body in bodies:
                try:
                    out.append((200, method([body])[0].model_dump_json().encode()))
                except RequestError as e:
                    out.append((422, str(e)))
                except Exception as e:  # a bug, not the client's fault: 500 for this request only
                    log.exception("prediction failed")
                    out.append((500, f"prediction failed: {type(e).__name__}"))
            return out

    # -- state for /health and /models
    def status(self) -> dict[str, Any]:
        return {"family": self.family, "replica": self.replica_id,
                "tasks": {t: s.status() for t, s in self.slots.items()},
                "batch_sizes": dict(self.batcher.sizes)}

    def models(self) -> dict[str, Any]:
        return {t: {**s.info, "version": s.version, "source": s.source} for t, s in self.slots.items() if s.ready}

    def _post(self) -> None:
        """Tell the board what this replica serves (best effort: the board is only for /models)."""
        import ray

        entry = {"family": self.family, "tasks": {t: s.status() for t, s in self.slots.items()}, "models": self.models()}
        for _ in range(2):
            try:
                self._board = self._board or board()
                ray.get(self._board.post.remote(self.replica_id, entry), timeout=5)
                return
            except Exception:  # died or never existed: ask again once
                self._board = None

    # -- rollout
    def refresh(self) -> list[str]:
        """Swap in any task whose `@champion` moved (the poller calls it); returns what changed."""
        changed = []
        for task, slot in list(self.slots.items()):
            try:
                mv = champion_version(slot.name)
            except NoChampion:
                continue  # keep serving what we have: a removed alias is not a reason to go dark
            except RegistryUnreachable as e:
                if slot.ready and not slot.reason:
                    self.slots[task] = TaskSlot(**{**slot.__dict__, "reason": f"{e}; serving v{slot.version}"})
                continue
            if str(mv.version) == slot.rejected:
                continue  # it failed to load once; a broken model does not heal by retrying
            if str(mv.version) == slot.version and slot.ready:
                if slot.reason:  # the registry is back
                    self.slots[task] = TaskSlot(**{**slot.__dict__, "reason": "", "source": "registry"})
                continue
            fresh = load_slot(task, slot.name, self.spec.predictor_path, self.cache_dir)
            if fresh.ready or not slot.ready:
                self.slots[task] = fresh  # one assignment: a request sees the old slot or the new one
                changed.append(f"{slot.name} v{slot.version} -> v{fresh.version}")
                log.info("%s: now serving v%s", slot.name, fresh.version)
            else:  # the new champion does not load: keep the old one and say so
                self.slots[task] = TaskSlot(**{**slot.__dict__, "reason": f"kept v{slot.version}: {fresh.reason}",
                                               "rejected": fresh.rejected})
        return changed

    def _poll(self) -> None:
        while not self._stop.wait(self.settings.poll_s):
            try:
                self.refresh()
            except Exception:
                log.exception("champion poll failed")
            self._post()

    def check_health(self) -> None:
        """Serve's health check: a dead poller means this replica would never see a new champion."""
        if not self._poller.is_alive():
            raise RuntimeError("the champion poller thread died")

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)
        if stop is not None:
            stop.set()


def _endpoint(owner: type, route: Any, handler: str, name: str) -> Any:
    """An async method `name` typed with the route's pydantic models, calling `handler`."""

    async def endpoint(self: Any, body: Any) -> Any:
        return await getattr(self, handler)(route.name, body)

    endpoint.__name__ = name
    endpoint.__qualname__ = f"{owner.__qualname__}.{name}"  # Serve binds `self` by qualname
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
         inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=route.request)],
        return_annotation=route.response,
    )
    return endpoint


def _bound_here(owner: type, name: str) -> Any:
    """`owner.name` as a function whose qualname is `owner`'s: Serve's FastAPI ingress binds
    `self` only to functions declared (by qualname) on the ingress class itself."""
    inherited = getattr(owner, name)

    async def method(self: Any) -> Any:
        return await inherited(self)

    method.__name__, method.__qualname__ = name, f"{owner.__qualname__}.{name}"
    setattr(owner, name, method)
    return method


def _deployment_options(settings: ServeSettings, replicas: int) -> dict[str, Any]:
    return {"num_replicas": replicas, "max_ongoing_requests": settings.max_ongoing_requests,
            "max_queued_requests": settings.max_queued_requests,
            "ray_actor_options": {"num_cpus": settings.replica_cpus},
            "logging_config": {"enable_access_log": settings.access_log}}


def build_family_app(spec: FamilyServeSpec, settings: ServeSettings) -> Any:
    """The Serve application of one family, to be run at route prefix `/<family>`."""
    app = _fastapi(f"quartet {spec.family}", settings, docs=False)
    cls = type(f"{spec.family.capitalize()}Server", (FamilyServer,), {})
    cls.__qualname__ = cls.__name__
    for route in spec.routes:
        method = _endpoint(cls, route, "answer", route.name)
        setattr(cls, route.name, method)
        app.post(f"/{route.name}", response_model=route.response, name=f"{spec.family}_{route.name}")(method)
    deployment = serve.deployment(name=spec.family, **_deployment_options(settings, settings.replicas(spec.family)))
    return deployment(serve.ingress(app)(cls)).bind(spec, settings)


# ----------------------------------------------------------------------------- gateway app
DEMO_PAGE = Path(__file__).with_name("demo") / "index.html"


class Gateway:
    """`/` (the demo page), `/health`, `/models` and the OpenAPI page of every route (the family
    apps answer them)."""

    def __init__(self, families: list[str], settings: ServeSettings, demo_scripts: dict[str, str] | None = None,
                 tasks: dict[str, list[str]] | None = None) -> None:
        if settings.loopback_only:
            bind_internal_grpc_to_loopback()
        self.families, self.settings, self.tasks = families, settings, tasks or {}
        self.demo_scripts = {f: js for f, js in (demo_scripts or {}).items() if js}
        self.page = DEMO_PAGE.read_text() if DEMO_PAGE.is_file() else ""

    async def demo_page(self) -> Any:
        from fastapi.responses import HTMLResponse

        if not self.page:
            return HTMLResponse("<p>the demo page is not installed; the API is at <a href=/docs>/docs</a></p>")
        return HTMLResponse(self.page)

    async def demo_panels(self) -> Any:
        """Which panels the page loads: the served families that declare one."""
        return {"panels": [{"family": f, "tasks": self.tasks.get(f, []), "script": f"/demo/{f}.js"}
                           for f in self.families if f in self.demo_scripts],
                "mlflow_ui": self.settings.mlflow_ui}

    async def demo_script(self, family: str) -> Any:
        from fastapi.responses import JSONResponse, Response

        if family not in self.demo_scripts:
            return JSONResponse(status_code=404, content={"detail": f"no demo panel for {family!r}"})
        return Response(self.demo_scripts[family], media_type="text/javascript")

    async def _family_status(self, family: str) -> dict[str, Any]:
        try:
            handle = serve.get_app_handle(family_app_name(family))
            return await asyncio.wait_for(handle.status.remote(), self.settings.health_timeout_s)
        except asyncio.TimeoutError:
            return {"error": f"no answer within {self.settings.health_timeout_s} s"}
        except Exception as e:
            return {"error": f"{type(e).__name__}: {str(e)[:200]}"}

    async def health(self) -> Any:
        from fastapi.responses import JSONResponse

        statuses = await asyncio.gather(*(self._family_status(f) for f in self.families))
        families = {}
        for family, st in zip(self.families, statuses):
            tasks = st.get("tasks", {})
            ready = sorted(t for t, s in tasks.items() if s["ready"])
            state = "ready" if tasks and len(ready) == len(tasks) else "degraded" if ready else "unavailable"
            families[family] = {"status": state, "ready": ready,
                                "unavailable": {t: s["reason"] for t, s in tasks.items() if not s["ready"]},
                                "notes": {t: s["reason"] for t, s in tasks.items() if s["ready"] and s["reason"]},
                                **({"error": st["error"]} if "error" in st else {}),
                                **({"batch_sizes": st["batch_sizes"]} if "batch_sizes" in st else {})}
        states = {f["status"] for f in families.values()}
        overall = "ok" if states == {"ready"} else "unavailable" if states == {"unavailable"} else "degraded"
        return JSONResponse(status_code=503 if overall == "unavailable" else 200,
                            content={"status": overall, "families": families})

    async def models(self) -> Any:
        from fastapi.responses import JSONResponse

        try:
            entries = await asyncio.wait_for(board().read.remote(3 * self.settings.poll_s + 10),
                                             self.settings.health_timeout_s)
        except Exception as e:  # the board restarting: a server-side condition, said as such
            return JSONResponse(status_code=503, content={"detail": f"replica reports unavailable ({type(e).__name__}); "
                                                                    "retry in a few seconds"})
        by_version: dict[tuple[str, str], dict[str, Any]] = {}
        unavailable: dict[str, str] = {}
        for e in sorted(entries, key=lambda e: e["replica"]):
            for m in e["models"].values():
                row = by_version.setdefault((m["name"], m["version"]), {k: v for k, v in m.items() if k != "source"}
                                            | {"replicas": []})
                row["replicas"].append({"id": e["replica"], "source": m["source"]})
            for task, st in e["tasks"].items():
                if not st["ready"]:
                    unavailable[f"quartet-{e['family']}-{task}"] = st["reason"]
        return {"models": list(by_version.values()), "unavailable": unavailable}

    async def not_routed(self, route: str, body: Any) -> Any:
        from fastapi.responses import JSONResponse

        return JSONResponse(status_code=503, content={"detail": "this family's app is not running"})


def build_gateway_app(specs: list[FamilyServeSpec], settings: ServeSettings) -> Any:
    """The app at `/`. It declares every family route too, so `/docs` shows the whole API; the
    proxy sends `/<family>/...` to the family's own app (longest prefix), so those declarations
    answer only when that app is missing (503)."""
    app = _fastapi("quartet", settings, docs=True)
    cls = type("QuartetGateway", (Gateway,), {})
    cls.__qualname__ = cls.__name__
    for path, name in (("/health", "health"), ("/models", "models"), ("/demo/panels.json", "demo_panels")):
        app.get(path)(_bound_here(cls, name))
    app.get("/", include_in_schema=False)(_bound_here(cls, "demo_page"))
    script = Gateway.demo_script

    async def demo_script(self: Any, family: str) -> Any:
        return await script(self, family)

    demo_script.__qualname__ = f"{cls.__qualname__}.demo_script"
    cls.demo_script = demo_script
    app.get("/demo/{family}.js", include_in_schema=False)(demo_script)
    for spec in specs:
        for route in spec.routes:
            method = _endpoint(cls, route, "not_routed", f"{spec.family}_{route.name}")
            setattr(cls, method.__name__, method)
            app.post(f"/{spec.family}/{route.name}", response_model=route.response, name=method.__name__)(method)
    deployment = serve.deployment(name="gateway", **_deployment_options(settings, 1))
    return deployment(serve.ingress(app)(cls)).bind([s.family for s in specs], settings,
                                                    {s.family: s.demo_js for s in specs},
                                                    {s.family: list(s.tasks) for s in specs})


def applications(specs: list[FamilyServeSpec], settings: ServeSettings) -> list[tuple[str, str, Any]]:
    """(app name, route prefix, app) of the gateway and every family."""
    apps = [(GATEWAY_APP, "/", build_gateway_app(specs, settings))]
    return apps + [(family_app_name(s.family), f"/{s.family}", build_family_app(s, settings)) for s in specs]


def start(apps: list[tuple[str, str, Any]], host: str, port: int) -> None:
    """Run the apps on host:port (127.0.0.1 by default); returns when every replica is ready."""
    serve.start(http_options={"host": host, "port": port})
    serve.run_many([serve.RunTarget(app, name=name, route_prefix=prefix) for name, prefix, app in apps])
