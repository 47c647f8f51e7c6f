"""The reproducibility check: which `dvc metrics diff` entries break reproducibility.yaml."""

from __future__ import annotations


import yaml

from components.config import REPO_ROOT
from components.reproducibility import TOLERANCES, check_diff, tolerance_for


def test_check_diff_flags_a_metric_that_moved_beyond_its_tolerance() -> None:
    from components.reproducibility import check_diff

    tolerances = {"files": {"metrics/a.json": {"rel": 0.01, "keys": {"test_return_mean": {"abs": 5}}}}}
    diff = {"metrics/a.json": {"test_mse": {"old": 1.0, "new": 1.005}, "test_return_mean": {"old": 100, "new": 104}},
            "metrics/b.json": {"test_mae": {"old": 2.0, "new": 2.0 + 1e-12}}}
    assert check_diff(diff, tolerances) == ["metrics/b.json: test_mae 2.0 -> 2.000000000001 (allowed abs 0)"]
    diff["metrics/a.json"]["test_return_mean"]["new"] = 106
    assert len(check_diff(diff, tolerances)) == 2



def test_the_committed_tolerances_name_real_metrics_files() -> None:
    tolerances = yaml.safe_load((REPO_ROOT / TOLERANCES).read_text())
    for path, entry in tolerances["files"].items():
        assert (REPO_ROOT / path).is_file(), path
        assert set(entry) <= {"abs", "rel", "keys", "why"}, entry
        assert entry.get("why"), f"{path}: say why it drifts"
    assert tolerance_for(tolerances, "metrics/not-listed.json", "x") == ("abs", 0.0)
