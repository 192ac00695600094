"""VP-SDE and sub-VP SDE (Song et al. 2021, arXiv 2011.13456, eq. 11, 32, 33 and App. B).

    beta(t)   = beta_min + t (beta_max - beta_min),                 t in [0, 1]
    I(t)      = integral_0^t beta = beta_min t + (beta_max - beta_min) t^2 / 2
    VP:      signal_t = exp(-I/2), sigma_t^2 = 1 - exp(-I)   dx = -beta x/2 dt + sqrt(beta) dw
    sub-VP:  signal_t = exp(-I/2), sigma_t   = 1 - exp(-I)   diffusion g^2 = beta (1 - exp(-2 I))

1 - exp(-I) is computed as -expm1(-I): at t = 1e-6, I ~ 1e-7 and 1 - exp(-I) in float64
would keep only 9 significant digits; expm1 keeps all of them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..._numpy import from_numpy
from ..shift import softplus
from .base import ContinuousSchedule

BETA_MIN = 0.1
BETA_MAX = 20.0
SAMPLE_EPS = 1e-5


class VPSDE(ContinuousSchedule):
    """The variance-preserving SDE: the continuous limit of DDPM (Song et al. 2021, eq. 11).

    Args:
        beta_min, beta_max: beta(0) and beta(1), 0 <= beta_min < beta_max (0.1 and 20).
    """

    name = "vp"

    def __init__(self, beta_min: float = BETA_MIN, beta_max: float = BETA_MAX):
        beta_min, beta_max = from_numpy(beta_min), from_numpy(beta_max)
        numbers = all(
            isinstance(b, (int, float)) and not isinstance(b, bool) for b in (beta_min, beta_max)
        )
        if not (numbers and 0 <= beta_min < beta_max < math.inf):
            raise ValueError(
                f"need numbers 0 <= beta_min < beta_max < inf, got beta_min={beta_min!r}, "
                f"beta_max={beta_max!r}"
            )
        self.beta_min = float(beta_min)
        self.beta_max = float(beta_max)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        """beta(t) = beta_min + t (beta_max - beta_min) (Song et al. 2021, section 3.4)."""
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def integral_beta(self, t: torch.Tensor) -> torch.Tensor:
        """I(t) = beta_min t + (beta_max - beta_min) t^2 / 2 = -log abar(t)."""
        return t * (self.beta_min + 0.5 * t * (self.beta_max - self.beta_min))

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        integral = self.integral_beta(t)
        # sigma^2 = 1 - exp(-I) = -expm1(-I): accurate for small t.
        return -0.5 * integral, 0.5 * torch.log(-torch.expm1(-integral))

    def time_at_log_snr(self, lam: Any) -> torch.Tensor:
        """The t with I(t) = -log abar = softplus(-lambda): the root of
        (beta_max - beta_min) t^2 / 2 + beta_min t - I = 0, written
        t = 2 I / (beta_min + sqrt(beta_min^2 + 2 (beta_max - beta_min) I)) (no
        cancellation), clamped to [0, 1]."""
        integral = softplus(-torch.as_tensor(lam, dtype=torch.float64))
        spread = self.beta_max - self.beta_min
        root = self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * spread * integral)
        t = torch.where(integral > 0, 2.0 * integral / root, torch.zeros_like(integral))
        return t.clamp(0.0, 1.0)

    def default_sampler(self) -> Any:
        """t ~ U(eps, 1), eps = 1e-5 (Song et al. 2021, App. C: eps avoids sigma -> 0)."""
        from ...objective.samplers import get_sampler  # objective sits above schedules

        return get_sampler("uniform", t_min=SAMPLE_EPS)

    def sample_t(
        self, batch: int, *, eps: float | None = None, sampler: Any = None, **kwargs: Any
    ) -> torch.Tensor:
        """``ContinuousSchedule.sample_t``; by default t ~ U(eps, 1) with eps = 1e-5 (Song
        et al. 2021, App. C), float32, keyed with ``seed`` and ``keys``."""
        if eps is not None:
            if sampler is not None:
                raise ValueError("give eps (for U(eps, 1)) or a sampler, not both")
            from ...objective.samplers import get_sampler  # objective sits above schedules

            sampler = get_sampler("uniform", t_min=eps)
        return super().sample_t(batch, sampler=sampler, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(beta_min={self.beta_min:g}, beta_max={self.beta_max:g})"


class SubVPSDE(VPSDE):
    """The sub-VP SDE: VP's mean, sigma_t = 1 - exp(-I(t)) (Song et al. 2021, eq. 33).

    Its variance is below VP's at every t (hence the name); the same beta(t) as VPSDE.
    """

    name = "sub-vp"

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        integral = self.integral_beta(t)
        # sigma = 1 - exp(-I) = -expm1(-I): accurate for small t.
        return -0.5 * integral, torch.log(-torch.expm1(-integral))

    def log_signal_sigma_from_log_snr(self, lam: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sigma = 1 - signal^2: with c = exp(lambda / 2), signal / (1 - signal^2) = c, so
        signal = 2 c / (1 + sqrt(1 + 4 c^2)) and sigma = signal / c. Written for lambda > 0
        as 2 / (1/c + sqrt(1/c^2 + 4)) (nothing overflows), and sigma = 1 - signal^2 as
        -expm1(2 log signal) where signal is small."""
        half = 0.5 * lam
        positive = half > 0
        inv = torch.exp(-half.abs())  # 1/c for lambda > 0, c otherwise: never above 1
        log_signal = torch.where(
            positive,
            math.log(2.0) - torch.log(inv + torch.sqrt(inv * inv + 4.0)),
            math.log(2.0) + torch.log(inv) - torch.log1p(torch.sqrt(1.0 + 4.0 * inv * inv)),
        )
        log_sigma = torch.where(
            positive, log_signal - half, torch.log(-torch.expm1(2.0 * log_signal))
        )
        return log_signal, log_sigma

    def time_at_log_snr(self, lam: Any) -> torch.Tensor:
        """By bisection (``ContinuousSchedule.time_at_log_snr``)."""
        return ContinuousSchedule.time_at_log_snr(self, lam)
