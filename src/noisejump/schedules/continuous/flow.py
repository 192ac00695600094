"""Flow matching / rectified flow: the straight path from data to noise.

    x_t = (1 - t) x0 + t e,   t in [0, 1]          (Liu et al. 2022, arXiv 2209.03003, eq. 1;
                                                     Lipman et al. 2022, arXiv 2210.02747)
    u   = dx_t/dt = e - x0                          the ``flow_velocity`` target

``flow_velocity`` differs from v-prediction's v = signal_t e - sigma_t x0 = (1 - t) e - t x0
(Salimans & Ho 2022), which is the velocity of a *rotation*; both are offered by
``ForwardProcess``. Training times follow Stable Diffusion 3 (Esser et al. 2024, arXiv
2403.03206):

    logit-normal   t = sigmoid(m + s n), n ~ N(0, 1)                        (section 3.1)
    shift          t' = shift t / (1 + (shift - 1) t)                      (eq. 23)
    resolution     shift = sqrt(num_tokens / base_num_tokens)             (section 5.3.2)

A shift > 1 moves times towards noise, as higher resolutions need. diffusers'
FlowMatchEulerDiscreteScheduler stores the shifted t times 1000 as its ``timesteps``.
"""

from __future__ import annotations

import math

import torch

from ..._numpy import from_numpy
from .base import ContinuousSchedule, DeviceLike

F64 = torch.float64


class FlowMatching(ContinuousSchedule):
    """x_t = (1 - t) x0 + t e for t in [0, 1]; t = 1 is pure noise (SNR 0).

    Args:
        shift: the time shift applied by :meth:`sample_t` (1 = none; SD3 uses 3 at 1024^2).
        logit_mean, logit_std: m and s of the logit-normal training times (0 and 1).
    """

    name = "flow"
    is_flow = True

    def __init__(self, shift: float = 1.0, logit_mean: float = 0.0, logit_std: float = 1.0):
        self.shift = _positive(shift, "shift")
        self.logit_std = _positive(logit_std, "logit_std")
        logit_mean = from_numpy(logit_mean)
        if not (isinstance(logit_mean, (int, float)) and math.isfinite(logit_mean)):
            raise ValueError(f"logit_mean must be a finite number, got {logit_mean!r}")
        self.logit_mean = float(logit_mean)

    def log_signal_sigma(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # log(1 - t) = log1p(-t): accurate near t = 0.
        return torch.log1p(-t), torch.log(t)

    def shift_time(self, t: torch.Tensor) -> torch.Tensor:
        """t' = shift t / (1 + (shift - 1) t) (Esser et al. 2024, eq. 23); keeps 0 and 1."""
        return self.shift * t / (1.0 + (self.shift - 1.0) * t)

    def sample_t(
        self,
        batch: int,
        *,
        generator: torch.Generator | None = None,
        device: DeviceLike = None,
    ) -> torch.Tensor:
        """Logit-normal times, then shifted: t = shift_time(sigmoid(m + s n)), float64."""
        n = torch.randn(batch, generator=generator, device=device, dtype=F64)
        return self.shift_time(torch.sigmoid(self.logit_mean + self.logit_std * n))

    def __repr__(self) -> str:
        return (
            f"FlowMatching(shift={self.shift:g}, logit_mean={self.logit_mean:g}, "
            f"logit_std={self.logit_std:g})"
        )


def resolution_shift(num_tokens: int, base_num_tokens: int) -> float:
    """shift = sqrt(num_tokens / base_num_tokens) (Esser et al. 2024, section 5.3.2).

    The timestep shift that keeps the per-image signal-to-noise ratio when the number of
    positions (pixels or latent tokens) grows from ``base_num_tokens``, the resolution a
    schedule was tuned at, to ``num_tokens``. Pass the result as ``FlowMatching(shift=...)``.
    """
    num_tokens, base_num_tokens = from_numpy(num_tokens), from_numpy(base_num_tokens)
    for label, value in (("num_tokens", num_tokens), ("base_num_tokens", base_num_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be a positive int, got {value!r}")
    return math.sqrt(num_tokens / base_num_tokens)


def _positive(value: object, label: str) -> float:
    value = from_numpy(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{label} must be a positive float, got {type(value).__name__}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{label} must be a positive finite float, got {value!r}")
    return float(value)
