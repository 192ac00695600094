"""The training progress line: elapsed time, ETA, what each loss is, and how often it
prints when nobody watches a terminal (a log file, a pipe, a batch job)."""

from __future__ import annotations

import io
import json
import re

from _train_helpers import cli_args, tiny_config

from noisejump.cli import main
from noisejump.train.progress import LOG_SECONDS, Progress, clock_time


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _elapsed(line: str) -> int:
    """Seconds of the line's "elapsed m:ss" or "elapsed h:mm:ss"."""
    parts = re.search(r"elapsed ([\d:]+)", line).group(1).split(":")
    return sum(int(part) * 60**i for i, part in enumerate(reversed(parts)))


def test_a_log_hears_from_a_slow_run_at_least_every_30_seconds():
    """7 s steps, 2000 steps: one line per tenth would leave 23 minutes of silence."""
    clock, log = FakeClock(), io.StringIO()
    progress = Progress(2000, 0, 8, stream=log, clock=clock)
    for step in range(1, 2001):
        clock.now += 7.0
        progress.update(step, 0.5, 7.0, 0.1)
    times = [_elapsed(line) for line in log.getvalue().splitlines()]
    assert times[0] == 7 and times[-1] == 14000  # the first and the last step
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= LOG_SECONDS + 7
    assert len(times) <= 14000 / LOG_SECONDS + 10 + 1  # not a line per step either


def test_a_fast_run_prints_each_tenth_and_a_terminal_is_redrawn_in_place():
    clock, log, terminal = FakeClock(), io.StringIO(), Terminal()
    to_log = Progress(100, 0, 8, stream=log, clock=clock)
    to_terminal = Progress(100, 0, 8, stream=terminal, clock=clock)
    for step in range(1, 101):
        clock.now += 0.1
        to_log.update(step, 0.5, 0.1, 0.01)
        to_terminal.update(step, 0.5, 0.1, 0.01)
    to_terminal.close()
    steps = [int(re.match(r"step (\d+)/", line).group(1)) for line in log.getvalue().splitlines()]
    assert steps == [1, *range(10, 101, 10)]
    redraws = terminal.getvalue().split("\r")[1:]
    assert 15 <= len(redraws) <= 22 and terminal.getvalue().endswith("\n")  # every 0.5 s


def test_the_line_shows_elapsed_time_an_eta_and_names_each_loss():
    clock, log = FakeClock(), io.StringIO()
    progress = Progress(400, 100, 16, stream=log, clock=clock)  # resumed at step 100
    for step, loss in zip(range(101, 151), [1.0] * 49 + [3.0], strict=True):
        clock.now += 2.0
        progress.update(step, loss, 2.0, 0.5)
    last = log.getvalue().splitlines()[-1]
    assert "step 150/400 (38%)" in last
    # the step's own loss, and the mean of the steps so far (up to the last 100)
    assert "loss 3.0000 last step, 1.0400 mean of 50" in last
    assert "elapsed 1:40" in last and "ETA 8:20" in last  # 250 steps x 2 s
    assert "8 samples/s" in last and "noising 25.0% of step time" in last


def test_notes_are_printed_when_they_change():
    clock, log = FakeClock(), io.StringIO()
    progress = Progress(1000, 0, 8, stream=log, clock=clock)
    progress.update(1, 0.5, 0.1, 0.0)
    progress.update(2, 0.5, 0.1, 0.0)  # not due
    progress.update(3, 9.0, 0.1, 0.0, notes=["loss x18 in 2 steps"])
    progress.update(4, 9.0, 0.1, 0.0, notes=["loss x18 in 2 steps"])  # unchanged: not due
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].endswith("loss x18 in 2 steps")


def test_clock_time():
    assert [clock_time(s) for s in (0, 59.6, 61, 3599, 3600, 86399)] == [
        "0:00", "1:00", "1:01", "59:59", "1:00:00", "23:59:59",
    ]  # fmt: skip


def test_train_prints_progress_to_stderr_and_the_summary_names_its_losses(tmp_path, capsys):
    config = tiny_config(steps=6)
    argv = ["train", str(tmp_path / "run"), *cli_args(config)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()  # stderr is not a terminal under pytest
    assert len(lines) == 6  # steps 1 to 6: a run of 6 steps prints each (a tenth is < 1)
    assert all("elapsed" in line and "ETA" in line for line in lines)
    losses = json.loads((tmp_path / "run" / "losses.json").read_text())
    assert f"loss {losses[-1]:.4f} last step" in lines[-1]
    summary = json.loads(captured.out)
    assert summary["final_loss_last_step"] == losses[-1]
    assert summary["final_loss_mean_last_100"] == sum(losses) / len(losses)
    assert "final_loss" not in summary
