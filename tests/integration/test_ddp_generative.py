"""The DCGAN's own loop under Ray Train: 2 gloo workers (G and D each in DDP), one killed mid-run,
the run resumes from its last checkpoint (both optimisers restored) and the model dir it writes
samples through the Predictor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from families.generative import FAMILY, data, serve
from quartet import api
from tests.integration.faults import assert_resumed, fit_killing_a_worker
from tests.unit.test_generative_data import TINY_PREPARE, write_digits_idx

pytestmark = pytest.mark.integration

EPOCHS = 4
GEN = "fashion-mnist"


def test_two_workers_resume_after_a_killed_worker_and_sample(ray_local, tmp_path: Path) -> None:
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    data.ingest(raw, 42, source=write_digits_idx(tmp_path / "src"))
    prepared.mkdir()
    # A one-epoch FID classifier on 300 digits: FIDs only need to be finite here.
    data.prepare(GEN, {**TINY_PREPARE, "classifier": {"epochs": 1, "train_size": 300}}, raw, prepared, 42)
    # 400 digits, 200 a worker: an epoch (7 steps of both nets + a 100-image FID) outlasts the kill.
    config = api.loop_config("generative", GEN, {"model": "dcgan", "codings": 16, "batch_size": 32, "fid_samples": 100},
                             prepared, EPOCHS)
    result = fit_killing_a_worker(FAMILY.loop, config, tmp_path, num_workers=2)  # kill after epoch 2
    assert_resumed(result.history, EPOCHS, 2)
    assert all(np.isfinite(h["val_fid"]) for h in result.history)
    predictor = serve.Predictor(result.model_dir, model_version="1")
    (answer,) = predictor.sample_batch([serve.SampleRequest(**serve.input_example(result.model_dir))])
    assert len(answer.images) == 2 and answer.model_version == "1"
