"""Progress: a bar in a terminal, a few plain lines in a log; one line per training epoch."""

from __future__ import annotations

import io

from components.progress import Progress, epoch_line


def test_a_log_gets_a_line_at_the_start_each_quarter_and_the_end() -> None:
    out = io.StringIO()
    with Progress("evaluate rl/CartPole-v1 test", 100, "episodes", stream=out) as p:
        for _ in range(100):
            p.update()
    lines = out.getvalue().splitlines()
    assert [line.split(": ")[1].split(" (")[0] for line in lines] == [f"{n}/100 episodes" for n in (0, 25, 50, 75, 100)]
    assert "\r" not in out.getvalue()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_that_redraws_in_place() -> None:
    out = Terminal()
    with Progress("evaluate translator/dates val greedy", 40, "sentences", stream=out) as p:
        for _ in range(4):
            p.update(10)
    text = out.getvalue()
    assert "\r" in text and "evaluate translator/dates val greedy" in text and "40/40" in text
    assert "40/40 sentences (" in text.splitlines()[-1]  # the last line stays


def test_a_failed_run_prints_no_final_line() -> None:
    out = io.StringIO()
    try:
        with Progress("x", 10, stream=out) as p:
            p.update(1)
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert out.getvalue().splitlines() == ["x: 0/10 it (0.0 s)"]


def test_an_epoch_line_shows_the_loss_the_validation_metrics_and_the_time() -> None:
    line = epoch_line("train forecaster/vic_elec", 3, 20, {"epoch": 3, "train_loss": 0.1234, "val_mae": 4631.05,
                                                           "lr": 0.01, "epoch_time_s": 1.234, "resumed_at_epoch": 0})
    assert line == "train forecaster/vic_elec epoch 3/20  train_loss 0.1234  val_mae 4631  epoch_time_s 1.234"
