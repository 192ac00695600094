"""Which n of T training steps a sampler keeps: the peers' timestep spacings, by name.

Steps are code indices 0..T-1 (``Schedule``), returned in increasing order. For a count n:

    linspace   round(linspace(0, T - 1, n))                  diffusers "linspace"
    leading    k floor(T / n) + steps_offset, k = 0..n-1       diffusers "leading"
    trailing   round(T - k T / n) - 1, k = 0..n-1              diffusers "trailing"
    ddim       0, s, 2 s, ... < T, the smallest stride s in [1, T - 1] with ceil(T / s) = n
                                                     guided-diffusion space_timesteps "ddimN"
    sections   T split into len(counts) near-equal sections, count c_i taken from
               section i at start_i + round(j (size_i - 1) / (c_i - 1)), j = 0..c_i-1
                                              guided-diffusion space_timesteps "c1,c2,..."

diffusers: ``DDPMScheduler.set_timesteps`` / ``DDIMScheduler.set_timesteps`` with
``timestep_spacing`` (Lin et al. 2023, arXiv 2305.08891, table 2); ``steps_offset`` is
added under "leading" only, as there. guided-diffusion: ``space_timesteps`` in
guided_diffusion/respace.py (Nichol & Dhariwal 2021, arXiv 2102.09672). Rounding is half to
even and the arithmetic is NumPy's float64, as in both peers, so the same steps come out
(tests/test_spacing.py checks every count against diffusers' schedulers and against a
transcription of guided-diffusion's rule).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["SPACINGS", "spaced_steps"]

#: The names ``spaced_steps`` and ``Schedule.respace`` accept.
SPACINGS = ("linspace", "leading", "trailing", "ddim", "sections")


def spaced_steps(
    num_steps: int, count: Any, spacing: str = "linspace", *, steps_offset: int = 0
) -> torch.Tensor:
    """The increasing int64 step indices that ``spacing`` keeps of ``num_steps`` (T).

    Args:
        num_steps: T, the steps to choose from.
        count: n, how many to keep: an int in [1, T]; for "sections" also a sequence of
            per-section counts (guided-diffusion's "10,15,20" is ``(10, 15, 20)``).
        spacing: one of ``SPACINGS`` (module docstring).
        steps_offset: diffusers' ``steps_offset``, added under "leading"; "linspace" and
            "trailing" ignore it as diffusers does; guided-diffusion's rules have none.
    Raises:
        ValueError: an unknown spacing, a count outside [1, T], a count the rule cannot
            produce (no "ddim" stride gives exactly n; a section smaller than its count),
            or a "leading" offset that pushes the last step past T - 1.
        TypeError: a count or offset that is not an integer (a float, a bool).
    """
    if spacing not in SPACINGS:
        raise ValueError(f"unknown spacing {spacing!r}; choose one of {list(SPACINGS)}")
    offset = _integer(steps_offset, "steps_offset")
    if offset < 0:
        raise ValueError(f"steps_offset must be >= 0, got {offset}")
    if offset and spacing in ("ddim", "sections"):
        raise ValueError(
            f"steps_offset is diffusers' (it applies to spacing='leading'); guided-diffusion's "
            f"spacing={spacing!r} has none, got steps_offset={offset}"
        )
    if spacing == "sections":
        return _sections(num_steps, count)
    n = _integer(count, "count")
    if not 1 <= n <= num_steps:
        raise ValueError(f"count must be in [1, {num_steps}], got {n}")
    T = num_steps
    if spacing == "linspace":
        kept = np.linspace(0, T - 1, n).round()
    elif spacing == "leading":
        kept = np.arange(n) * (T // n) + offset
        if kept[-1] > T - 1:
            raise ValueError(
                f"spacing='leading' with steps_offset={offset} keeps step {int(kept[-1])} "
                f"for n={n}, past the last step {T - 1}; use n < {T} or a smaller offset"
            )
    elif spacing == "trailing":
        # diffusers builds these with np.arange(T, 0, -T / n), which for some n overshoots
        # to an (n + 1)-th value that rounds to step -1 (T = 1000, n = 61, diffusers 0.42.1);
        # the n intended steps are its first n (diffusers lists them from the last down).
        kept = np.round(np.arange(T, 0, -T / n))[:n][::-1] - 1
    else:
        kept = np.arange(0, T, _ddim_stride(T, n))
    return torch.from_numpy(kept.astype(np.int64))


def _ddim_stride(T: int, n: int) -> int:
    """The stride of guided-diffusion's "ddimN": the smallest s in [1, T - 1] with
    ceil(T / s) = n. ceil(T / s) falls as s grows and ceil(T / s) <= n exactly when
    s >= ceil(T / n), so s = ceil(T / n) or no stride at all."""
    stride = -(-T // n)
    if stride <= T - 1 and -(-T // stride) == n:
        return stride
    near = sorted({-(-T // s) for s in range(max(1, stride - 2), min(T - 1, stride + 2) + 1)})
    raise ValueError(
        f"spacing='ddim': no integer stride s in [1, {T - 1}] keeps exactly n={n} of {T} "
        f"steps (guided-diffusion's space_timesteps({T}, 'ddim{n}') refuses it too); "
        + (f"counts near it that work: {near}" if near else "no count works")
    )


def _sections(T: int, counts: Any) -> torch.Tensor:
    """guided-diffusion's section counts: T split into len(counts) sections whose sizes
    differ by at most one (the first T mod len(counts) are one longer); section i keeps
    start_i + round(x_j), x_j the running float64 sum of (size_i - 1) / (c_i - 1)."""
    if isinstance(counts, Sequence) and not isinstance(counts, str):
        counts = [_integer(c, "count") for c in counts]
    else:
        counts = [_integer(counts, "count")]
    if not counts or any(c < 0 for c in counts) or sum(counts) == 0:
        raise ValueError(
            f"spacing='sections' needs counts >= 0 per section, at least one positive; got {counts}"
        )
    size, extra = divmod(T, len(counts))
    kept, start = [], 0
    for i, count in enumerate(counts):
        length = size + (1 if i < extra else 0)
        if count > length:
            raise ValueError(
                f"spacing='sections': section {i} has {length} steps, fewer than its count "
                f"{count} (counts {counts} of {T} steps)"
            )
        stride = (length - 1) / (count - 1) if count > 1 else 1.0
        # A running sum, as guided-diffusion adds the stride step by step (np.cumsum adds
        # in order); its rounding differs from j * stride at some counts.
        positions = np.cumsum(np.concatenate([[0.0], np.full(max(count - 1, 0), stride)]))
        kept.append(start + np.round(positions[:count]).astype(np.int64))
        start += length
    return torch.from_numpy(np.unique(np.concatenate(kept)))


def _integer(value: Any, name: str) -> int:
    """A Python or NumPy integer as an int; anything else (bool, float) a TypeError."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}") from None
