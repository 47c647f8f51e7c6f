"""The translator's loop under Ray Train: 2 gloo workers (each taking its own share of the length
buckets, as many batches as the other), one killed mid-run; the run resumes from its last
checkpoint and the model dir it writes answers the translate route."""

from __future__ import annotations

from pathlib import Path

import pytest

from families.translator import FAMILY, data, serve
from quartet import api
from tests.integration.faults import assert_resumed, fit_killing_a_worker

pytestmark = pytest.mark.integration

EPOCHS = 5


def test_two_workers_resume_after_a_killed_worker_and_serve(ray_local, tmp_path: Path) -> None:
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    raw.mkdir()
    dates = data.random_dates(2300, 42)
    (raw / data.DATES_FILE).write_text("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in dates))
    data.prepare("dates", {"split": [2000, 150, 150]}, raw, prepared, 42)
    # 1,000 pairs a worker: an epoch (about a second on one core) outlasts the kill.
    config = api.loop_config("translator", "dates", {"model": "attention", "emb_dim": 16, "hidden": 32,
                                                     "batch_size": 32, "lr": 0.01}, prepared, EPOCHS)
    result = fit_killing_a_worker(FAMILY.loop, config, tmp_path, num_workers=2)  # kill after epoch 2
    assert_resumed(result.history, EPOCHS, 2)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    predictor = serve.Predictor(result.model_dir, model_version="1")
    route = FAMILY.route_for("dates")
    (answer,) = getattr(predictor, route.method)([route.request(**serve.input_example(result.model_dir))])
    assert isinstance(answer, route.response) and answer.model_version == "1"
    assert len(answer.translations) == 1 and len(answer.translations[0].n_best) == 2
