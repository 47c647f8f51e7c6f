"""Each stage ends with one line that says what it produced."""

from __future__ import annotations

from quartet.stage import summary


def test_each_stage_says_what_it_made() -> None:
    assert summary("prepare", "rl/CartPole-v1", {"counts": {"val": 5, "test": 100}}, 1.23) == \
        "prepare rl/CartPole-v1 done in 1.2 s: val 5, test 100"
    tune = {"metric": "val_mae", "value": 4631.049, "trials": 8, "hparams": {"model": "wavenet"}}
    assert summary("tune", "forecaster/vic_elec", tune, 60) == \
        "tune forecaster/vic_elec done in 60.0 s: best val_mae 4631 of 8 trials (wavenet)"
    assert summary("train", "translator/dates", {"epochs": 4, "run_id": "abc", "wall_s": 3}, 9.96) == \
        "train translator/dates done in 10.0 s: 4 epochs, MLflow run abc"
    assert summary("evaluate", "rl/CartPole-v1", {"test_return_mean": 500.0, "val_return_mean": 1.0}, 2, "test_return_mean") \
        == "evaluate rl/CartPole-v1 done in 2.0 s: test_return_mean 500"
    reg = {"name": "quartet-rl-CartPole-v1", "version": "2", "promoted": False, "reason": "does not beat champion v1"}
    assert summary("register", "rl/CartPole-v1", reg, 3) == \
        "register rl/CartPole-v1 done in 3.0 s: quartet-rl-CartPole-v1 v2 not promoted (does not beat champion v1)"
    assert summary("evaluate", "x/y", {}, 1, "test_mse") == "evaluate x/y done in 1.0 s"
