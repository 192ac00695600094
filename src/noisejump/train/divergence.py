"""Divergence: the loss becomes non-finite, or its running mean grows by a factor.

With the window W = 50 and the factor F = 10:

    m_k = (loss_{k-W+1} + ... + loss_k) / W      the mean of the last W losses (k >= W)
    diverging at step k  <=>  m_k > F min_{W <= j <= k} m_j

One batch alone, among W - 1 losses at the best mean b, trips it only if its loss x
exceeds (W F - W + 1) b = 451 b ((x + 49 b) / 50 > 10 b); a loss that plateaus or creeps
up after its best stays far below 10x. A non-finite
loss stops the run (``loop.py`` raises ``Diverged`` before anything more is written);
growth only flags it, in the progress line and in the summary's "divergence", since the
run may recover and its checkpoints are still finite.
"""

from __future__ import annotations

import math
from collections import deque

WINDOW = 50
FACTOR = 10.0


class DivergenceWatch:
    """Feed it every loss (``update``); ``flag`` is the progress line's note (empty while
    the run is healthy) and ``summary()`` the summary's "divergence" entry."""

    def __init__(self, window: int = WINDOW, factor: float = FACTOR):
        self.window, self.factor = window, factor
        self.recent: deque[float] = deque(maxlen=window)
        self.best = math.inf
        self.ratio = 0.0  # m_k / min m_j at the latest step
        self.first_step: int | None = None  # first step flagged for growth
        self.max_ratio = 0.0
        self.non_finite: tuple[int, float] | None = None

    def update(self, step: int, loss: float) -> None:
        if not math.isfinite(loss):
            self.non_finite = (step, loss)
            return
        self.recent.append(loss)
        if len(self.recent) < self.window:
            return
        mean = sum(self.recent) / self.window
        self.best = min(self.best, mean)
        self.ratio = mean / self.best if self.best > 0 else 1.0
        if self.ratio > self.factor:
            self.first_step = self.first_step or step
            self.max_ratio = max(self.max_ratio, self.ratio)

    @property
    def flag(self) -> str:
        if self.non_finite is not None:
            return f"DIVERGED: loss is {self.non_finite[1]}"
        if self.ratio > self.factor:
            return f"DIVERGING: {self.window}-step mean loss {self.ratio:.1f}x its best"
        return ""

    def summary(self) -> dict | None:
        """None for a healthy run; otherwise what diverged, where, and by how much."""
        if self.non_finite is not None:
            step, loss = self.non_finite
            return {"kind": "non-finite loss", "step": step, "loss": str(loss)}
        if self.first_step is None:
            return None
        return {
            "kind": "loss growth",
            "first_step": self.first_step,
            "max_ratio": round(self.max_ratio, 3),
            "rule": f"mean of the last {self.window} losses > {self.factor:g}x its minimum",
            "diverging_at_end": self.ratio > self.factor,
        }
