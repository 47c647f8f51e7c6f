"""The serving pieces without Ray: the batcher, the champion cache, atomic promotion (real MLflow
stores: sqlite files, and an MLflow that cannot be reached: a closed loopback port)."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from components.serve import Batcher, NoChampion, RegistryUnreachable, champion_version, fetch_champion


@pytest.fixture(autouse=True)
def _own_tracking_uri(monkeypatch: pytest.MonkeyPatch):
    """mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI: undo it, so later tests' subprocesses
    do not find this test's store."""
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield
    mlflow.set_tracking_uri(None)


def _run(coro):
    return asyncio.run(coro)


def test_batcher_runs_a_lone_request_at_once_and_batches_what_queues() -> None:
    seen: list[list[int]] = []
    release = threading.Event()

    def run_batch(items: list[int]) -> list[int]:
        seen.append(list(items))
        if len(seen) == 1:
            release.wait(5)  # hold the first batch so the others queue behind it
        return [i * 10 for i in items]

    async def main() -> list[int]:
        b = Batcher(run_batch, 8, ThreadPoolExecutor(1))
        first = asyncio.ensure_future(b.submit(0))
        await asyncio.sleep(0.05)
        rest = [asyncio.ensure_future(b.submit(i)) for i in range(1, 12)]
        await asyncio.sleep(0.05)
        release.set()
        return [await first] + [await r for r in rest]

    answers = _run(main())
    assert answers == [i * 10 for i in range(12)]
    assert seen[0] == [0]  # alone: it did not wait for company
    assert [len(x) for x in seen[1:]] == [8, 3]  # queued while the first ran: batched, capped at 8


def test_batcher_fails_every_waiter_of_a_failed_batch_and_keeps_serving() -> None:
    def run_batch(items: list[int]) -> list[int]:
        if -1 in items:
            raise RuntimeError("boom")
        return items

    async def main() -> tuple[list, int]:
        b = Batcher(run_batch, 4, ThreadPoolExecutor(1))
        bad = await asyncio.gather(b.submit(-1), return_exceptions=True)
        return bad, await b.submit(5)

    bad, good = _run(main())
    assert isinstance(bad[0], RuntimeError) and good == 5


# ----------------------------------------------------------------------------- champion cache
def _registry(tmp: Path, name: str = "quartet-x-y") -> str:
    """A sqlite MLflow store with one registered version of a fake model dir, alias @champion."""
    import mlflow
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    exp = mlflow.create_experiment("e", artifact_location=(tmp / "artifacts").as_uri())
    src = tmp / "src" / "artifacts" / "model_dir"
    src.mkdir(parents=True)
    (src / "config.json").write_text(json.dumps({"model": "fake"}))
    with mlflow.start_run(experiment_id=exp) as run:
        mlflow.log_metric("test_mse", 0.5)
        mlflow.log_artifacts(str(tmp / "src"), "model")
    client = MlflowClient()
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id,
                                     tags={"quartet.metric": "test_mse"})
    client.set_registered_model_alias(name, "champion", mv.version)
    return uri


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens here once the socket is closed


def test_champion_is_cached_by_version_and_served_from_cache_when_mlflow_is_unreachable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow

    uri = _registry(tmp_path)
    cache = tmp_path / "cache"
    got = fetch_champion("quartet-x-y", cache)
    assert got.source == "registry" and got.version == "1" and (got.model_dir / "config.json").is_file()
    assert got.info["test_metrics"] == {"test_mse": 0.5}
    assert (cache / "quartet-x-y" / "v1" / "model_dir").is_dir()

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    mlflow.set_tracking_uri(f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(RegistryUnreachable):
        champion_version("quartet-x-y")
    cached = fetch_champion("quartet-x-y", cache)
    assert cached.source == "cache" and cached.version == "1" and "unreachable" in cached.note
    with pytest.raises(RegistryUnreachable):  # nothing cached for this one: unavailable, not "no champion"
        fetch_champion("quartet-other", cache)
    mlflow.set_tracking_uri(uri)
    with pytest.raises(NoChampion):
        champion_version("quartet-other")


# ----------------------------------------------------------------------------- atomic promotion
def _register(uri: str, model_uri: str, value: float, start_at: float, out: "multiprocessing.Queue") -> None:
    import mlflow

    from components import track

    mlflow.set_tracking_uri(uri)
    time.sleep(max(0.0, start_at - time.time()))  # all processes start their register together
    p = track.register_and_promote(model_uri, "quartet-x-y", "test_mse", value, "min", "ts", {})
    out.put((p.version, value, p.promoted, p.previous_value))


def test_concurrent_registers_cannot_overwrite_a_better_champion(tmp_path: Path) -> None:
    """Four processes register at the same moment; each decision is made on the champion of its
    time, so the final champion is the best value and every promotion beat its predecessor."""
    import mlflow
    from mlflow import MlflowClient

    uri = _registry(tmp_path)
    client = MlflowClient()
    client.set_model_version_tag("quartet-x-y", "1", "quartet.metric_value", "0.9")
    client.set_model_version_tag("quartet-x-y", "1", "quartet.test_set", "ts")
    source = client.get_model_version("quartet-x-y", "1").source
    values = [0.4, 0.2, 0.3, 0.1, 0.25, 0.15]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 8  # after every process has imported MLflow
    procs = [ctx.Process(target=_register, args=(uri, source, v, start_at, out)) for v in values]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    mlflow.set_tracking_uri(uri)
    champion = client.get_model_version_by_alias("quartet-x-y", "champion")
    assert float(champion.tags["quartet.metric_value"]) == min(values)
    for version, value, promoted, previous in results:
        tag = client.get_model_version("quartet-x-y", version).tags["quartet.promoted"]
        assert tag == str(promoted).lower()  # never left "pending"
        if promoted:
            assert previous is None or value < previous
        else:
            assert previous is not None and value >= previous
    assert not [m.name for m in client.search_registered_models() if m.name.endswith("promotion-lock")]
