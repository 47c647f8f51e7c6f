"""Progress a user can watch on long work, in a terminal and in a CI log alike.

Why two shapes: a bar that redraws in place (tqdm) is what a person at a terminal wants, but in a
log file every redraw is noise, and a Ray worker's output reaches the terminal only line by line.
So: `Progress` draws a tqdm bar when its stream is a terminal and otherwise prints a plain line
at the start, about every quarter and at the end; a training epoch is always one plain line
(`epoch_line`), printed by rank 0 only.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any, TextIO

# What an epoch line shows besides the epoch: the loss, then the validation metrics, then time.
_FIRST = ("train_loss", "loss", "d_loss")
_LAST = ("epoch_time_s",)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def epoch_line(label: str, epoch: int, epochs: int, metrics: dict[str, Any], max_fields: int = 5) -> str:
    """'train forecaster/vic_elec epoch 3/20  train_loss 0.123  val_mae 4.6e+03  epoch_time_s 1.2'."""
    keys = [k for k in _FIRST if k in metrics]
    keys += sorted(k for k in metrics if k.startswith("val_") and isinstance(metrics[k], (int, float)))
    keys = keys[: max_fields - 1] + [k for k in _LAST if k in metrics]
    fields = "  ".join(f"{k} {_fmt(metrics[k])}" for k in keys)
    return f"{label} epoch {epoch}/{epochs}  {fields}".rstrip()


class Progress:
    """`with Progress("evaluate rl/LunarLander-v3", 100, "episodes") as p: ... p.update(k)`."""

    def __init__(self, label: str, total: int, unit: str = "it", stream: TextIO | None = None,
                 plain_every: float = 0.25) -> None:
        self.label, self.total, self.unit = label, max(int(total), 0), unit
        self.stream = stream or sys.stderr
        self.done, self.t0 = 0, time.perf_counter()
        self._next_plain = 0.0
        self._plain_every = plain_every
        self._bar = None
        if getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, desc=label, unit=f" {unit}", file=self.stream, leave=False,
                             dynamic_ncols=True)

    def __enter__(self) -> Progress:
        if self._bar is None:
            self._plain()
        return self

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + n) if self.total else self.done + n
        if self._bar is not None:
            self._bar.update(n)
        elif self.total and self.done / self.total >= self._next_plain and self.done < self.total:
            self._plain()

    def _plain(self) -> None:
        elapsed = time.perf_counter() - self.t0
        print(f"{self.label}: {self.done}/{self.total} {self.unit} ({elapsed:.1f} s)", file=self.stream, flush=True)
        self._next_plain = (self.done / self.total if self.total else 0.0) + self._plain_every

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()
        if exc[0] is None:
            self._plain()  # the last line stays in both shapes
