"""The forecaster's loop under Ray Train: 2 gloo workers, one killed mid-run, the run resumes from
its last checkpoint and the model dir it writes is served by the Predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from families.forecaster import FAMILY, data, serve
from quartet import api
from tests.integration.faults import assert_resumed, fit_killing_a_worker

pytestmark = pytest.mark.integration

EPOCHS = 4


def test_two_workers_resume_after_a_killed_worker_and_serve(ray_local, tmp_path: Path) -> None:
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    data.ingest(raw, 42)
    data.prepare("synthetic", {"split": [1200, 100, 100]}, raw, prepared, 42)
    # Big enough that an epoch outlasts the kill (about a second per epoch on one core).
    config = api.loop_config("forecaster", "synthetic", {"model": "gru", "hidden": 32, "layers": 1, "batch_size": 32},
                             prepared, EPOCHS)
    result = fit_killing_a_worker(FAMILY.loop, config, tmp_path, num_workers=2)  # kill after epoch 2
    assert_resumed(result.history, EPOCHS, 2)
    predictor = serve.Predictor(result.model_dir, model_version="1")
    (answer,) = predictor.predict_batch([serve.ForecastRequest(**serve.input_example(result.model_dir))])
    assert np.shape(answer.forecast) == (1, 10) and np.isfinite(answer.forecast).all()
