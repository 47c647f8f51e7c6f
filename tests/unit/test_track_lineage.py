"""What the MLflow UI opens on (components/track.py) on a real sqlite store: experiments tagged as
model training (new and pre-existing ones) with the task's runs view, the data version logged as
an MLflow dataset (digest = the data.dvc md5, source naming the DVC path), and the model card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from components import config, track
from components.family import Metric
from families import families

# a DVC dir md5 (36 characters, MLflow's digest limit), computed: a literal hex string reads as a token
MD5 = hashlib.md5(b"the data dir").hexdigest() + ".dir"
MSE = Metric("mse", "min")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A repo root with a data.dvc and one prepared split; MLflow on a sqlite file under it."""
    import mlflow

    (tmp_path / "data.dvc").write_text(f"outs:\n- md5: {MD5}\n  path: data\n")
    prepared = tmp_path / "prepared" / "forecaster" / "synthetic"
    prepared.mkdir(parents=True)
    (prepared / "info.json").write_text(json.dumps({"counts": {"train": 7000, "val": 2000, "test": 1000}}))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield tmp_path
    mlflow.set_tracking_uri(None)  # later tests' subprocesses must not find this store


def test_setup_tags_new_and_pre_existing_experiments_as_model_training(repo: Path) -> None:
    import mlflow

    params = config.load()
    mlflow.set_tracking_uri(config.tracking_uri(params, repo))
    old = mlflow.create_experiment("quartet/forecaster/vic_elec")  # made before quartet tagged kinds
    chosen = mlflow.create_experiment("quartet/translator/dates", tags={track.EXPERIMENT_KIND_TAG: "genai_development"})

    new = track.setup(params, "forecaster", "synthetic", repo, metric=MSE, baselines=("naive",))
    assert track.setup(params, "forecaster", "vic_elec", repo) == old
    track.setup(params, "translator", "dates", repo)

    tags = {e.experiment_id: e.tags for e in mlflow.search_experiments()}
    assert tags[new][track.EXPERIMENT_KIND_TAG] == track.EXPERIMENT_KIND == "custom_model_development"
    assert tags[old][track.EXPERIMENT_KIND_TAG] == "custom_model_development"
    assert tags[chosen][track.EXPERIMENT_KIND_TAG] == "genai_development"  # a user's choice stays
    view = json.loads(tags[new][track.VIEW_TAG_PREFIX + track.VIEW_KEY])
    assert {"attributes.`Dataset`", "metrics.`val_mse`", "metrics.`test_mse`", "metrics.`test_mse_naive`"} <= set(
        view["selectedColumns"])
    assert view["orderByKey"] == "metrics.`test_mse`" and view["orderByAsc"] is True
    assert track.VIEW_TAG_PREFIX + track.VIEW_KEY not in tags[old]  # no metric given: no view
    url = track.ui_url("http://127.0.0.1:5000/", new)
    assert url == (f"http://127.0.0.1:5000/#/experiments/{new}/runs?workflowType=machine_learning"
                   f"&viewStateShareKey={track.VIEW_KEY}")


def test_the_training_run_records_the_data_version_as_an_mlflow_dataset(repo: Path) -> None:
    """log_training (as the train stage calls it) and log_sweep_data_inputs (tune's sweep and trials)."""
    import mlflow

    params = config.load()
    track.setup(params, "forecaster", "synthetic", repo, metric=MSE)
    model_dir = repo / "models" / "forecaster" / "synthetic"
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text("{}")
    tp = SimpleNamespace(train=SimpleNamespace(model_dump=lambda exclude: {"epochs": 2}))
    result = SimpleNamespace(history=[{"epoch": 0, "val_mse": 0.5}], wall_s=1.5, model_dir=model_dir)
    run = track.log_training("forecaster", "synthetic", {"model": "gru", "hidden": 16}, tp, "none", result, repo, params)
    with mlflow.start_run() as sweep:
        pass
    trials = []
    for _ in range(2):  # what Ray's MLflowLoggerCallback makes: runs tagged with the sweep as parent
        with mlflow.start_run(tags={"mlflow.parentRunId": sweep.info.run_id}) as trial:
            trials.append(trial.info.run_id)
    assert track.log_sweep_data_inputs(sweep.info.run_id, "forecaster", "synthetic", repo, params) == 3

    for run_id, context in ((run["mlflow_run_id"], "training"), (sweep.info.run_id, "tuning"),
                            *((t, "tuning") for t in trials)):
        (inp,) = mlflow.get_run(run_id).inputs.dataset_inputs
        ds = inp.dataset
        assert ds.name == "forecaster/synthetic"
        assert ds.digest == MD5 == track.data_md5(repo)  # the whole md5, not a prefix
        assert ds.source_type == "dvc"
        source = json.loads(ds.source)
        assert source["dvc_file"] == "data.dvc" and source["md5"] == MD5
        assert source["path"] == "prepared/forecaster/synthetic"
        assert source["uri"] == f"dvc://data.dvc@{MD5}/prepared/forecaster/synthetic"
        assert json.loads(ds.profile) == {"counts": {"train": 7000, "val": 2000, "test": 1000}}
        assert {t.key: t.value for t in inp.tags} == {"mlflow.data.context": context}


def _promotion(promoted: bool, reason: str) -> track.Promotion:
    return track.Promotion("quartet-forecaster-synthetic", "3", "test_mse", 0.0123, "2", 0.02, promoted, reason)


def test_the_model_card_names_the_data_version_the_metric_and_the_baselines() -> None:
    fam = families()["forecaster"]
    metrics = {"test_mse": 0.0123, "val_mse": 0.011, "test_mse_naive": 0.0456, "test_mse_seasonal_naive": 0.05,
               "test_mae": 0.08}
    card = track.model_card(
        name="quartet-forecaster-synthetic", version="3", family="forecaster", task="synthetic",
        hparams={"model": "gru", "hidden": 16, "lr": 0.013394334706750489, "clip_norm": None}, metric=MSE,
        metrics=metrics, baselines=fam.baselines, data_version=MD5, prepared="prepared/forecaster/synthetic",
        test_set="0123456789abcdef", commit="deadbeefcafe1234", promotion=_promotion(True, "no champion yet"),
        intended_use=fam.intended_use["synthetic"], limits=fam.limits["synthetic"],
    )
    assert "quartet-forecaster-synthetic v3" in card and "`gru` (hidden=16, lr=0.01339)" in card
    assert f"md5 `{MD5}`" in card and "`prepared/forecaster/synthetic`" in card and "`0123456789ab`" in card
    assert "`test_mse` = 0.0123 (lower is better)" in card and "`val_mse` = 0.011" in card
    assert "naive 0.0456" in card and "seasonal_naive 0.05" in card
    assert "@champion: no champion yet" in card
    assert fam.intended_use["synthetic"] in card and fam.limits["synthetic"] in card
    assert len(card) < 2000  # short


def test_describe_writes_the_card_on_the_version_and_on_the_model_only_for_the_champion(repo: Path) -> None:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(config.tracking_uri(config.load(), repo))
    client, name = MlflowClient(), "quartet-forecaster-synthetic"
    client.create_registered_model(name)
    (repo / "m").mkdir()
    for _ in range(2):
        client.create_model_version(name, source=(repo / "m").as_uri())

    assert track.describe(name, "1", "card of v1", promoted=True)
    assert track.describe(name, "2", "card of v2\n- **Promotion**: not promoted: worse\n", promoted=False)
    assert client.get_model_version(name, "1").description == "card of v1"
    assert "not promoted" in client.get_model_version(name, "2").description
    assert client.get_registered_model(name).description == "card of v1"  # the champion's card
    assert not track.describe("quartet-no-such-model", "1", "card", promoted=True)  # a warning, not a raise
    track.promote(name, "2")  # by hand: the new champion's card is the model's
    assert client.get_registered_model(name).description == (
        "card of v2\n- **Promotion**: @champion, moved by hand (quartet promote)\n")


def test_every_task_of_every_family_has_an_intended_use_and_limits() -> None:
    for fam in families().values():
        for task in fam.all_tasks:
            assert len(fam.intended_use.get(task, "")) > 40, (fam.name, task)
            assert len(fam.limits.get(task, "")) > 40, (fam.name, task)
        assert set(fam.intended_use) == set(fam.limits) == set(fam.all_tasks), fam.name
