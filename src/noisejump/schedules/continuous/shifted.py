"""A continuous schedule shifted in log-SNR: lambda_s(t) = lambda(t) - 2 log s.

    log signal_t, log sigma_t = relation(lambda(t) - 2 log s)

where ``relation`` is the base family's (``log_signal_sigma_from_log_snr``): VP stays VP,
flow matching keeps signal + sigma = 1 (so sigma_t = s t / (1 + (s - 1) t), Esser et al.
2024, eq. 23), EDM keeps signal = 1 (sigma' = s sigma), sub-VP keeps sigma = 1 - signal^2.
The time is the base's: ``Shifted(base, s)`` at t is the base at the t' with
lambda(t') = lambda(t) - 2 log s, but the model is given t. Sampler draws map to times as
for the base (a sigma draw names a noise level of the base, e.g. EDM's time), so every
sampler's law of log-SNRs moves by -2 log s.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..shift import check_shift
from .base import ContinuousSchedule


class Shifted(ContinuousSchedule):
    """``base`` shifted by s > 0 in log-SNR (module docstring); build it with
    ``base.shifted(s)``. Shifting a shifted schedule multiplies the shifts.

    Attributes:
        base: the unshifted schedule (its preconditioning, e.g. EDM's c_skip, takes the
            shifted noise level: sigma' = s sigma at time sigma).
        shift: s.
    """

    base: ContinuousSchedule
    shift: float

    def __init__(self, base: ContinuousSchedule, s: float) -> None:
        s = check_shift(s)
        if isinstance(base, Shifted):  # shifts compose: lambda - 2 log s1 - 2 log s2
            s *= base.shift
            base = base.base
        self.base = base
        self.shift = s
        self._log_shift2 = 2.0 * math.log(s)  # lambda moves by -2 log s
        self.t_min, self.t_max, self.time_name = base.t_min, base.t_max, base.time_name
        self.is_flow = getattr(base, "is_flow", False)
        self.name = f"{base.name}*{s:g}"

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_signal, log_sigma = self.base.log_signal_sigma(t)
        lam = 2.0 * (log_signal - log_sigma) - self._log_shift2
        return self.base.log_signal_sigma_from_log_snr(lam)

    def log_signal_sigma_from_log_snr(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.base.log_signal_sigma_from_log_snr(lam)

    def time_at_log_snr(self, lam: Any) -> torch.Tensor:
        lam = torch.as_tensor(lam, dtype=torch.float64)
        return self.base.time_at_log_snr(lam + self._log_shift2)

    def time_of(self, x: Any, space: str = "u") -> torch.Tensor:
        """The base's time of the draws: a shift keeps the time axis, so every sampler's
        law of log-SNRs moves by -2 log s (a sigma draw is a noise level of the base)."""
        return self.base.time_of(x, space)

    def default_sampler(self) -> Any:
        return self.base.default_sampler()

    def __repr__(self) -> str:
        return f"{self.base!r}.shifted({self.shift:g})"
