"""The training progress line: step, losses, speed, elapsed time and an ETA.

    step 800/4000 (20%)  loss 0.0412 last step, 0.0455 mean of 100  1839 samples/s
    noising 2.4% of step time  elapsed 0:55  ETA 3:40

(one line). On a terminal it is redrawn in place at most every ``TTY_SECONDS``. Anywhere
else (a log file, a pipe, a batch job) a new line is printed after the first step, at every
tenth of the run, at the last step, and whenever ``LOG_SECONDS`` have passed since the last
line: a log is never silent for longer than that plus one step. ETA = remaining steps x the
mean wall time per step so far in this process (checkpoint writes included).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TextIO

#: Seconds between redraws on a terminal.
TTY_SECONDS = 0.5
#: The longest a non-terminal output goes without a progress line (plus one step).
LOG_SECONDS = 30.0
#: Steps in the running mean of the loss (the summary's final loss is the same mean).
LOSS_WINDOW = 100


class Progress:
    """The progress line of a run of ``steps`` optimiser steps resumed at ``start``.

    Args:
        batch: samples per step (for samples/s).
        enabled: print nothing when False (the timing is still kept, for the summary).
        stream: where the line goes (default: ``sys.stderr``).
        clock: seconds, monotonic (default: ``time.monotonic``); the tests pass a fake one.
    """

    def __init__(
        self,
        steps: int,
        start: int,
        batch: int,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.steps, self.start, self.batch, self.enabled = steps, start, batch, enabled
        self.stream = sys.stderr if stream is None else stream
        self.tty = _isatty(self.stream)
        self.clock = clock or time.monotonic
        self.started = self.clock()
        self.last_print: float | None = None
        self.last_notes: tuple[str, ...] = ()
        self.every = max(1, (steps - start) // 10)
        self.step_seconds = self.noise_seconds = 0.0
        self.count = 0
        self.recent: deque[float] = deque(maxlen=LOSS_WINDOW)

    @property
    def noise_share(self) -> float:
        """The share of the measured step time spent noising (NaN before the first step)."""
        return self.noise_seconds / self.step_seconds if self.step_seconds else math.nan

    def update(
        self,
        step: int,
        loss: float,
        step_seconds: float,
        noise_seconds: float,
        notes: Sequence[str] = (),
    ) -> None:
        """Record step ``step`` (1-based: steps done) and print the line when it is due.

        ``notes`` are extra fields at the end of the line (a warning, say); a change in
        them is printed at once.
        """
        self.step_seconds += step_seconds
        self.noise_seconds += noise_seconds
        self.count += 1
        self.recent.append(loss)
        if not self.enabled:
            return
        now = self.clock()
        notes = tuple(notes)
        if not (self._due(step, now) or notes != self.last_notes):
            return
        self.last_print, self.last_notes = now, notes
        line = "  ".join(self.fields(step, loss, now - self.started) + list(notes))
        if self.tty:
            width = shutil.get_terminal_size().columns
            print("\r" + line[: width - 1].ljust(width - 1), end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)

    def fields(self, step: int, loss: float, elapsed: float) -> list[str]:
        """The line's fields, in order."""
        done = step - self.start
        remaining = elapsed / max(done, 1) * (self.steps - step)
        rate = self.count * self.batch / self.step_seconds if self.step_seconds else math.nan
        mean = sum(self.recent) / len(self.recent)
        return [
            f"step {step}/{self.steps} ({100 * step / self.steps:.0f}%)",
            f"loss {loss:.4f} last step, {mean:.4f} mean of {len(self.recent)}",
            f"{rate:.0f} samples/s",
            f"noising {100 * self.noise_share:.1f}% of step time",
            f"elapsed {clock_time(elapsed)}",
            f"ETA {clock_time(remaining)}",
        ]

    def _due(self, step: int, now: float) -> bool:
        if self.last_print is None or step == self.steps:
            return True
        if self.tty:
            return now - self.last_print >= TTY_SECONDS
        return step % self.every == 0 or now - self.last_print >= LOG_SECONDS

    def close(self) -> None:
        """End the redrawn terminal line."""
        if self.enabled and self.tty and self.last_print is not None:
            print(file=self.stream, flush=True)


def clock_time(seconds: float) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
