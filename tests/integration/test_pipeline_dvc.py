"""`dvc repro` end to end in a temp copy of the repo (tiny profile): stages, metrics, plots,
MLflow runs and registry, no-op reruns, and params that rerun only what depends on them."""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import BIN, QUARTET, run

pytestmark = pytest.mark.integration
TASKS = ("synthetic", "vic_elec")


def mlflow_client(root: Path):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}")


def every_task() -> list[tuple[str, str]]:
    from families import families

    return [(f.name, t) for f in families().values() for t in f.tasks]


def test_repro_produces_every_stage_output(trained_repo: Path) -> None:
    from families import get

    for family, t in every_task():
        assert (trained_repo / "tuning" / family / t / "best_params.yaml").is_file()
        assert (trained_repo / "models" / family / t / "weights.pt").is_file()
        metrics = json.loads((trained_repo / "metrics" / f"{family}-{t}.json").read_text())
        metric = get(family).metrics[t]
        assert math.isfinite(metrics[metric.test]) and math.isfinite(metrics[metric.val]), metrics
        registry = json.loads((trained_repo / "registry" / f"{family}-{t}.json").read_text())
        assert registry["promoted"] is True and registry["version"] == "1", registry
    lock = yaml.safe_load((trained_repo / "dvc.lock").read_text())
    expected = {f"{s}@{f}-{t}" for s in ("prepare", "tune", "train", "evaluate", "register") for f, t in every_task()}
    assert expected <= set(lock["stages"]), expected - set(lock["stages"])


def test_second_repro_is_a_fast_no_op(trained_repo: Path) -> None:
    t0 = time.perf_counter()
    proc = run([str(BIN / "dvc"), "repro"], cwd=trained_repo, timeout=120)
    elapsed = time.perf_counter() - t0
    assert "Data and pipelines are up to date" in proc.stdout + proc.stderr
    assert elapsed <= 15, f"no-op dvc repro took {elapsed:.1f} s"


def _set_param(root: Path, task: str, section: str, key: str, value) -> str:
    original = (root / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["families"]["forecaster"][task][section][key] = value
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return original


def test_changing_a_key_marks_only_its_stage(trained_repo: Path) -> None:
    epochs = yaml.safe_load((trained_repo / "params.yaml").read_text())["families"]["forecaster"]["vic_elec"]["train"]["epochs"]
    original = _set_param(trained_repo, "vic_elec", "train", "epochs", epochs + 1)
    try:
        status = json.loads(run([str(BIN / "dvc"), "status", "--json"], cwd=trained_repo, timeout=120).stdout)
        assert set(status) == {"train@forecaster-vic_elec"}, status
    finally:
        (trained_repo / "params.yaml").write_text(original)


def _changed_stages(root: Path) -> set[str]:
    return set(json.loads(run([str(BIN / "dvc"), "status", "--json"], cwd=root, timeout=120).stdout))


@contextlib.contextmanager
def _edited(path: Path, text: str):
    """Append `text` to a file for the block (a change DVC's md5 sees), then put it back."""
    original = path.read_text()
    path.write_text(original + text)
    try:
        yield
    finally:
        path.write_text(original)


def test_editing_the_cli_reruns_nothing(trained_repo: Path) -> None:
    """The stages run `python -m quartet.stage`, not the CLI: its help text is not their dep."""
    with _edited(trained_repo / "quartet" / "cli.py", "\n# a changed help text\n"):
        assert _changed_stages(trained_repo) == set()


def test_editing_a_demo_panel_or_the_demo_page_reruns_nothing(trained_repo: Path) -> None:
    """The served page's JavaScript and HTML are no stage's code (.dvcignore, and components/demo
    is no stage's dep)."""
    with _edited(trained_repo / "families" / "rl" / "demo.js", "\n// a changed panel\n"), \
            _edited(trained_repo / "components" / "demo" / "index.html", "\n<!-- a changed page -->\n"):
        assert _changed_stages(trained_repo) == set()


def test_editing_one_familys_code_reruns_only_that_family(trained_repo: Path) -> None:
    with _edited(trained_repo / "families" / "rl" / "models.py", "\n# a changed model\n"):
        changed = _changed_stages(trained_repo)
    expected = {f"{s}@rl-{t}" for s in ("tune", "train", "evaluate", "register") for t in ("CartPole-v1", "LunarLander-v3")}
    assert changed == expected, changed ^ expected  # prepare runs data.py only; other families nothing


def test_editing_a_train_hparams_value_reruns_train_onward_not_tune(trained_repo: Path) -> None:
    """best_params.yaml holds only the tuned values, and the sweep has its own fixed hparams
    (tune.hparams): a changed train.hparams value retrains without tuning again."""
    hparams = yaml.safe_load((trained_repo / "params.yaml").read_text())["families"]["forecaster"]["vic_elec"]["train"]["hparams"]
    original = _set_param(trained_repo, "vic_elec", "train", "hparams", {**hparams, "batch_size": 2 * hparams["batch_size"]})
    try:
        assert _changed_stages(trained_repo) == {"train@forecaster-vic_elec"}
    finally:
        (trained_repo / "params.yaml").write_text(original)


def test_changing_an_evaluate_key_reruns_only_that_evaluation(trained_repo: Path) -> None:
    original = _set_param(trained_repo, "vic_elec", "evaluate", "n_plot_series", 2)
    try:
        out = run([str(BIN / "dvc"), "repro"], cwd=trained_repo, timeout=300).stdout
        ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
        # register depends on the metrics file, which the plot count does not change: it stays put.
        assert ran == {"evaluate@forecaster-vic_elec"}, out
    finally:
        (trained_repo / "params.yaml").write_text(original)
        run([str(BIN / "dvc"), "repro"], cwd=trained_repo, timeout=300)


def test_dvc_metrics_and_plots_show(trained_repo: Path) -> None:
    metrics = run([str(BIN / "dvc"), "metrics", "show", "--json"], cwd=trained_repo, timeout=120)
    shown = json.loads(metrics.stdout)
    files = next(iter(shown.values()))["data"]
    assert {f"metrics/{f}-{t}.json" for f, t in every_task()} <= set(files)
    plots = run([str(BIN / "dvc"), "plots", "show", "--json"], cwd=trained_repo, timeout=120)
    assert "forecast" in plots.stdout and "mae-by-horizon" in plots.stdout


def test_mlflow_has_trials_under_a_sweep_and_epoch_curves(trained_repo: Path) -> None:
    client = mlflow_client(trained_repo)
    for t in TASKS:
        exp = client.get_experiment_by_name(f"quartet/forecaster/{t}")
        runs = client.search_runs([exp.experiment_id])
        by_stage: dict[str, list] = {}
        for r in runs:
            by_stage.setdefault(r.data.tags.get("quartet.stage"), []).append(r)
        sweep = by_stage["tune"][0]
        trials = by_stage["tune-trial"]
        assert len(trials) == 2 and all(r.data.tags["mlflow.parentRunId"] == sweep.info.run_id for r in trials)
        train_run = by_stage["train"][0]
        for tag in ("git.commit", "data.dvc.md5", "quartet.model", "quartet.family"):
            assert train_run.data.tags[tag] not in ("", "unknown")
        curve = client.get_metric_history(train_run.info.run_id, "val_mae")
        steps = sorted(m.step for m in curve)
        # tiny profile: 2 epochs, then the evaluated best epoch at step 2 (once per evaluate run)
        assert steps[:3] == [0, 1, 2] and set(steps[2:]) == {2}
        assert "test_mae" in train_run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(train_run.info.run_id, "plots")}
        assert "plots/forecast_vs_actual.png" in artifacts


def test_every_task_logs_a_sweep_a_curve_and_plots(trained_repo: Path) -> None:
    from families import get

    client = mlflow_client(trained_repo)
    for family, t in every_task():
        exp = client.get_experiment_by_name(f"quartet/{family}/{t}")
        assert exp is not None, f"no MLflow experiment for {family}/{t}"
        runs = client.search_runs([exp.experiment_id])
        stages = {r.data.tags.get("quartet.stage") for r in runs}
        assert {"tune", "tune-trial", "train"} <= stages, (family, t, stages)
        train_run = next(r for r in runs if r.data.tags.get("quartet.stage") == "train")
        metric = get(family).metrics[t]
        assert client.get_metric_history(train_run.info.run_id, metric.val), (family, t, metric.val)
        assert metric.test in train_run.data.metrics
        assert client.list_artifacts(train_run.info.run_id, "plots"), f"{family}/{t} logged no plots"


def test_registry_has_champions_and_keeps_them_when_not_beaten(trained_repo: Path) -> None:
    client = mlflow_client(trained_repo)
    for t in TASKS:
        assert str(client.get_model_version_by_alias(f"quartet-forecaster-{t}", "champion").version) == "1"
    # Same data + params -> same metric: a re-registration must not take the alias.
    proc = run([*QUARTET, "register", "forecaster", "synthetic"], cwd=trained_repo, timeout=300)
    assert "not promoted" in proc.stdout and "does not beat champion v1" in proc.stdout
    assert str(client.get_model_version_by_alias("quartet-forecaster-synthetic", "champion").version) == "1"
    assert client.get_model_version("quartet-forecaster-synthetic", "2").tags["quartet.promoted"] == "false"


def test_a_version_scored_on_another_test_set_never_takes_the_alias(trained_repo: Path) -> None:
    import mlflow

    from components import track

    name = "quartet-forecaster-vic_elec"
    mlflow.set_tracking_uri(f"sqlite:///{trained_repo / 'mlruns' / 'mlflow.db'}")
    try:
        v1 = mlflow_client(trained_repo).get_model_version(name, "1")
        better = float(v1.tags["quartet.metric_value"]) / 2  # better, but on another test set
        promotion = track.register_and_promote(f"models:/{name}/1", name, "test_mae", better, "min",
                                               "another-test-set", {"quartet.stage": "test"})
        assert not promotion.promoted and "not comparable" in promotion.reason
        assert str(mlflow_client(trained_repo).get_model_version_by_alias(name, "champion").version) == "1"
        proc = run([*QUARTET, "promote", "forecaster", "vic_elec", promotion.version], cwd=trained_repo, timeout=120)
        assert f"v{promotion.version}" in proc.stdout
        assert str(mlflow_client(trained_repo).get_model_version_by_alias(name, "champion").version) == promotion.version
        bad = run([*QUARTET, "promote", "forecaster", "vic_elec", "99"], cwd=trained_repo, timeout=120, check=False)
        assert bad.returncode == 2 and "cannot promote" in bad.stderr
    finally:
        run([*QUARTET, "promote", "forecaster", "vic_elec", "1"], cwd=trained_repo, timeout=120)  # serving tests expect v1
        mlflow.set_tracking_uri(None)


def test_register_refuses_to_promote_a_model_a_baseline_beats(trained_repo: Path) -> None:
    """The tiny profile turns the check off (its 2-epoch models must be served); turned on, the
    tiny GRU loses to the dynamic regression, so register keeps v1 and says which baseline won."""
    metrics = json.loads((trained_repo / "metrics" / "forecaster-vic_elec.json").read_text())
    assert metrics["test_mae"] > metrics["test_mae_sarimax"], "precondition: the tiny model loses to SARIMAX"
    registry = trained_repo / "registry" / "forecaster-vic_elec.json"
    kept = registry.read_text()
    original = _set_param(trained_repo, "vic_elec", "register", "must_beat_baselines", True)
    client = mlflow_client(trained_repo)
    try:
        proc = run([*QUARTET, "register", "forecaster", "vic_elec"], cwd=trained_repo, timeout=300)
        assert "is beaten by the sarimax baseline" in proc.stdout and "not promoted" in proc.stdout, proc.stdout
        outcome = json.loads(registry.read_text())
        assert outcome["promoted"] is False and "sarimax" in outcome["reason"]
        version = client.get_model_version("quartet-forecaster-vic_elec", outcome["version"])
        assert version.tags["quartet.promoted"] == "false" and "sarimax" in version.tags["quartet.refused"]
        assert str(client.get_model_version_by_alias("quartet-forecaster-vic_elec", "champion").version) == "1"
    finally:
        (trained_repo / "params.yaml").write_text(original)
        registry.write_text(kept)


def test_adopted_cluster_tuning_reruns_train_onward_but_not_tune(trained_repo: Path) -> None:
    """`quartet adopt-tuning` (after `quartet submit tune`): the cluster's best params become the
    tune stage's recorded output, so `dvc repro` would retrain from them without tuning again."""
    tuning = trained_repo / "tuning" / "forecaster" / "synthetic"
    lock, best = (trained_repo / "dvc.lock").read_text(), (tuning / "best_params.yaml").read_text()
    cluster_best = yaml.safe_load(best)
    cluster_best["hparams"]["lr"] = 0.0123
    (tuning / "best_params.cluster.yaml").write_text(yaml.safe_dump(cluster_best))
    try:
        run([*QUARTET, "adopt-tuning", "forecaster", "synthetic"], cwd=trained_repo, timeout=300)
        assert yaml.safe_load((tuning / "best_params.yaml").read_text())["hparams"]["lr"] == 0.0123
        status = json.loads(run([str(BIN / "dvc"), "status", "--json"], cwd=trained_repo, timeout=120).stdout)
        assert "tune@forecaster-synthetic" not in status
        assert "train@forecaster-synthetic" in status
        assert not any(k.endswith("forecaster-vic_elec") for k in status)
    finally:
        (trained_repo / "dvc.lock").write_text(lock)
        (tuning / "best_params.yaml").write_text(best)
        (tuning / "best_params.cluster.yaml").unlink(missing_ok=True)


def test_a_rerun_on_the_same_machine_is_bit_identical(trained_repo: Path) -> None:
    """Train and evaluate of three families' tasks (the supervised loop on one thread and, for
    translator dates, on the two threads its worker reserves; an RL agent) rerun from scratch
    (Ray Train, a new process): `dvc metrics diff` against the first run's metrics is empty, and so the check against
    reproducibility.yaml passes. Last in this file: it rewrites those tasks' models (with the
    same bytes, if reproducible)."""
    from components.reproducibility import check, metrics_diff

    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost"]
    run([*git, "add", "-f", "metrics"], cwd=trained_repo)
    run([*git, "commit", "-qm", "first run's metrics", "--allow-empty"], cwd=trained_repo)
    from components import config

    assert config.load(trained_repo).task("translator", "dates").train.cpus_per_worker == 2  # the 2-thread case
    stages = [f"{s}@{k}" for k in ("forecaster-synthetic", "translator-dates", "rl-CartPole-v1")
              for s in ("train", "evaluate")]
    run([*QUARTET, "repro", "-f", "-s", *stages], cwd=trained_repo, timeout=600)
    assert metrics_diff("HEAD", trained_repo) == {}
    assert check("HEAD", trained_repo) == []
