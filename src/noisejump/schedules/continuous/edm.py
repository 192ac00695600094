"""Variance-exploding sigmas with EDM's preconditioning (Karras et al. 2022, arXiv 2206.00364).

Here the time *is* the noise level: x = x0 + sigma e, sigma > 0 (EDM Table 1, "VE" and
"EDM" columns: s(t) = 1, sigma(t) = t). The network D(x; sigma) = c_skip x + c_out F(c_in x;
c_noise) is trained with the loss weight lambda(sigma) on sigmas drawn log-normally:

    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)                        (Table 1)
    c_out   = sigma sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = log(sigma) / 4
    lambda  = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2
    ln sigma ~ N(P_mean, P_std^2), P_mean = -1.2, P_std = 1.2, sigma_data = 0.5
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..._numpy import from_numpy
from .base import ContinuousSchedule, TimeLike

F64 = torch.float64


class EDM(ContinuousSchedule):
    """x_sigma = x0 + sigma e with sigma in (0, inf): the VE process EDM trains on.

    Pass sigma where other processes take t (``q_sample(x0, sigma)``); sigma = 0 is the data
    and is accepted only as a jump's start or the posterior's target.

    Args:
        sigma_data: standard deviation of the data (0.5 for images in [-1, 1]).
        p_mean, p_std: the log-normal of training sigmas (EDM, section 5).
    """

    name = "edm"
    #: sigma up to 1e15 (EDM trains at most at 80): x0 + sigma e, |e| <= 5.8, then stays
    #: far inside float32's range; larger sigmas are refused, not turned into inf.
    t_max = 1e15
    t_is_sigma = True
    time_name = "sigma"

    def __init__(self, sigma_data: float = 0.5, p_mean: float = -1.2, p_std: float = 1.2):
        sigma_data, p_mean, p_std = from_numpy(sigma_data), from_numpy(p_mean), from_numpy(p_std)
        for label, value in (("sigma_data", sigma_data), ("p_std", p_std)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{label} must be a positive finite number, got {value!r}")
        if not (isinstance(p_mean, (int, float)) and math.isfinite(p_mean)):
            raise ValueError(f"p_mean must be a finite number, got {p_mean!r}")
        self.sigma_data = float(sigma_data)
        self.p_mean = float(p_mean)
        self.p_std = float(p_std)

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.zeros_like(t), torch.log(t)

    # ---- preconditioning (EDM Table 1) ---------------------------------------------------------

    def c_skip(self, sigma: TimeLike) -> torch.Tensor:
        sigma = self._sigma(sigma)
        return self.sigma_data**2 / (sigma**2 + self.sigma_data**2)

    def c_out(self, sigma: TimeLike) -> torch.Tensor:
        sigma = self._sigma(sigma)
        return sigma * self.sigma_data / torch.sqrt(sigma**2 + self.sigma_data**2)

    def c_in(self, sigma: TimeLike) -> torch.Tensor:
        sigma = self._sigma(sigma)
        return 1.0 / torch.sqrt(sigma**2 + self.sigma_data**2)

    def c_noise(self, sigma: TimeLike) -> torch.Tensor:
        return torch.log(self._sigma(sigma)) / 4.0

    def loss_weight(self, sigma: TimeLike) -> torch.Tensor:
        """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 (EDM Table 1)."""
        sigma = self._sigma(sigma)
        return (sigma**2 + self.sigma_data**2) / (sigma * self.sigma_data) ** 2

    def log_signal_sigma_from_log_snr(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """signal = 1 (variance exploding): sigma = exp(-lambda / 2)."""
        return torch.zeros_like(lam), -0.5 * lam

    def time_at_log_snr(self, lam: Any) -> torch.Tensor:
        """sigma = exp(-lambda / 2)."""
        return torch.exp(-0.5 * torch.as_tensor(lam, dtype=F64))

    def time_of(self, x: Any, space: str = "u") -> torch.Tensor:
        """A sigma draw is the time itself (u draws are refused: EDM's time is sigma)."""
        if space == "sigma":
            return torch.as_tensor(x, dtype=F64).clone()
        return super().time_of(x, space)

    def default_sampler(self) -> Any:
        """ln sigma ~ N(P_mean, P_std^2): EDM's training noise levels (section 5)."""
        from ...objective.samplers import get_sampler  # objective sits above schedules

        return get_sampler("log_normal", p_mean=self.p_mean, p_std=self.p_std)

    def _sigma(self, sigma: TimeLike) -> torch.Tensor:
        """sigma as a float64 tensor, checked > 0 and finite when it is on the CPU."""
        value = torch.as_tensor(sigma, dtype=F64) if not isinstance(sigma, torch.Tensor) else sigma
        if value.device.type == "cpu" and not bool(((value > 0) & torch.isfinite(value)).all()):
            bad = value[~((value > 0) & torch.isfinite(value))].flatten()[0].item()
            raise ValueError(f"sigma must be a positive finite float, got {bad!r}")
        return value

    def __repr__(self) -> str:
        return f"EDM(sigma_data={self.sigma_data:g}, p_mean={self.p_mean:g}, p_std={self.p_std:g})"
