"""The demo page at GET / in a real browser: headless Chromium (tests/browser.py) loads it from
`quartet serve`, uses each family's panel and the Models tab, asserts what they show, and saves a
screenshot of each (QUARTET_SCREENSHOTS=docs/screenshots refreshes the README's).

Every panel calls the app's public JSON routes; where a panel shows a number a route returns (an
episode's return, the n-best list) the test asks the route too and compares. The page must load
nothing from outside the app (no CDN, no fonts): every request the browser makes is checked.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.browser import chromium, screenshot_dir
from tests.conftest import post

pytestmark = pytest.mark.integration

WAIT_MS = 30_000  # one route call (a beam search, a rendered episode) on a loaded CI machine


@pytest.fixture(scope="module")
def app_url(request: pytest.FixtureRequest) -> str:
    """The served app: the session's `quartet serve` (QUARTET_DEMO_URL points the tests at one
    already running instead, to iterate on the page)."""
    return os.environ.get("QUARTET_DEMO_URL") or request.getfixturevalue("server")[0]


@pytest.fixture(scope="module")
def browser_page(app_url: str) -> Iterator[object]:
    with chromium(viewport=(1280, 1000), timeout_ms=WAIT_MS) as page:
        yield page


@pytest.fixture
def page(browser_page, app_url: str) -> Iterator[object]:
    """The page freshly loaded, its panels registered; fails the test on a JavaScript error or on
    a request that leaves the app."""
    errors: list[str] = []
    foreign: list[str] = []

    def on_request(req) -> None:
        if not req.url.startswith((app_url + "/", "data:", "blob:")):
            foreign.append(req.url)

    def on_error(e) -> None:
        errors.append(str(e))

    browser_page.on("pageerror", on_error)
    browser_page.on("request", on_request)
    try:
        browser_page.goto(app_url + "/")
        browser_page.wait_for_selector("body[data-ready=true]")
        yield browser_page
        assert not errors, f"JavaScript errors on the page: {errors}"
        assert not foreign, f"the page fetched from outside the app: {foreign}"
    finally:
        browser_page.remove_listener("request", on_request)
        browser_page.remove_listener("pageerror", on_error)


def panel(page, family: str):
    """Click the family's tab; its panel (a Locator)."""
    page.get_by_test_id(f"tab-{family}").click()
    root = page.get_by_test_id(f"panel-{family}")
    root.wait_for(state="visible")
    return root


def shot(page, tmp_path: Path, name: str, artifact_only: bool = False) -> None:
    """Save demo-<name>.png (under $QUARTET_SCREENSHOTS; `artifact_only`: the test's tmp dir only)."""
    out = tmp_path / "screenshots" if artifact_only else screenshot_dir(tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"demo-{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5_000


def set_value(locator, value: object) -> None:
    """Set an input (number, range, select) the way a user would, firing input and change."""
    locator.evaluate("(e, v) => { e.value = String(v); e.dispatchEvent(new Event('input', {bubbles: true}));"
                     " e.dispatchEvent(new Event('change', {bubbles: true})); }", value)


def points(path_d: str) -> int:
    return path_d.count("M") + path_d.count("L")


def test_page_lists_every_served_family(page, app_url: str) -> None:
    served = requests.get(app_url + "/demo/panels.json", timeout=10).json()["panels"]
    tabs = page.locator("nav [role=tab]")
    assert tabs.evaluate_all("ts => ts.map(t => t.dataset.testid)") == [f"tab-{p['family']}" for p in served] + ["tab-models"]
    script = requests.get(app_url + served[0]["script"], timeout=10)
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "quartet.register" in script.text


def test_forecaster_panel_draws_a_test_window_its_forecast_and_intervals(page, app_url: str, tmp_path: Path) -> None:
    root = panel(page, "forecaster")
    chart = root.get_by_test_id("fc-chart")
    chart.locator("path.history").wait_for()  # example 0 loads on the first render
    set_value(root.get_by_test_id("fc-task"), "synthetic")
    example = post(app_url + "/forecaster/example", {"task": "synthetic", "index": 1}).json()
    h = max(1, example["horizon"] - 1)  # the slider below the trained horizon
    set_value(root.get_by_test_id("fc-example"), 1)
    set_value(root.get_by_test_id("fc-horizon"), h)
    root.get_by_test_id("fc-run").click()
    forecast = chart.locator("path.forecast")
    forecast.wait_for()
    assert points(forecast.get_attribute("d")) == h
    assert points(chart.locator("path.history").get_attribute("d")) == len(example["series"])
    assert points(chart.locator("path.actual").get_attribute("d")) == example["horizon"] + 1  # from the last input step
    for level in example["interval_levels"]:
        band = chart.locator(f"path.band-{round(level * 100)}")
        assert band.count() == 1 and points(band.get_attribute("d")) == 2 * h
    assert example["interval_levels"], "the tiny synthetic model is calibrated: the page should draw its bands"
    summary = root.get_by_test_id("fc-summary").inner_text()
    assert f"horizon {h}" in summary and "test window 1 of" in summary, summary
    assert not root.get_by_test_id("error").count()
    # the page sent what a client should: the same request answers the forecast it drew
    direct = post(app_url + "/forecaster/predict", {"task": "synthetic", "series": [[r[0] for r in example["series"]]],
                                                     "horizon": h, "intervals": example["interval_levels"]}).json()
    drawn = forecast.evaluate("p => [...p.ownerSVGElement.querySelectorAll('circle.forecast-point')].length")
    assert drawn == len(direct["forecast"][0]) == h
    shot(page, tmp_path, "forecaster")
    # a model with known-ahead features (vic_elec's weather and calendar) below its trained horizon
    if root.get_by_test_id("fc-task").locator("option[value=vic_elec]").count():
        set_value(root.get_by_test_id("fc-task"), "vic_elec")
        set_value(root.get_by_test_id("fc-example"), 0)
        root.get_by_test_id("fc-run").click()
        page.wait_for_function("() => document.querySelector('[data-testid=fc-summary]').textContent.startsWith('vic_elec')"
                               " || document.querySelector('[data-testid=panel-forecaster] [data-testid=error]')")
        assert not root.get_by_test_id("error").count(), root.get_by_test_id("error").inner_text()
        horizon = int(root.get_by_test_id("fc-horizon").get_attribute("max"))
        set_value(root.get_by_test_id("fc-horizon"), horizon // 2)
        root.get_by_test_id("fc-run").click()
        page.wait_for_function(f"() => /horizon {horizon // 2} /.test(document.querySelector('[data-testid=fc-summary]').textContent)"
                               " || document.querySelector('[data-testid=panel-forecaster] [data-testid=error]')")
        assert not root.get_by_test_id("error").count(), root.get_by_test_id("error").inner_text()
        assert points(chart.locator("path.forecast").get_attribute("d")) == horizon // 2


def test_translator_panel_shows_the_n_best_list_and_the_attention_heat_map(page, app_url: str, tmp_path: Path) -> None:
    root = panel(page, "translator")
    text, beam, n_best = "April 22, 2019", 3, 2
    set_value(root.get_by_test_id("tr-task"), "dates")
    root.get_by_test_id("tr-text").fill(text)
    root.get_by_test_id("tr-beam").fill(str(beam))
    root.get_by_test_id("tr-nbest").fill(str(n_best))
    root.get_by_test_id("tr-run").click()
    items = root.get_by_test_id("tr-nbest-list").locator("li")
    items.first.wait_for()
    expected = post(app_url + "/translator/translate", {"task": "dates", "texts": [text], "beam_width": beam,
                                                         "n_best": n_best, "return_attention": True}).json()["translations"][0]
    assert items.count() == len(expected["n_best"]) == n_best
    assert [li.locator(".hyp").inner_text() for li in items.all()] == [h["text"] for h in expected["n_best"]]
    rows, cols = len(expected["attention"]), len(expected["attention"][0])
    heat = root.get_by_test_id("tr-attention")
    assert heat.locator("rect.cell").count() == rows * cols
    assert heat.locator("text.src-token").count() == cols and heat.locator("text.out-token").count() == rows
    if expected.get("source_tokens"):
        assert heat.locator("text.src-token").all_text_contents()[:3] == [t if t != " " else "␣" for t in expected["source_tokens"][:3]]
    generate = root.get_by_test_id("tr-generate")
    if generate.count():  # the char-RNN task is served: its sub-panel continues a prompt
        root.get_by_test_id("tr-nchars").fill("40")
        generate.click()
        page.wait_for_function("() => document.querySelector('[data-testid=tr-generated] strong')")
        assert root.get_by_test_id("tr-generated").inner_text().strip()
    assert not root.get_by_test_id("error").count()
    shot(page, tmp_path, "translator")


def test_generative_panel_samples_a_grid_and_scores_a_drawing_and_an_upload(page, tmp_path: Path) -> None:
    from PIL import Image, ImageDraw

    root = panel(page, "generative")
    root.get_by_test_id("gen-seed").fill("3")
    root.get_by_test_id("gen-n").fill("6")
    root.get_by_test_id("gen-run").click()
    images = root.get_by_test_id("gen-grid").locator("img")
    images.first.wait_for()
    assert images.count() == 6
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=gen-grid] img')].every(i => i.complete)")
    assert images.evaluate_all("is => is.map(i => i.naturalWidth)") == [28] * 6
    # draw a stroke, reconstruct it
    pad = root.get_by_test_id("gen-draw")
    pad.scroll_into_view_if_needed()
    box = pad.bounding_box()
    page.mouse.move(box["x"] + 80, box["y"] + 60)
    page.mouse.down()
    for x, y in ((200, 60), (200, 220), (80, 220), (80, 60)):
        page.mouse.move(box["x"] + x, box["y"] + y, steps=5)
    page.mouse.up()
    reconstruct = root.get_by_test_id("gen-reconstruct")
    reconstruct.click()
    score = root.get_by_test_id("gen-score")
    score.wait_for()
    drawn = float(score.inner_text())
    assert math.isfinite(drawn) and drawn >= 0
    bright = root.get_by_test_id("gen-input").evaluate(
        "c => { const d = c.getContext('2d').getImageData(0, 0, 28, 28).data; let n = 0;"
        " for (let i = 0; i < d.length; i += 4) n += d[i] > 128; return n; }")
    assert 20 < bright < 700, bright  # the square's outline reached the 28x28 input
    assert root.get_by_test_id("gen-reconstruction").evaluate("c => c.width") == 28
    # upload a picture (a white shirt-ish blob on black, 100x100): scaled to 28x28 and reconstructed
    picture = Image.new("L", (100, 100), 0)
    ImageDraw.Draw(picture).rectangle((25, 15, 75, 90), fill=230)
    buf = io.BytesIO()
    picture.save(buf, format="PNG")
    root.get_by_test_id("gen-upload").set_input_files(files=[{"name": "shirt.png", "mimeType": "image/png", "buffer": buf.getvalue()}])
    page.wait_for_function("() => { const d = document.querySelector('[data-testid=gen-draw]').getContext('2d')"
                           ".getImageData(140, 140, 1, 1).data; return d[0] > 200; }")
    root.get_by_test_id("gen-score").evaluate("s => s.remove()")  # so the next score is the upload's
    reconstruct.click()
    score.wait_for()
    uploaded = float(score.inner_text())
    assert math.isfinite(uploaded) and uploaded >= 0
    assert not root.get_by_test_id("error").count()
    shot(page, tmp_path, "generative")


def test_rl_panel_plays_an_episode_with_the_routes_return(page, app_url: str, tmp_path: Path) -> None:
    root = panel(page, "rl")
    set_value(root.get_by_test_id("rl-task"), "CartPole-v1")
    root.get_by_test_id("rl-seed").fill("7")
    steps = root.get_by_test_id("rl-steps")
    if steps.count():
        steps.fill("200")
    root.get_by_test_id("rl-run").click()
    gif = root.get_by_test_id("rl-episode")
    gif.wait_for()
    page.wait_for_function("() => { const i = document.querySelector('[data-testid=rl-episode]'); return i.complete && i.naturalWidth > 0; }")
    assert gif.get_attribute("src").startswith("data:image/gif;base64,")
    expected = post(app_url + "/rl/episode", {"task": "CartPole-v1", "seed": 7, "max_steps": 200}).json()
    assert float(root.get_by_test_id("rl-return").inner_text()) == pytest.approx(expected["total_reward"])
    assert not root.get_by_test_id("error").count()
    shot(page, tmp_path, "rl")


def test_models_tab_lists_the_served_versions_with_links_to_their_runs(page, app_url: str, tmp_path: Path) -> None:
    root = panel(page, "models")
    rows = root.get_by_test_id("models-table").locator("tbody tr")
    rows.first.wait_for()
    models = requests.get(app_url + "/models", timeout=10).json()["models"]
    assert rows.count() == len(models) > 0
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.name)")) == sorted(m["name"] for m in models)
    mlflow_ui = requests.get(app_url + "/demo/panels.json", timeout=10).json()["mlflow_ui"]
    links = root.locator("a.mlflow-run")
    if mlflow_ui:
        hrefs = links.evaluate_all("as => as.map(a => a.getAttribute('href'))")
        assert sorted(hrefs) == sorted(f"{mlflow_ui.rstrip('/')}/#/experiments/{m['experiment_id']}/runs/{m['run_id']}"
                                       for m in models)
    else:
        assert links.count() == 0
    first = next(m for m in models if m["name"] == rows.first.get_attribute("data-name"))
    assert f"v{first['version']}" in rows.first.inner_text() and first["metric"] in rows.first.inner_text()
    shot(page, tmp_path, "models")


def test_a_bad_input_shows_the_routes_4xx_message(page, tmp_path: Path) -> None:
    root = panel(page, "translator")
    set_value(root.get_by_test_id("tr-task"), "dates")
    root.get_by_test_id("tr-text").fill("April 22, 2019 §")  # '§' is outside the dates vocabulary
    root.get_by_test_id("tr-run").click()
    error = root.get_by_test_id("error")
    error.wait_for()
    assert error.inner_text().startswith("HTTP 422: ") and "outside the dates vocabulary" in error.inner_text()
    # a 422 from pydantic (a list of {loc, msg}) reads as a message too
    root.get_by_test_id("tr-text").fill("April 22, 2019")
    root.get_by_test_id("tr-beam").fill("1")
    root.get_by_test_id("tr-nbest").fill("2")
    root.get_by_test_id("tr-run").click()
    page.wait_for_function("() => /n_best/.test(document.querySelector('[data-testid=panel-translator] [data-testid=error]')"
                           "?.textContent || '')")
    assert root.get_by_test_id("error").inner_text().startswith("HTTP 422: ")
    # the forecaster's example index past the windows the model carries
    fc = panel(page, "forecaster")
    fc.get_by_test_id("fc-chart").locator("path.history").wait_for()
    set_value(fc.get_by_test_id("fc-example"), 1000)
    fc.get_by_test_id("fc-run").click()
    fc_error = fc.get_by_test_id("error")
    fc_error.wait_for()
    assert fc_error.inner_text().startswith("HTTP 422: ") and "out of range" in fc_error.inner_text()
    assert fc.get_by_test_id("fc-run").is_enabled()  # the button is back once the request is answered
    shot(page, tmp_path, "error", artifact_only=True)  # not one of the README's
