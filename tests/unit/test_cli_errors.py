"""User mistakes on the command line get one clear line and exit 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def quartet(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "quartet.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "forecaster", "nope"], "family 'forecaster' has no task 'nope'"),
        (["prepare", "translatr", "dates"], "unknown family 'translatr'"),
        (["train", "forecaster", "synthetic", "--profile", "nope"], "unknown profile 'nope'"),
        # `quartet task` runs an extra task (not a dvc stage); a pipeline task belongs to dvc repro
        (["task", "rl", "CartPole-v1"], "rl/CartPole-v1 is a pipeline task: run `dvc repro`"),
        (["task", "rl", "Pong"], "family 'rl' has no task 'Pong' (tasks: ['CartPole-v1', 'LunarLander-v3', 'Breakout'])"),
    ],
)
def test_bad_arguments(args: list[str], message: str) -> None:
    proc = quartet(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_params_file_names_the_key_and_writes_nothing(repo_copy: Path) -> None:
    raw = yaml.safe_load((repo_copy / "params.yaml").read_text())
    raw["families"]["forecaster"]["synthetic"]["prepare"]["horizon"] = -1
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = quartet("prepare", "forecaster", "synthetic", cwd=repo_copy)
    assert proc.returncode == 2, proc.stderr
    assert "families.forecaster.synthetic.prepare: horizon: Input should be greater than 0" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (repo_copy / "prepared").exists() or not any((repo_copy / "prepared").rglob("*.parquet"))


def test_missing_data_says_what_to_run(repo_copy: Path) -> None:
    import shutil

    shutil.rmtree(repo_copy / "data", ignore_errors=True)
    proc = quartet("prepare", "forecaster", "vic_elec", cwd=repo_copy)
    assert proc.returncode == 2
    assert "vic_elec.csv: not found (run `make data`)" in proc.stderr
    assert not (repo_copy / "prepared" / "forecaster" / "vic_elec").exists()  # no half-written output


def test_train_without_tuning_says_what_to_run(repo_copy: Path) -> None:
    best = repo_copy / "tuning" / "forecaster" / "synthetic" / "best_params.yaml"
    best.unlink(missing_ok=True)
    proc = quartet("train", "forecaster", "synthetic", cwd=repo_copy)
    assert proc.returncode == 2
    assert "run `quartet tune forecaster synthetic`" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_without_champions_says_to_run_the_pipeline(repo_copy: Path) -> None:
    proc = quartet("serve", "--no-block", cwd=repo_copy)
    assert proc.returncode == 2
    assert "nothing to serve: no @champion model in sqlite:///" in proc.stderr
    assert "run `make repro` first" in proc.stderr


def test_search_space_typo_is_caught_before_ray_starts(repo_copy: Path) -> None:
    raw = yaml.safe_load((repo_copy / "params.yaml").read_text())
    raw["families"]["forecaster"]["synthetic"]["tune"]["search_space"]["gru"]["hiden"] = {"choice": [4, 8]}
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = quartet("tune", "forecaster", "synthetic", cwd=repo_copy)
    assert proc.returncode == 2
    assert "families.forecaster.synthetic.tune (search space of 'gru')" in proc.stderr and "hiden" in proc.stderr
    assert "Traceback" not in proc.stderr and "Started a local Ray" not in proc.stderr


def test_a_model_that_cannot_do_the_task_is_refused_before_ray(repo_copy: Path) -> None:
    raw = yaml.safe_load((repo_copy / "params.yaml").read_text())
    raw["families"]["generative"]["fashion-mnist"]["tune"]["models"] = ["stacked"]  # an autoencoder, not a generator
    (repo_copy / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = quartet("tune", "generative", "fashion-mnist", cwd=repo_copy)
    assert proc.returncode == 2, proc.stderr
    assert "'stacked' cannot be trained for task 'fashion-mnist'" in proc.stderr and "Traceback" not in proc.stderr
    assert "Ray" not in proc.stderr  # refused before a Ray session started
    assert not (repo_copy / "tuning").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prepare", "forecaster", "nope"], "family 'forecaster' has no task 'nope'"),
        (["tune", "translatr", "dates"], "unknown family 'translatr'"),
        (["train", "rl", "CartPole-v1", "--profile", "nope"], "unknown profile 'nope'"),
    ],
)
def test_the_dvc_stage_entry_point_says_the_same_in_one_line(args: list[str], message: str) -> None:
    """`python -m quartet.stage` (what dvc.yaml runs) reports user mistakes like the CLI does."""
    proc = subprocess.run([sys.executable, "-m", "quartet.stage", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and proc.stderr.startswith("error: ")
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
