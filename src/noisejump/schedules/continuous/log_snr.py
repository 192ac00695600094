"""A process given by its log-SNR function lambda(t) (Kingma et al. 2021, VDM, arXiv 2107.00630).

    signal_t^2 = sigmoid(lambda_t),   sigma_t^2 = sigmoid(-lambda_t)          (VDM eq. 3-4,
                                                                           gamma = -lambda)

so signal^2 + sigma^2 = 1 (variance preserving) and any strictly decreasing lambda defines
a process; VDM learns it with a monotone network. Logs are taken as log(sigmoid(x)) =
-softplus(-x), finite for any finite lambda.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .base import ContinuousSchedule

F64 = torch.float64
CHECK_POINTS = 1001


class LogSNR(ContinuousSchedule):
    """The variance-preserving process of a user-given or learned log-SNR function.

    Args:
        log_snr_fn: maps a float64 tensor of times in [0, 1] to lambda(t) of the same shape
            (e.g. a learned ``torch.nn.Module`` in float64). Checked once, at construction,
            on 1001 evenly spaced times: strictly decreasing, finite inside (0, 1), +inf
            allowed at 0 and -inf at 1. Where lambda(0) is finite the state at t = 0 is not
            exactly the data (sigma_0^2 = sigmoid(-lambda(0)) > 0); the data is s = -1.
        name: shown in ``repr``.
    """

    def __init__(self, log_snr_fn: Callable[[torch.Tensor], torch.Tensor], name: str = "log_snr"):
        if not callable(log_snr_fn):
            raise TypeError(f"log_snr_fn must be callable, got {type(log_snr_fn).__name__}")
        self.log_snr_fn = log_snr_fn
        self.name = name
        grid = torch.linspace(0.0, 1.0, CHECK_POINTS, dtype=F64)
        with torch.no_grad():
            values = torch.as_tensor(log_snr_fn(grid))
        if values.shape != grid.shape:
            raise ValueError(
                f"log_snr_fn must return one value per time: shape {tuple(grid.shape)} for "
                f"input of that shape, got {tuple(values.shape)}"
            )
        values = values.to(F64)
        # +inf at t = 0 (the data) and -inf at t = 1 (pure noise) are allowed; NaN never.
        finite = torch.isfinite(values)
        finite[0] |= values[0] == math.inf
        finite[-1] |= values[-1] == -math.inf
        if not finite.all():
            k = int((~finite).nonzero()[0])
            raise ValueError(
                f"log_snr_fn must be finite inside (0, 1) (+inf allowed at 0, -inf at 1); "
                f"lambda({grid[k]:.3g}) = {values[k]}"
            )
        if not (values[1:] < values[:-1]).all():
            k = int((values[1:] >= values[:-1]).nonzero()[0])
            raise ValueError(
                f"log_snr_fn must strictly decrease in t (noise grows); lambda({grid[k + 1]:.4g})"
                f" = {values[k + 1]:.6g} >= lambda({grid[k]:.4g}) = {values[k]:.6g}"
            )

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lam = torch.as_tensor(self.log_snr_fn(t)).to(F64)
        return self.log_signal_sigma_from_log_snr(lam)  # the variance-preserving relation

    def __repr__(self) -> str:
        return f"LogSNR({self.name!r})"
