"""How a trained agent is judged: greedy returns on the fixed validation and test seeds, the
learning curve, and one rendered test episode as a GIF."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components import modeldir
from components.data import DataError, read_json
from components.progress import Progress
from families.rl import models
from families.rl.data import read_test_seeds
from families.rl.episodes import as_batch, make_env, run_episodes


def load_model(model_dir: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    return modeldir.load_model(model_dir, models.build)


@dataclass(frozen=True)
class RenderedEpisode:
    frames: list[Any]
    total_reward: float
    steps: int
    terminated: bool  # the episode ended (landed, crashed, pole fell)
    truncated: bool  # cut by the environment's time limit or by max_steps


def render_episode(net: torch.nn.Module, env_id: str, seed: int, max_frames: int, every: int,
                   max_steps: int | None = None) -> RenderedEpisode:
    """One greedy episode rendered as rgb_array frames (every `every`-th, at most max_frames),
    stopped after `max_steps` when given (the served /rl/episode bounds its work that way)."""
    env = make_env(env_id, render=True, training=False)
    frames, total, term, trunc, t = [], 0.0, False, False, 0
    try:
        obs, _ = env.reset(seed=seed)
        while not (term or trunc):
            if t % every == 0 and len(frames) < max_frames:
                frames.append(env.render())
            with torch.no_grad():
                action = int(models.greedy(net(as_batch(np.asarray(obs)[None], torch.device("cpu"))))[0])
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            t += 1
            trunc = bool(trunc) or (max_steps is not None and t >= max_steps and not term)
        frames.append(env.render())
    finally:
        env.close()
    return RenderedEpisode(frames, total, t, bool(term), bool(trunc))


def _learning_curve(history: list[dict[str, Any]], plots_dir: Path, threshold: float, title: str) -> None:
    keys = ("epoch", "env_steps", "episodes", "train_return_mean", "val_return_mean", "loss", "epsilon")
    with open(plots_dir / "learning_curve.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(keys)
        for h in history:
            w.writerow([f"{float(h.get(k, 0.0)):.6g}" for k in keys])
    plot_learning_curve(history, plots_dir / "learning_curve.png", title, threshold, f"solve threshold {threshold:g}")


def plot_learning_curve(history: list[dict[str, Any]], path: Path, title: str, line: float, line_label: str,
                        train_label: str = "train (last 100 episodes)", val_label: str = "validation (greedy)",
                        xlabel: str = "environment steps") -> None:
    """Training and greedy-validation returns against env steps, with one reference line (the
    solve threshold; the bench's random-policy score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [h["env_steps"] for h in history]
    ax.plot(steps, [h["train_return_mean"] for h in history], "b.-", label=train_label)
    ax.plot(steps, [h["val_return_mean"] for h in history], "go-", label=val_label)
    ax.axhline(line, color="r", ls="--", label=line_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("episode return")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def gif_bytes(frames: list[Any], scale: float, fps: int) -> bytes:
    """Frames -> an animated GIF (scaled by `scale`, looping)."""
    from PIL import Image

    images = [Image.fromarray(np.asarray(f)) for f in frames]
    if scale != 1.0:
        size = (max(1, int(images[0].width * scale)), max(1, int(images[0].height * scale)))
        images = [im.resize(size, Image.Resampling.BILINEAR) for im in images]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0,
                   optimize=False)
    return buf.getvalue()


def save_gif(frames: list[Any], path: Path, scale: float, fps: int) -> None:
    path.write_bytes(gif_bytes(frames, scale, fps))


def evaluate(model_dir: Path, prepared_dir: Path, plots_dir: Path, params: dict[str, Any]) -> dict[str, float]:
    """Greedy returns on the validation seeds and the 100 fixed test seeds; curve + one GIF.

    params (`families.rl.<task>.evaluate`): gif_max_frames (300), gif_every (2: every 2nd frame),
    gif_scale (0.5), gif_fps (25)."""
    net, config = load_model(model_dir)
    info = read_json(Path(prepared_dir) / "info.json")
    if info["task"] != config["task"]:
        raise DataError(f"{prepared_dir / 'info.json'}: task {info['task']!r} but the model was trained on {config['task']!r}")
    test_seeds = read_test_seeds(Path(prepared_dir))
    label = f"evaluate rl/{info['env_id']}"
    with Progress(f"{label} val", len(info["val_seeds"]), "episodes") as p:
        val_returns, _ = run_episodes(net, info["env_id"], list(info["val_seeds"]), progress=p)
    with Progress(f"{label} test", len(test_seeds), "episodes") as p:
        test_returns, _ = run_episodes(net, info["env_id"], test_seeds, progress=p)
    history = config.get("history", [])
    last = history[-1] if history else {}
    threshold = float(info["solve_threshold"])
    test_mean = float(np.mean(test_returns))
    metrics = {
        "val_return_mean": float(np.mean(val_returns)),
        "test_return_mean": test_mean,
        "test_return_std": float(np.std(test_returns)),
        "eval_return_mean": test_mean,
        "eval_return_std": float(np.std(test_returns)),
        "eval_return_min": float(np.min(test_returns)),
        "eval_episodes": float(len(test_returns)),
        "solved": float(test_mean >= threshold and len(test_returns) >= int(info.get("solve_window", 100))),
        "steps_to_solve": float(last.get("steps_to_solve", -1)),
        "steps_to_solve_greedy": float(last.get("steps_to_solve_greedy", -1)),
        "epochs_trained": float(len(history)),
        "env_steps": float(last.get("env_steps", 0)),
    }
    plots_dir.mkdir(parents=True, exist_ok=True)
    with open(plots_dir / "test_returns.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["episode", "seed", "return"])
        w.writerows([[i, s, f"{r:.6g}"] for i, (s, r) in enumerate(zip(test_seeds, test_returns))])
    if history:
        _learning_curve(history, plots_dir, threshold, f"{config['model']} on {info['env_id']}")
    frames = render_episode(net, info["env_id"], test_seeds[0], int(params.get("gif_max_frames", 300)),
                            int(params.get("gif_every", 2))).frames
    save_gif(frames, plots_dir / "episode.gif", float(params.get("gif_scale", 0.5)), int(params.get("gif_fps", 25)))
    return metrics
