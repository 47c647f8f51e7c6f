"""Ray's benign, repeated worker warnings are kept out of the terminal; every other line is printed."""

from __future__ import annotations

import pytest

from components.cluster import BENIGN_WORKER_LINES, keep_worker_line, quiet_benign_worker_logs

BENIGN = ("Failed to query Ray Train Controller actor state. State API may be temporarily unavailable. "
          "Continuing to monitor.")


def test_only_the_listed_lines_are_dropped() -> None:
    assert all(not keep_worker_line(f"[placement_group_cleaner] {p} ...") for p in BENIGN_WORKER_LINES)
    assert not keep_worker_line(BENIGN)
    assert keep_worker_line("epoch 3/20 val_mae=0.12") and keep_worker_line("Failed to load the checkpoint")


def test_the_drivers_printer_filters_worker_lines(ray_local, capsys: pytest.CaptureFixture) -> None:
    from ray._private import worker

    assert quiet_benign_worker_logs()
    handlers = dict(worker.global_worker_stdstream_dispatcher.handlers)
    batch = {"lines": [BENIGN, "a useful line"], "is_err": False, "pid": 12, "ip": "127.0.0.1", "job": "01000000",
             "actor_name": "", "task_name": "cleaner"}
    handlers["ray_print_logs"](batch)
    handlers["ray_print_logs"]({**batch, "lines": [BENIGN]})  # nothing left: nothing printed
    out = capsys.readouterr().out
    assert "a useful line" in out and "Failed to query" not in out and out.count("(cleaner") == 1
