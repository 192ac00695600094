"""EDM's loss weighting (Karras et al. 2022, arXiv 2206.00364, Table 1) and EDM2's learned
uncertainty weighting (Karras et al. 2024, arXiv 2312.02696, eq. 21; NVlabs/edm2
training/training_loop.py, ``EDM2Loss``).

EDM writes x = x0 + sigma e; on any schedule the same log-SNR lambda has the noise level
sigma = sigma_t / signal_t = e^(-lambda/2) (divide x_t by signal_t), which is how the
weight is read as a function of lambda:

    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 = e^lambda + 1 / sigma_data^2

on the x0-MSE (EDM's ||D(x; sigma) - x0||^2). EDM2 divides it by a learned e^u(sigma) and
adds u(sigma): loss = lambda(sigma) ||D - x0||^2 / e^u + u.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..._numpy import from_numpy
from ...schedules.continuous.edm import EDM
from .base import Weighting, reached_ends

__all__ = ["EDMWeighting", "LearnedUncertainty"]

Asymptotes = tuple[tuple[float, float], tuple[float, float]]
#: |lambda| beyond which float64 sigma^2 = e^-lambda would leave float64's range; there the
#: log-weight is continued exactly (1 / sigma_data^2 or e^lambda dominates to 1e-260).
LAMBDA_RANGE = 600.0


class EDMWeighting(Weighting):
    """EDM's weight (sigma^2 + sigma_data^2) / (sigma sigma_data)^2 on the x0-MSE, sigma =
    e^(-lambda/2) (module docstring), computed by ``EDM.loss_weight`` (its one home). In
    each target

        sample e^lambda + 1 / sigma_data^2        epsilon 1 + e^-lambda / sigma_data^2
        v (variance preserving) (1 + e^-lambda / sigma_data^2) / (1 + e^-lambda)

    (the epsilon form is the v-MSE weight of data with standard deviation sigma_data).

    Limits (lambda = +inf, -inf): sample (inf, 1 / sigma_data^2): diverges without noise;
    epsilon (1, inf): diverges at zero SNR; v (1, 1 / sigma_data^2); flow_velocity
    (1, 1 / sigma_data^2). EDM's own sigma lies in (0, inf) and reaches neither end;
    a schedule that reaches a divergent end is refused unless max_weight is given.

    Args:
        sigma_data: the data's standard deviation, a finite number > 0 (0.5).
        max_weight: caps omega, in (0, inf].
    """

    name = "edm"
    native = "sample"

    def __init__(self, sigma_data: float = 0.5, max_weight: float = math.inf) -> None:
        super().__init__(max_weight)
        self.edm = EDM(sigma_data=sigma_data)  # validates sigma_data
        self.sigma_data = self.edm.sigma_data

    @property
    def parameters(self) -> dict[str, float]:
        return {"sigma_data": self.sigma_data, "max_weight": self.max_weight}

    def _log_native(self, lam: torch.Tensor) -> torch.Tensor:
        inside = lam.clamp(-LAMBDA_RANGE, LAMBDA_RANGE)
        weight = self.edm.loss_weight(torch.exp(-0.5 * inside))
        return torch.log(weight) + (lam - LAMBDA_RANGE).clamp(min=0.0)

    def asymptotes(self) -> Asymptotes:
        return (1.0, 1.0), (self.sigma_data**-2, 0.0)


class LearnedUncertainty(torch.nn.Module):
    """EDM2's learned uncertainty weighting: a small network u(sigma) (one scalar per
    sample) and the loss

        loss = (1 / B) sum_b [ L_b / e^(u_b) + u_b ],   u_b = u(sigma_b)

    with L_b sample b's EDM-weighted MSE (``base``, an ``EDMWeighting``), as EDM2Loss
    computes it (Karras et al. 2024, eq. 21; the minimum over u is at e^u = L, so e^u
    tracks the expected weighted loss at each sigma). u is EDM2's ``logvar`` head: Fourier features
    sqrt(2) cos(2 pi (f c + p)) of c = ln(sigma) / 4 (frequencies f ~ N(0, 1) and phases
    p ~ U(0, 1) fixed at construction from ``seed``) and a weight-normalised linear map
    to one output (EDM2's MPFourier and MPConv). Not inspectable: its weight is learned.

    Train its parameters with the model's (they are this module's ``parameters()``).
    With ``keyed_mse(..., weighting=this)`` the loss above is what comes back; or call
    ``loss(per_sample, sigma)`` on per-sample losses of ``base``.

    Args:
        sigma_data: EDM's sigma_data of the base weighting (0.5).
        channels: Fourier features, an int >= 1 (128 in EDM2).
        seed: the seed of the fixed frequencies and phases, an int >= 0.
    """

    name = "edm2"
    inspectable = False
    frequencies: torch.Tensor
    phases: torch.Tensor

    def __init__(self, sigma_data: float = 0.5, channels: int = 128, seed: int = 0) -> None:
        super().__init__()
        for label, value, low in (("channels", channels, 1), ("seed", seed, 0)):
            value = from_numpy(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"edm2: {label} must be an int >= {low}, got {value!r}")
        self.base = EDMWeighting(sigma_data)
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", torch.randn(channels, generator=generator))
        self.register_buffer("phases", torch.rand(channels, generator=generator))
        self.weight = torch.nn.Parameter(torch.randn(channels, generator=generator))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        """u(sigma) for noise levels sigma > 0 (B,): float32 (B,)."""
        if not isinstance(sigma, torch.Tensor) or not sigma.dtype.is_floating_point:
            raise TypeError(f"sigma must be a floating tensor of noise levels, got {sigma!r:.60}")
        if sigma.device.type == "cpu" and not bool(((sigma > 0) & torch.isfinite(sigma)).all()):
            raise ValueError("sigma must be finite and > 0")
        return self._u(torch.log(sigma.to(torch.float32)) / 4.0)

    def log_variance(self, lam: torch.Tensor) -> torch.Tensor:
        """u at log-SNR lambda (finite), through sigma = e^(-lambda/2): c = -lambda / 8."""
        return self._u((-lam / 8.0).to(torch.float32))

    def loss(self, per_sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """mean_b(per_sample_b e^-u(sigma_b) + u(sigma_b)): per_sample (B,) as ``keyed_mse``
        returns with ``reduction="none"`` and ``weighting=self.base``."""
        return self.combine(per_sample, self(sigma)).mean()

    @staticmethod
    def combine(per_sample: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """per_sample e^-u + u, elementwise (B,)."""
        return per_sample * torch.exp(-u) + u

    def check_schedule(self, schedule: Any, prediction: str) -> None:
        """The base weighting's check; and u needs a finite lambda (ln sigma finite)."""
        self.base.check_schedule(schedule, prediction)
        if any(reached_ends(schedule)):
            raise ValueError(
                f"edm2: u(sigma) needs 0 < sigma < inf, and {schedule!r} reaches lambda = +-inf "
                "(sigma 0 or inf)"
            )

    def omega(self, lam: Any, prediction: str) -> torch.Tensor:
        raise TypeError(
            "the edm2 weighting is learned (e^-u(sigma) times EDM's): not inspectable as a "
            "function of lambda; inspect its base weighting, .base"
        )

    def _u(self, c_noise: torch.Tensor) -> torch.Tensor:
        features = torch.cos(2 * math.pi * (c_noise[:, None] * self.frequencies + self.phases))
        direction = self.weight / (self.weight.norm() + 1e-4)
        return (features * math.sqrt(2)) @ direction

    def extra_repr(self) -> str:
        return f"sigma_data={self.base.sigma_data:g}, channels={len(self.weight)}"
