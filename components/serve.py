"""Ray Serve: one app, one deployment per family, each loading its tasks' `@champion` models.

Why this shape: the families differ in models but not in plumbing. The ingress (FastAPI, OpenAPI
at /docs) validates request bodies with each family's pydantic models and enforces the body
size limit; the family deployment batches requests (`@serve.batch`) and hands them to the
family's Predictor. Bad requests get 4xx JSON (`{"detail": ...}`), never a traceback.
"""

from __future__ import annotations

import hmac
import inspect
import logging
import os
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import serve

from components.family import RequestError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FamilyServeSpec:
    """What the app needs of a family: its name, Predictor import path, tasks and routes."""

    family: str
    predictor_path: str
    tasks: tuple[str, ...]
    routes: tuple[Any, ...]  # components.family.Route


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
        from fastapi.responses import JSONResponse

        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse(status_code=413, content={
                "detail": f"request body of {int(length)} bytes exceeds {self.max_bytes}"})
            return await response(scope, receive, send)
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
                response = JSONResponse(status_code=413, content={"detail": f"request body exceeds {self.max_bytes} bytes"})
                await response(scope, receive, send)

        await self.app(scope, limited, guarded_send)


def _error(status: int, detail: Any) -> dict[str, Any]:
    return {"_error": status, "detail": detail}


class FamilyModels:
    """Serve deployment body: loads champions of every task of one family; answers batches."""

    def __init__(
        self, spec: FamilyServeSpec, tracking_uri: str, max_batch_size: int, batch_wait_timeout_s: float,
        loopback_only: bool = True,
    ):
        import mlflow
        from mlflow.exceptions import MlflowException

        from components.track import download_champion, load_predictor, registered_name

        if loopback_only:
            bind_internal_grpc_to_loopback()
        mlflow.set_tracking_uri(tracking_uri)
        self.family = spec.family
        self.task_maps = {r.name: dict(r.task_map) for r in spec.routes}
        self.predictors: dict[str, Any] = {}
        self.models: dict[str, dict[str, Any]] = {}
        self.missing: dict[str, str] = {}
        cache = Path(tempfile.mkdtemp(prefix=f"quartet-serve-{spec.family}-"))
        for task in spec.tasks:
            name = registered_name(spec.family, task)
            try:
                model_dir, version, info = download_champion(name, cache / task)
                self.predictors[task] = load_predictor(spec.predictor_path, model_dir, model_version=version)
                self.models[task] = info
            except (MlflowException, FileNotFoundError) as e:
                self.missing[task] = f"{name}@champion not available: {str(e).splitlines()[0][:200]}"
                log.warning("%s", self.missing[task])
        self.handle.set_max_batch_size(max_batch_size)
        self.handle.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def served_tasks(self, route: str) -> list[str]:
        """Tasks a client may name on `route` (aliases included)."""
        aliases = {alias for alias, task in self.task_maps.get(route, {}).items() if task in self.predictors}
        return sorted(set(self.predictors) | aliases)

    def info(self) -> dict[str, Any]:
        return {"family": self.family, "models": self.models, "missing": self.missing}

    @staticmethod
    def _answer_group(method: Any, bodies: list[Any]) -> list[dict[str, Any]]:
        """`method(list of requests) -> list of responses`, e.g. Predictor.predict_batch."""
        try:
            return [r.model_dump() for r in method(bodies)]
        except Exception:
            # One bad request must not fail its batch-mates: answer them one by one.
            out = []
            for body in bodies:
                try:
                    out.append(method([body])[0].model_dump())
                except RequestError as e:
                    out.append(_error(422, str(e)))
                except Exception as e:  # a bug, not the client's fault: 500 for this request only
                    log.exception("prediction failed")
                    out.append(_error(500, f"prediction failed: {type(e).__name__}"))
            return out

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
    async def handle(self, items: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        """items: (route name, validated request body). Grouped by (route, task), one pass each."""
        results: list[dict[str, Any] | None] = [None] * len(items)
        groups: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, (route, body) in enumerate(items):
            task = self.task_maps.get(route, {}).get(body.task, body.task)
            if task not in self.predictors:
                results[i] = _error(404, {"message": f"unknown {self.family} task {body.task!r}",
                                          "served_tasks": self.served_tasks(route)})
            else:
                groups[(route, task)].append(i)
        for (route, task), idx in groups.items():
            # Route "predict" -> Predictor.predict_batch; another route "x" -> Predictor.x_batch.
            method = getattr(self.predictors[task], f"{route}_batch")
            answers = self._answer_group(method, [items[i][1] for i in idx])
            for i, a in zip(idx, answers):
                results[i] = a
        return results  # type: ignore[return-value]


def _endpoint(owner: type, family: str, route: Any) -> Any:
    """An ingress method `POST /<family>/<route>` typed with the family's pydantic models."""

    async def endpoint(self: Any, body: Any) -> Any:
        return await self.call(family, route.name, body)

    endpoint.__name__ = f"{family}_{route.name}"
    endpoint.__qualname__ = f"{owner.__qualname__}.{family}_{route.name}"  # Serve binds `self` by qualname
    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD),
            inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=route.request),
        ],
        return_annotation=route.response,
    )
    return endpoint


def build_app(
    specs: list[FamilyServeSpec],
    tracking_uri: str,
    replica_cpus: float = 0.25,
    max_body_bytes: int = 2_000_000,
    max_batch_size: int = 16,
    batch_wait_timeout_s: float = 0.005,
    loopback_only: bool = True,
    require_api_key: bool = False,
) -> Any:
    """The Serve application: ingress + one FamilyModels deployment per family.

    `loopback_only` (serving on 127.0.0.1) also keeps Serve's internal gRPC on loopback; leave it
    off on a multi-node cluster, where replicas talk across machines. `require_api_key` (any
    address beyond loopback): every request needs `Authorization: Bearer <QUARTET_API_KEY>`,
    else 401; the ingress refuses to start without a key."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    app = FastAPI(
        title="quartet",
        description="Champion models of the Hands-On ML ch. 15-18 families (contract: DESIGN.md section 5).",
        version="1",
    )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Any:
        # The default handler echoes the input back, which fails on NaN (not JSON): keep loc + msg.
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

    keys: dict[str, str | None] = {}

    @app.middleware("http")
    async def check_api_key(request: Request, call_next: Any) -> Any:
        if require_api_key:
            if "key" not in keys:
                keys["key"] = api_key_from_env()
            key = keys["key"]
            if not key or not authorized(request.headers.get("authorization"), key):
                return JSONResponse(status_code=401, content={"detail": "missing or wrong API key (Authorization: Bearer ...)"},
                                    headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    class Ingress:
        def __init__(self, handles: dict[str, Any]) -> None:
            if loopback_only:
                bind_internal_grpc_to_loopback()
            if require_api_key and not api_key_from_env():
                raise RuntimeError(f"serving beyond loopback needs an API key: set {API_KEY_ENV} (or {API_KEY_FILE_ENV}) "
                                   "where Ray runs")
            self.handles = handles

        async def call(self, family: str, route: str, body: Any) -> Any:
            result = await self.handles[family].handle.remote((route, body))
            if "_error" in result:
                raise HTTPException(status_code=result["_error"], detail=result["detail"])
            return result

        async def health(self) -> dict[str, Any]:
            infos = {f: await h.info.remote() for f, h in self.handles.items()}
            return {"status": "ok", "served": {f: sorted(i["models"]) for f, i in infos.items()}}

        async def models(self) -> dict[str, Any]:
            infos = {f: await h.info.remote() for f, h in self.handles.items()}
            return {"models": [m for i in infos.values() for m in i["models"].values()],
                    "missing": {f: i["missing"] for f, i in infos.items() if i["missing"]}}

    app.get("/health")(Ingress.health)
    app.get("/models")(Ingress.models)
    for spec in specs:
        for route in spec.routes:
            method = _endpoint(Ingress, spec.family, route)
            setattr(Ingress, method.__name__, method)
            app.post(f"/{spec.family}/{route.name}", response_model=route.response, name=method.__name__)(method)

    ingress = serve.deployment(name="ingress", ray_actor_options={"num_cpus": replica_cpus})(serve.ingress(app)(Ingress))
    handles = {}
    for spec in specs:
        deployment = serve.deployment(name=spec.family, ray_actor_options={"num_cpus": replica_cpus})(FamilyModels)
        handles[spec.family] = deployment.bind(spec, tracking_uri, max_batch_size, batch_wait_timeout_s, loopback_only)
    return ingress.bind(handles)


def start(app: Any, host: str, port: int, name: str = "quartet") -> Any:
    """Run the app on host:port (127.0.0.1 by default); returns when every replica is ready."""
    serve.start(http_options={"host": host, "port": port})
    return serve.run(app, name=name, route_prefix="/", blocking=False)
