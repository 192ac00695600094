"""Ancestral sampling of a token model: from the prior to the data in a stated number of steps.

With x0 logits f(x_t, t) (*shape, K), each step draws x_s ~ p(x_s | x_t), the model-side
posterior of ``CategoricalProcess.p_posterior_log_probs`` (D3PM eq. 4; for absorbing,
MDLM's ancestral unmasking: a masked token is unmasked with probability
(keep_s - keep_t) / (1 - keep_t), to a class drawn from the model, and an unmasked token
stays as it is). The grid of n steps, t_n > ... > t_1, then the data (s = -1):

    discrete     t_i the n steps ``spaced_steps(T, n)`` keeps ("linspace": 0, ..., T - 1)
    continuous   t_i = t_min + (1 - t_min) (i - 1) / (n - 1), evenly from 1 down to t_min
                 (n = 1: t_1 = 1)

The start x_(t_n) is drawn from the prior m (absorbing: every token masked; uniform: uniform
classes; matrices: the marginal of x_(T-1) under uniform x0, the mean row of Qbar_(T-1)).
Every uniform comes from ``generator`` on the CPU, so samples do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..schedules.spacing import spaced_steps
from .draws import categorical_draw
from .process import CategoricalProcess

__all__ = ["sampling_grid", "ancestral_sample"]

F64 = torch.float64


def sampling_grid(process: CategoricalProcess, steps: int) -> list[Any]:
    """The n times t_n > ... > t_1 the sampler evaluates the model at (module docstring)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    if process.is_continuous:
        t_min = float(getattr(process.schedule, "t_min", 0.0))
        if steps == 1:
            return [1.0]
        grid = torch.linspace(1.0, t_min, steps, dtype=F64)
        return grid.tolist()
    T = process.num_steps
    if steps > T:
        raise ValueError(f"steps must be in [1, {T}] (the process has T = {T}), got {steps}")
    return list(reversed(spaced_steps(T, steps).tolist()))


@torch.no_grad()
def ancestral_sample(
    model: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    process: CategoricalProcess,
    shape: tuple[int, ...],
    *,
    steps: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Tokens (``shape``, int64, values in [0, K)) by ``steps`` ancestral steps of
    ``model(x_t, t)`` -> x0 logits (*shape, K), t a (B,) tensor (int64 steps or float64
    times)."""
    device = torch.device(device)
    grid = sampling_grid(process, steps)
    x = categorical_draw(_prior(process).expand(*shape, -1), _uniform(shape, generator))
    x = x.to(device)
    for i, t in enumerate(grid):
        s = grid[i + 1] if i + 1 < len(grid) else -1
        time = torch.full((shape[0],), t, device=device, dtype=_time_dtype(process))
        logits = model(x, time).float()
        log_post = process.p_posterior_log_probs(logits, x, t, s)
        x = categorical_draw(log_post.exp(), _uniform(shape, generator).to(device))
    return x


def _prior(process: CategoricalProcess) -> torch.Tensor:
    if process.matrices is None:
        return process.stationary
    return process.marginal_matrix(process.num_steps - 1).mean(0)


def _uniform(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=generator, dtype=F64)


def _time_dtype(process: CategoricalProcess) -> torch.dtype:
    return F64 if process.is_continuous else torch.int64
