"""Timing helpers of the benchmarks: medians of repeated runs, interleaved for ratios.

Machines are noisy: times are medians of repeated runs, and quantities to be compared are
timed in turn within each round (``interleaved_median_times``), so their ratios hold.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_times(
    fns, device, repeats: int, warmup: int = 1, calls: int = 1
) -> list[float]:
    """Median wall time in seconds of one call of each of ``fns``, timed in turn within each
    of ``repeats`` rounds, so a noisy machine slows them alike and their ratios hold. Each
    timing covers ``calls`` calls (for calls of microseconds, where the clock's own cost
    would count) and is divided by ``calls``."""
    device = torch.device(device)
    for _ in range(warmup):
        for fn in fns:
            fn()
    synchronize(device)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, seen in zip(fns, times, strict=True):
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            synchronize(device)
            seen.append((time.perf_counter() - start) / calls)
    return [statistics.median(seen) for seen in times]
