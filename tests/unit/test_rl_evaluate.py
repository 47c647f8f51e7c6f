"""evaluate: greedy returns on the fixed seeds, the learning curve and one rendered episode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.data import DataError
from families.rl import FAMILY, data
from quartet import api

TASK = "CartPole-v1"
TINY_PG = {"model": "reinforce", "hidden": 16, "steps_per_epoch": 200, "episodes_per_update": 4, "lr": 0.01}


def test_evaluate_writes_metrics_curve_and_gif(tmp_path: Path) -> None:
    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    data.ingest(raw, 42)
    data.prepare(TASK, {"val_episodes": 2, "test_episodes": 3}, raw, prepared, 42)
    history = api.train_plain("rl", TASK, TINY_PG, prepared, 2, seed=7, out_dir=tmp_path / "m").history
    metrics = api.evaluate("rl", tmp_path / "m", prepared, tmp_path / "plots", {"gif_max_frames": 6})
    assert metrics["eval_episodes"] == 3 and metrics["eval_return_mean"] == metrics["test_return_mean"]
    assert metrics["val_return_mean"] == max(h["val_return_mean"] for h in history)
    assert metrics["steps_to_solve"] == -1 and metrics["solved"] == 0  # 3 episodes cannot solve (rule: 100)
    assert metrics["epochs_trained"] == 2 and metrics["env_steps"] == history[-1]["env_steps"]
    assert all(np.isfinite(v) for v in metrics.values())
    assert FAMILY.metrics[TASK].test in metrics
    from PIL import Image

    with Image.open(tmp_path / "plots" / "episode.gif") as gif:
        assert gif.n_frames >= 2
    assert (tmp_path / "plots" / "learning_curve.png").stat().st_size > 1000
    assert (tmp_path / "plots" / "learning_curve.csv").read_text().count("\n") == 3
    assert (tmp_path / "plots" / "test_returns.csv").read_text().count("\n") == 4
    other = tmp_path / "lunar"
    data.prepare("LunarLander-v3", {"val_episodes": 2, "test_episodes": 3}, raw, other, 42)
    with pytest.raises(DataError, match="trained on 'CartPole-v1'"):
        api.evaluate("rl", tmp_path / "m", other, tmp_path / "plots2")


def test_evaluate_breakout_plays_the_full_game_on_the_evaluation_env_and_renders_the_rgb_screen(tmp_path: Path) -> None:
    import csv

    from PIL import Image

    from families.rl.episodes import run_episodes
    from families.rl.evaluate import load_model

    raw, prepared = tmp_path / "raw", tmp_path / "prepared"
    data.ingest(raw, 42)
    data.prepare("Breakout", {"val_episodes": 1, "test_episodes": 2}, raw, prepared, 42)
    tiny = {"model": "double_dqn", "hidden": 16, "steps_per_epoch": 32, "learning_starts": 16, "batch_size": 8,
            "buffer_size": 64, "stop_when_solved": False}
    api.train_plain("rl", "Breakout", tiny, prepared, 1, seed=2, out_dir=tmp_path / "m")
    metrics = api.evaluate("rl", tmp_path / "m", prepared, tmp_path / "plots", {"gif_max_frames": 4, "gif_every": 50})
    assert metrics["eval_episodes"] == 2 and all(np.isfinite(v) for v in metrics.values())
    with open(tmp_path / "plots" / "test_returns.csv") as f:
        returns = [float(r["return"]) for r in csv.DictReader(f)]
    net, _ = load_model(tmp_path / "m")
    full_game, _ = run_episodes(net, "ALE/Breakout-v5", [20_000, 20_001], training=False)  # raw scores, all 5 lives
    assert returns == full_game and metrics["test_return_mean"] == pytest.approx(np.mean(full_game))
    with Image.open(tmp_path / "plots" / "episode.gif") as gif:
        assert gif.size == (80, 105) and 2 <= gif.n_frames <= 5  # the 160x210 RGB screen at 0.5 scale, bounded
