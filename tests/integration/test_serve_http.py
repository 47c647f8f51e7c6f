"""`quartet serve` for real: Ray Serve on 127.0.0.1, HTTP requests against the DESIGN.md § 5 contract."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import numpy as np
import pytest
import requests

from tests.conftest import LOOPBACK, listening_addresses, post

pytestmark = pytest.mark.integration


def test_health_models_and_docs(server) -> None:
    url, _ = server
    from families import families

    # the fixture also trains the extra tasks (`quartet task rl Breakout`), so the app serves them
    expected = {f.name: sorted(f.all_tasks) for f in families().values()}
    health = requests.get(url + "/health", timeout=10).json()
    assert health["status"] == "ok"
    assert {f: h["ready"] for f, h in health["families"].items()} == expected
    assert all(h["status"] == "ready" and not h["unavailable"] for h in health["families"].values())
    models = requests.get(url + "/models", timeout=10).json()["models"]
    assert {m["name"] for m in models} == {f"quartet-{f}-{t}" for f, tasks in expected.items() for t in tasks}
    assert all(m["alias"] == "champion" and m["test_metrics"] and m["replicas"] for m in models)
    rl = [m for m in models if m["name"].startswith("quartet-rl-")]
    assert all(len(m["replicas"]) == 2 for m in rl)  # tiny profile: two rl replicas, each reports its version
    assert all(m["experiment_id"] for m in models)  # what the demo page links a run with
    assert requests.get(url + "/docs", timeout=10).status_code == 200
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html") and "<script" in page.text
    panels = requests.get(url + "/demo/panels.json", timeout=10).json()
    assert {p["family"]: sorted(p["tasks"]) for p in panels["panels"]} == expected
    assert panels["mlflow_ui"].startswith("http://127.0.0.1:")
    for p in panels["panels"]:
        script = requests.get(url + p["script"], timeout=10)
        assert script.status_code == 200 and f'register("{p["family"]}"' in script.text.replace("'", '"')
    missing = requests.get(url + "/demo/nope.js", timeout=10)
    assert missing.status_code == 404 and "no demo panel" in missing.json()["detail"]
    spec = requests.get(url + "/openapi.json", timeout=10).json()
    routes = {f"/{f.name}/{r.name}" for f in families().values() for r in f.routes}
    assert routes <= set(spec["paths"]), routes - set(spec["paths"])


def test_forecasts_univariate_and_multivariate(server, trained_repo: Path) -> None:
    url, _ = server
    t = np.linspace(0, 1, 50)
    series = (0.5 * np.sin((t - 0.3) * 15)).round(4).tolist()
    r = post(url + "/forecaster/predict", {"task": "synthetic", "series": [series, series], "horizon": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task"] == "synthetic" and body["model_version"] == "1"
    assert np.shape(body["forecast"]) == (2, 10) and body["forecast"][0] == body["forecast"][1]
    days = [[250000.0 + 1000 * i, 25.0, 0.0, float(i % 7 >= 5)] for i in range(56)]
    future = [[25.0, 0.0, float((56 + i) % 7 >= 5)] for i in range(14)]  # each forecast day's weather, flags
    r = post(url + "/forecaster/predict", {"task": "vic_elec", "series": [days], "horizon": 14, "future": [future]})
    assert r.status_code == 200, r.text
    forecast = np.asarray(r.json()["forecast"])
    assert forecast.shape == (1, 14) and 100_000 < forecast.mean() < 500_000  # data units (MW summed)


def test_forecasts_come_with_prediction_intervals_and_bad_ones_are_422(server) -> None:
    url, _ = server
    series = [float(np.sin(i / 5)) for i in range(50)]
    r = post(url + "/forecaster/predict", {"task": "synthetic", "series": [series], "horizon": 10, "intervals": [0.8, 0.95]})
    assert r.status_code == 200, r.text
    body = r.json()
    point = np.asarray(body["forecast"])
    by_level = {i["level"]: (np.asarray(i["lower"]), np.asarray(i["upper"])) for i in body["intervals"]}
    assert set(by_level) == {0.8, 0.95} and by_level[0.8][0].shape == point.shape == (1, 10)
    assert (by_level[0.95][0] < by_level[0.8][0]).all() and (by_level[0.8][0] < point).all()
    assert (point < by_level[0.8][1]).all() and (by_level[0.8][1] < by_level[0.95][1]).all()
    days = [[250000.0, 25.0, 0.0, 0.0]] * 56
    for bad, why in [({"task": "synthetic", "series": [series], "horizon": 10, "intervals": [1.5]}, "less than 1"),
                     ({"task": "synthetic", "series": [series], "horizon": 10, "intervals": [0.9999]}, "calibration windows"),
                     ({"task": "synthetic", "series": [series], "horizon": 10, "intervals": [0.8] * 6}, "at most 5"),
                     ({"task": "vic_elec", "series": [days], "horizon": 14}, "needs `future`"),
                     ({"task": "vic_elec", "series": [days], "horizon": 14, "future": [[[25.0, 0.0]] * 14]}, "3 values each")]:
        r = post(url + "/forecaster/predict", bad)
        assert r.status_code == 422 and why in r.text, (bad, r.status_code, r.text)


def test_concurrent_requests_are_batched_and_answered(server) -> None:
    url, _ = server
    series = [[float(np.sin(i / 5 + k)) for i in range(50)] for k in range(32)]

    def forecaster_batches() -> dict[int, int]:
        sizes = requests.get(url + "/health", timeout=10).json()["families"]["forecaster"]["batch_sizes"]
        return {int(k): v for k, v in sizes.items()}

    single = [post(url + "/forecaster/predict", {"task": "synthetic", "series": [s], "horizon": 5}) for s in series[:2]]
    before = forecaster_batches()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda s: post(url + "/forecaster/predict", {"task": "synthetic", "series": [s], "horizon": 5}),
                                series * 4))
    assert all(a.status_code == 200 for a in answers)
    for one, batched in zip(single, answers):
        np.testing.assert_allclose(one.json()["forecast"], batched.json()["forecast"], rtol=1e-5)
    after = forecaster_batches()
    grown = {size: n - before.get(size, 0) for size, n in after.items() if n > before.get(size, 0)}
    assert max(grown) > 1, f"no batch of more than one request formed under 16 concurrent clients: {grown}"
    assert sum(size * n for size, n in grown.items()) == len(answers)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"task": "synthetic", "series": [[0.1] * 20], "horizon": 11}, 422, "exceeds the 10 steps"),
        ({"task": "synthetic", "series": [[0.1, 0.2]], "horizon": 2}, 422, "outside"),
        ({"task": "synthetic", "series": [[[0.1, 2.0]] * 20], "horizon": 2}, 422, "per time step"),
        ({"task": "synthetic", "series": [[0.1] * 20], "horizon": 0}, 422, "greater than 0"),
        ({"task": "synthetic", "series": [], "horizon": 2}, 422, "at least 1"),
        ({"task": "synthetic", "horizon": 2}, 422, "missing"),
        ('{"task": "synthetic", "series": [[0.1, NaN, 0.3, 0.4]], "horizon": 2}', 422, "finite number"),
        ({"task": "synthetic", "series": [[1e39] * 20], "horizon": 2}, 422, "less than or equal"),  # beyond float32
        ({"task": "elsewhere", "series": [[0.1] * 20], "horizon": 2}, 404, "served_tasks"),
        ("not json", 422, "json"),
    ],
)
def test_bad_requests_get_4xx_json(server, body, status: int, needle: str) -> None:
    url, _ = server
    r = post(url + "/forecaster/predict", body)
    assert r.status_code == status, r.text
    assert needle in json.dumps(r.json()["detail"]).lower() or needle in json.dumps(r.json()["detail"])


def test_oversized_body_gets_413(server) -> None:
    url, _ = server
    big = {"task": "synthetic", "series": [[0.123456] * 2000] * 256, "horizon": 2}
    r = post(url + "/forecaster/predict", big)
    assert r.status_code == 413 and "exceeds" in r.json()["detail"]


def test_every_listener_is_on_loopback(server) -> None:
    _, proc = server
    listeners = listening_addresses(proc)
    assert listeners, "found no listening sockets of the serve process tree"
    exposed = [(ip, name) for ip, name in listeners if ip not in LOOPBACK]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_chunked_body_is_cut_off_at_the_limit(server) -> None:
    """No Content-Length: the body is counted as it streams in and refused past the limit."""
    url, _ = server
    sent = {"bytes": 0}

    def chunks():
        yield b'{"task": "synthetic", "series": [['
        for _ in range(4000):  # ~8 MB if all of it were read
            sent["bytes"] += 2000
            yield b"0.12345678, " * 166 + b"0.1,"
        yield b"0.1]], \"horizon\": 2}"

    try:
        r = requests.post(url + "/forecaster/predict", data=chunks(), headers={"content-type": "application/json"},
                          timeout=60)
    except requests.ConnectionError:  # the server may close the connection once it has answered
        pytest.fail("the server dropped the connection instead of answering 413")
    assert r.status_code == 413, r.text[:300]
    assert "exceeds" in r.json()["detail"]


@pytest.mark.parametrize(
    ("route", "body", "needle"),
    [
        ("/generative/reconstruct", {"task": "fashion-mnist", "images": ["data:"]}, "data: url"),
        ("/generative/reconstruct", {"task": "fashion-mnist", "images": ["data:image/png;base64"]}, "data: url"),
        ("/translator/translate", '{"task": "en-es", "texts": ["ok", "\\ud800"]}', "unicode"),
        ("/rl/act", {"task": "CartPole-v1", "observations": [[3.3e38, -3.3e38, 3.3e38, 3.3e38]]}, "not finite"),
    ],
)
def test_inputs_a_fuzzer_found_get_422_not_500(server, route: str, body, needle: str) -> None:
    url, _ = server
    r = post(url + route, body)
    assert r.status_code == 422, r.text[:500]
    assert needle in json.dumps(r.json()["detail"]).lower()


def test_png_with_a_corrupt_chunk_gets_422(server) -> None:
    import base64
    import io

    from PIL import Image

    url, _ = server
    buf = io.BytesIO()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(buf, format="PNG")
    raw = bytearray(buf.getvalue())
    raw[40:60] = b"\xff" * 20  # inside the second chunk (after the 33-byte signature + IHDR)
    r = post(url + "/generative/reconstruct", {"task": "fashion-mnist", "images": [base64.b64encode(bytes(raw)).decode()]})
    assert r.status_code == 422, r.text[:500]
    assert "images[0]" in json.dumps(r.json()["detail"])


def test_property_based_fuzz_of_the_openapi_schema_gets_no_5xx(server) -> None:
    """schemathesis draws valid and invalid bodies for every route of /openapi.json (half of the
    valid ones name a served task, to reach the models): >= 2,000 cases, every answer 4xx/2xx JSON.
    /rl/episode renders a whole episode per valid case (up to ~2 s): 12 cases of it. 150 cases per
    operation and mode: 13 operations since the demo page's routes came (210 took 145 s)."""
    from bench.serve import fuzz

    url, _ = server
    not_json: list[str] = []

    def json_answer(response) -> None:
        if response.status_code >= 400 and "detail" not in (response.json() if _is_json(response) else {}):
            not_json.append(f"{response.status_code} {response.text[:200]}")

    result = fuzz(url, cases_per_operation=150, seed=11, on_case=json_answer, cases_for={"/rl/episode": 12})
    assert result["cases"] >= 2000, result["by_status"]
    assert result["server_errors"] == 0, result["first_server_errors"]
    assert not not_json, not_json[:5]


def _is_json(response) -> bool:
    try:
        response.json()
        return True
    except ValueError:
        return False


def test_quartet_status_reports_the_pipeline_the_champions_and_the_served_app(server, trained_repo: Path) -> None:
    from families import families
    from tests.conftest import BIN, QUARTET, run

    url, _ = server
    port = url.rsplit(":", 1)[1]
    status = json.loads(run([*QUARTET, "status", "--json", "--port", port], cwd=trained_repo, timeout=180).stdout)
    dvc = json.loads(run([str(BIN / "dvc"), "status", "--json"], cwd=trained_repo, timeout=120).stdout)
    assert status["stale_error"] == "" and set(status["stale_stages"]) == set(dvc)  # what dvc would rerun
    assert status["tracking_uri"].startswith("sqlite:///") and str(trained_repo) in status["tracking_uri"]
    expected = {(f.name, t) for f in families().values() for t in f.all_tasks}
    assert {(c["family"], c["task"]) for c in status["champions"]} == expected
    assert all(c["version"] and isinstance(c["value"], float) and c["metric"].startswith("test_")
               for c in status["champions"]), status["champions"]
    assert status["served"]["status"] == "ok" and status["served_url"] == url
    text = run([*QUARTET, "status", "--port", "1"], cwd=trained_repo, timeout=180).stdout
    assert "pipeline         unknown" not in text and "not running at http://127.0.0.1:1" in text
