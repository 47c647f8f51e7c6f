"""The MLflow UI in a real browser, over the trained repo's store, started as a user does
(`quartet ui`): the experiment opens on its runs (model training, not the GenAI overview) with
the task's metric columns and the data version in the Dataset column; the compare view of two
tuning trials shows their metric; the registered model's page shows @champion and the model card
`register` wrote. Screenshots: screenshot_dir()/mlflow-<view>.png.

QUARTET_MLFLOW_UI=http://127.0.0.1:PORT points the tests at a UI already running instead (to
iterate without the trained_repo fixture).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from components import track
from tests.browser import chromium, screenshot_dir
from tests.conftest import QUARTET, background, free_port, wait_http

pytestmark = pytest.mark.integration

EXPERIMENT = "quartet/forecaster/synthetic"
MODEL = track.registered_name("forecaster", "synthetic")
WAIT_MS = 30_000  # the single-page app's first load on a busy CI machine


@pytest.fixture(scope="module")
def ui(request: pytest.FixtureRequest) -> Iterator[str]:
    if os.environ.get("QUARTET_MLFLOW_UI"):
        yield os.environ["QUARTET_MLFLOW_UI"].rstrip("/")
        return
    repo: Path = request.getfixturevalue("trained_repo")
    port = free_port()
    with background([*QUARTET, "ui", "--port", str(port)], repo, repo / "mlflow-ui.log"):
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/health", timeout=120)
        yield url


@pytest.fixture(scope="module")
def client(ui: str):
    """The UI's own REST API: what the pages must show, asked of the same server."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=ui)


@pytest.fixture(scope="module")
def page(ui: str) -> Iterator[object]:
    with chromium(viewport=(1920, 1080), timeout_ms=WAIT_MS) as p:
        yield p


def shot(page, tmp_path: Path, view: str) -> None:
    path = screenshot_dir(tmp_path) / f"mlflow-{view}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5_000


def test_the_experiment_opens_on_its_runs_with_the_metrics_and_the_data_version(ui, client, page, tmp_path) -> None:
    exp = client.get_experiment_by_name(EXPERIMENT)
    assert exp.tags[track.EXPERIMENT_KIND_TAG] == "custom_model_development"
    runs = client.search_runs([exp.experiment_id], "tags.`quartet.stage` = 'train'")
    assert runs
    ds = runs[0].inputs.dataset_inputs[0].dataset
    assert ds.name == "forecaster/synthetic" and ds.digest == runs[0].data.tags["data.dvc.md5"]

    page.goto(track.ui_url(ui, exp.experiment_id))  # the link `quartet ui` prints
    page.get_by_role("link", name=re.compile(r"^train-")).first.wait_for()
    headers = page.locator("[role=columnheader]")
    for metric in ("val_mse", "test_mse", "test_mse_naive"):
        headers.filter(has_text=re.compile(rf"^{metric}$")).first.wait_for()
    page.get_by_text(f"forecaster/synthetic ({ds.digest[:8]}").first.wait_for()  # Dataset: name (digest)
    assert "/overview" not in page.url and "workflowType=machine_learning" in page.url
    assert page.get_by_text("Token Usage").count() == 0  # not the GenAI overview
    shot(page, tmp_path, "experiment")


def test_the_compare_view_of_two_trials_shows_their_metric(ui, client, page, tmp_path) -> None:
    exp = client.get_experiment_by_name(EXPERIMENT)
    sweep = client.search_runs([exp.experiment_id], "tags.`quartet.stage` = 'tune'")[0]
    assert sweep.inputs.dataset_inputs[0].dataset.digest == sweep.data.tags["data.dvc.md5"]
    trials = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{sweep.info.run_id}'")
    assert len(trials) >= 2
    assert all(t.inputs.dataset_inputs[0].dataset.digest == sweep.data.tags["data.dvc.md5"] for t in trials)
    ids = [t.info.run_id for t in trials[:2]]
    page.goto(f"{ui}/#/compare-runs?runs={json.dumps(ids)}&experiments={json.dumps([exp.experiment_id])}"
              f"&{track.ML_WORKFLOW}")
    for t in trials[:2]:
        page.get_by_text(t.info.run_name, exact=True).first.wait_for()
    metric = page.get_by_text("best_val_mse", exact=True).first  # what the sweep ranks trials by
    metric.wait_for()
    metric.scroll_into_view_if_needed()  # the screenshot shows the metrics table
    shot(page, tmp_path, "compare")


def test_the_registered_model_shows_the_champion_and_its_model_card(ui, client, page, tmp_path) -> None:
    model = client.get_registered_model(MODEL)
    assert "champion" in model.aliases
    assert "Intended use" in model.description and "data.dvc" in model.description
    md5 = client.get_model_version(MODEL, model.aliases["champion"]).tags["data.dvc.md5"]
    assert md5 in model.description

    page.goto(f"{ui}/#/models/{MODEL}?{track.ML_WORKFLOW}")
    page.get_by_text("@ champion").or_(page.get_by_text("champion", exact=True)).first.wait_for()
    page.get_by_text("Intended use").first.wait_for()  # the card, rendered as markdown
    page.get_by_text(md5[:12], exact=False).first.wait_for()
    page.get_by_text("test_mse", exact=False).first.wait_for()
    shot(page, tmp_path, "registry")
