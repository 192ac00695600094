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

import torch

from ..._numpy import from_numpy
from .base import ContinuousSchedule, DeviceLike

BETA_MIN = 0.1
BETA_MAX = 20.0


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

    def sample_t(
        self,
        batch: int,
        *,
        generator: torch.Generator | None = None,
        device: DeviceLike = None,
        eps: float = 1e-5,
    ) -> torch.Tensor:
        """t ~ U(eps, 1), float64 (Song et al. 2021, App. C: eps = 1e-5 avoids sigma -> 0)."""
        u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
        return eps + (1.0 - eps) * u

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
