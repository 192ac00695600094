"""Flow matching / rectified flow: the straight path from data to noise.

    x_t = (1 - t) x0 + t e,   t in [0, 1]          (Liu et al. 2022, arXiv 2209.03003, eq. 1;
                                                     Lipman et al. 2022, arXiv 2210.02747)
    u   = dx_t/dt = e - x0                          the ``flow_velocity`` target
    lambda_t = 2 log((1 - t) / t),  t = sigmoid(-lambda / 2)

``flow_velocity`` differs from v-prediction's v = signal_t e - sigma_t x0 = (1 - t) e - t x0
(Salimans & Ho 2022), which is the velocity of a *rotation*; both are offered by
``ForwardProcess``. Training times follow Stable Diffusion 3 (Esser et al. 2024, arXiv
2403.03206):

    logit-normal   t = sigmoid(m + s n), n ~ N(0, 1)                        (section 3.1)
    shift          t' = shift t / (1 + (shift - 1) t)                      (eq. 23)
    resolution     shift = sqrt(num_tokens / base_num_tokens)             (section 5.3.2)

The shift is lambda -> lambda - 2 log(shift) (``noisejump.schedules.shift``); a shift > 1
moves times towards noise, as higher resolutions need. Two ways to train with it, with the
same law of log-SNRs and different time inputs:

    FlowMatching(shift=s)        the process is the plain flow; the sampler's draws u
                                 become t' = s u / (1 + (s - 1) u) (``time_of``), and t'
                                 (sigma itself) is the time the model sees: SD3's and
                                 diffusers' convention (FlowMatchEuler stores 1000 t' as
                                 its ``timesteps``)
    FlowMatching().shifted(s)    the process at time u is the flow at t'(u); the draws
                                 are u, and u is the time the model sees

Both give x = (1 - t') x0 + t' e for the same draw; a model trained on one takes the other's
time only after t' = s u / (1 + (s - 1) u) or its inverse.
"""

from __future__ import annotations

from typing import Any

import torch

from ...checks import check_real
from ..shift import check_shift, resolution_shift, softplus
from .base import ContinuousSchedule

__all__ = ["FlowMatching", "resolution_shift"]


class FlowMatching(ContinuousSchedule):
    """x_t = (1 - t) x0 + t e for t in [0, 1]; t = 1 is pure noise (SNR 0).

    Args:
        shift: the log-SNR shift of the training times (1 = none; SD3 uses 3 at 1024^2):
            a sampler's draw u becomes the time t' = shift u / (1 + (shift - 1) u)
            ([`time_of`][noisejump.continuous.FlowMatching.time_of],
            [`sample_t`][noisejump.continuous.ContinuousSchedule.sample_t]); the process
            itself is the plain flow (module docstring for ``shifted`` instead).
        logit_mean, logit_std: m and s of the logit-normal training times (0 and 1), the
            default sampler of ``sample_t``.
    """

    name = "flow"
    is_flow = True

    def __init__(self, shift: float = 1.0, logit_mean: float = 0.0, logit_std: float = 1.0):
        self.shift = check_shift(shift)
        self.logit_std = check_real(logit_std, "logit_std", low=0.0, open_low=True)
        self.logit_mean = check_real(logit_mean, "logit_mean")

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # log(1 - t) = log1p(-t): accurate near t = 0.
        return torch.log1p(-t), torch.log(t)

    def log_signal_sigma_from_log_snr(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """signal + sigma = 1: signal = sigmoid(lambda / 2), sigma = sigmoid(-lambda / 2)."""
        return -softplus(-0.5 * lam), -softplus(0.5 * lam)

    def time_at_log_snr(self, lam: Any) -> torch.Tensor:
        """t = sigmoid(-lambda / 2)."""
        return torch.sigmoid(-0.5 * torch.as_tensor(lam, dtype=torch.float64))

    def shift_time(self, t: torch.Tensor) -> torch.Tensor:
        """t' = shift t / (1 + (shift - 1) t) (Esser et al. 2024, eq. 23); keeps 0 and 1.
        It is the log-SNR shift of the flow: lambda(t') = lambda(t) - 2 log(shift)."""
        return self.shift * t / (1.0 + (self.shift - 1.0) * t)

    def time_of(self, x: Any, space: str = "u") -> torch.Tensor:
        """The plain flow's time of the draws (``ContinuousSchedule.time_of``), then
        ``shift_time``: the draws' log-SNR moves by -2 log(shift)."""
        return self.shift_time(super().time_of(x, space))

    def default_sampler(self) -> Any:
        """Logit-normal(logit_mean, logit_std), SD3's (section 3.1)."""
        from ...objective.samplers import get_sampler  # objective sits above schedules

        return get_sampler("logit_normal", logit_mean=self.logit_mean, logit_std=self.logit_std)

    def __repr__(self) -> str:
        return (
            f"FlowMatching(shift={self.shift:g}, logit_mean={self.logit_mean:g}, "
            f"logit_std={self.logit_std:g})"
        )
