"""Named laws of training times, each with its exact density, CDF and inverse CDF.

On u in [0, 1] (Phi the standard normal CDF, logit(u) = log(u / (1 - u))):

    uniform       p(u) = 1
    logit_normal  p(u) = exp(-(logit u - m)^2 / (2 s^2)) / (s sqrt(2 pi) u (1 - u)),
                  u = sigmoid(m + s Phi^{-1}(q))       (Esser et al. 2024, arXiv 2403.03206,
                                                         section 3.1, eq. 19)
    mode          u = f(1 - q), f(v) = 1 - v - s (cos^2(pi v / 2) - 1 + v); p(u) =
                  1 / |f'(f^{-1}(u))|, f^{-1} numerical (eq. 20); f is monotone, so this
                  is a law, only for s in [-1, 2 / (pi - 2)]
    cosmap        u = 1 - 1 / (tan(pi q / 2) + 1), p(u) = 2 / (pi (1 - 2 u + 2 u^2)) (eq. 21)
    beta          p(u) = u^(a-1) (1 - u)^(b-1) / B(a, b), CDF the regularized incomplete
                  beta I_u(a, b), inverse numerical (``special``)

On sigma in (0, inf):

    log_normal    ln sigma ~ N(P_mean, P_std^2): EDM's training noise levels (Karras et al.
                  2022, arXiv 2206.00364, section 5, "Loss weighting and sampling")

Here q is the draw's keyed uniform. The SD3 defaults: logit-normal (m, s) = (0, 1), mode
scale 1.29 (the peers' default); EDM's: (P_mean, P_std) = (-1.2, 1.2).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..checks import check_real
from .sampler_base import TimestepSampler, as_float64, as_probability, normal_icdf
from .special import betainc, betaincinv_guess, invert_increasing

F64 = torch.float64
#: The mode sampler's f is monotone only for s in [-1, 2 / (pi - 2)] (Esser et al. 2024).
MODE_SCALE_MAX = 2.0 / (math.pi - 2.0)


class Uniform(TimestepSampler):
    """u ~ U(0, 1): p(u) = 1, icdf(q) = q."""

    name = "uniform"

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        return ((x >= 0) & (x <= 1)).to(F64)

    def cdf(self, x: Any) -> torch.Tensor:
        return as_float64(x, "x").clamp(0.0, 1.0)

    def icdf(self, p: Any) -> torch.Tensor:
        return as_probability(p)


class LogitNormal(TimestepSampler):
    """logit(u) ~ N(m, s^2) (Esser et al. 2024, section 3.1, eq. 19).

    Args:
        logit_mean: m, finite (0 in SD3).
        logit_std: s > 0 (1 in SD3).
    """

    name = "logit_normal"

    def __init__(self, logit_mean: float = 0.0, logit_std: float = 1.0) -> None:
        self.logit_mean = check_real(logit_mean, "logit_mean")
        self.logit_std = check_real(logit_std, "logit_std", low=0.0, open_low=True)

    def _z(self, x: torch.Tensor) -> torch.Tensor:
        return (torch.logit(x) - self.logit_mean) / self.logit_std

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        inside = (x > 0) & (x < 1)
        x = torch.where(inside, x, torch.full_like(x, 0.5))
        z = self._z(x)
        value = torch.exp(-0.5 * z * z) / (self.logit_std * math.sqrt(2 * math.pi) * x * (1 - x))
        return torch.where(inside, value, torch.zeros_like(value))

    def cdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x").clamp(0.0, 1.0)
        return torch.special.ndtr(self._z(x))

    def icdf(self, p: Any) -> torch.Tensor:
        z = normal_icdf(as_probability(p))
        return torch.sigmoid(self.logit_mean + self.logit_std * z)

    def __repr__(self) -> str:
        return f"LogitNormal(logit_mean={self.logit_mean:g}, logit_std={self.logit_std:g})"


class Mode(TimestepSampler):
    """u = f(1 - q), f(v) = 1 - v - s (cos^2(pi v / 2) - 1 + v) (Esser et al. 2024, eq. 20).

    f falls from f(0) = 1 to f(1) = 0, strictly where f'(v) = -1 - s (1 - (pi / 2)
    sin(pi v)) < 0, i.e. for s in [-1, 2 / (pi - 2)] (s = 0 is uniform, s > 0 puts mass
    in the middle, s < 0 at the ends); at either end of that range f' vanishes at one
    point and the density there is infinite. The density p(u) = 1 / |f'(f^{-1}(u))| needs
    f^{-1}, found numerically (``special.invert_increasing``).

    Args:
        scale: s in [-1, 2 / (pi - 2)] (1.29 by default, the peers' ``mode_scale``).
    """

    name = "mode"

    def __init__(self, scale: float = 1.29) -> None:
        self.scale = check_real(scale, "scale", low=-1.0, high=MODE_SCALE_MAX)

    def _f(self, v: torch.Tensor) -> torch.Tensor:
        return 1 - v - self.scale * (torch.cos(math.pi * v / 2) ** 2 - 1 + v)

    def _f_slope(self, v: torch.Tensor) -> torch.Tensor:
        """-f'(v) = 1 + s (1 - (pi / 2) sin(pi v)) >= 0."""
        return 1 + self.scale * (1 - 0.5 * math.pi * torch.sin(math.pi * v))

    def _f_inverse(self, x: torch.Tensor) -> torch.Tensor:
        """v with f(v) = x for x in [0, 1]: 1 - f(v) increases in v, so invert that; the
        ends exactly (f(1) = 0, f(0) = 1)."""
        zero, one = torch.zeros((), dtype=F64), torch.ones((), dtype=F64)
        v = invert_increasing(lambda v: 1 - self._f(v), 1 - x, zero, one, self._f_slope)
        return torch.where(x <= 0, one, torch.where(x >= 1, zero, v))

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        inside = (x >= 0) & (x <= 1)
        slope = self._f_slope(self._f_inverse(x.clamp(0.0, 1.0)))
        return torch.where(inside, 1.0 / slope, torch.zeros_like(slope))

    def cdf(self, x: Any) -> torch.Tensor:
        # P(f(1 - Q) <= x) = P(1 - Q >= f^{-1}(x)) = 1 - f^{-1}(x)
        return 1.0 - self._f_inverse(as_float64(x, "x").clamp(0.0, 1.0))

    def icdf(self, p: Any) -> torch.Tensor:
        return self._f(1.0 - as_probability(p)).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"Mode(scale={self.scale:g})"


class CosMap(TimestepSampler):
    """u = 1 - 1 / (tan(pi q / 2) + 1), p(u) = 2 / (pi (1 - 2 u + 2 u^2)) (Esser et al.
    2024, eq. 21); cdf(u) = (2 / pi) arctan(u / (1 - u))."""

    name = "cosmap"

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        value = 2.0 / (math.pi * (1 - 2 * x + 2 * x * x))
        return torch.where((x >= 0) & (x <= 1), value, torch.zeros_like(value))

    def cdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x").clamp(0.0, 1.0)
        return (2.0 / math.pi) * torch.atan2(x, 1 - x)

    def icdf(self, p: Any) -> torch.Tensor:
        p = as_probability(p)
        # 1 - 1 / (tan + 1) = tan / (tan + 1) = sin / (sin + cos): finite at p = 1
        angle = 0.5 * math.pi * p
        return torch.sin(angle) / (torch.sin(angle) + torch.cos(angle))


class Beta(TimestepSampler):
    """u ~ Beta(a, b): p(u) = u^(a-1) (1 - u)^(b-1) / B(a, b), cdf I_u(a, b).

    The inverse CDF is numerical: safeguarded Newton from Numerical Recipes' first guess
    (``special``), each half of [0, 1] solved as a lower tail by the symmetry
    I_u(a, b) = 1 - I_{1-u}(b, a), so both tails keep their digits.

    Args:
        a, b: positive finite shape parameters (Beta(1, 1) is uniform).
    """

    name = "beta"

    def __init__(self, a: float, b: float) -> None:
        self.a = check_real(a, "a", low=0.0, open_low=True)
        self.b = check_real(b, "b", low=0.0, open_low=True)
        self._log_norm = math.lgamma(self.a + self.b) - math.lgamma(self.a) - math.lgamma(self.b)

    def _density(self, x: torch.Tensor, a: float, b: float) -> torch.Tensor:
        # xlogy and xlog1py read 0 log 0 as 0: Beta(1, b) at u = 0, Beta(a, 1) at u = 1
        log = torch.xlogy(a - 1, x) + torch.special.xlog1py(b - 1, -x) + self._log_norm
        return torch.exp(log)

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        inside = (x >= 0) & (x <= 1)
        value = self._density(x.clamp(0.0, 1.0), self.a, self.b)
        return torch.where(inside, value, torch.zeros_like(value))

    def cdf(self, x: Any) -> torch.Tensor:
        return betainc(self.a, self.b, as_float64(x, "x").clamp(0.0, 1.0))

    def icdf(self, p: Any) -> torch.Tensor:
        p = as_probability(p)
        upper = p > 0.5
        low = self._lower_tail(self.a, self.b, torch.where(upper, 0.5, p))
        high = 1.0 - self._lower_tail(self.b, self.a, torch.where(upper, 1.0 - p, 0.5))
        return torch.where(upper, high, low)

    def _lower_tail(self, a: float, b: float, p: torch.Tensor) -> torch.Tensor:
        """x with I_x(a, b) = p for p <= 1/2."""
        zero, one = torch.zeros((), dtype=F64), torch.ones((), dtype=F64)
        return invert_increasing(
            lambda x: betainc(a, b, x),
            p,
            zero,
            one,
            lambda x: self._density(x, a, b),
            start=betaincinv_guess(a, b, p),
        )

    def __repr__(self) -> str:
        return f"Beta(a={self.a:g}, b={self.b:g})"


class LogNormal(TimestepSampler):
    """ln sigma ~ N(P_mean, P_std^2) on sigma in (0, inf) (Karras et al. 2022, section 5):
    p(sigma) = exp(-(ln sigma - P_mean)^2 / (2 P_std^2)) / (sigma P_std sqrt(2 pi)).

    Args:
        p_mean: P_mean, finite (-1.2 in EDM).
        p_std: P_std > 0 (1.2 in EDM).
    """

    name = "log_normal"
    space = "sigma"

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2) -> None:
        self.p_mean = check_real(p_mean, "p_mean")
        self.p_std = check_real(p_std, "p_std", low=0.0, open_low=True)

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "sigma")
        inside = x > 0
        x = torch.where(inside, x, torch.ones_like(x))
        z = (torch.log(x) - self.p_mean) / self.p_std
        value = torch.exp(-0.5 * z * z) / (x * self.p_std * math.sqrt(2 * math.pi))
        return torch.where(inside & torch.isfinite(x), value, torch.zeros_like(value))

    def cdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "sigma").clamp(min=0.0)
        return torch.special.ndtr((torch.log(x) - self.p_mean) / self.p_std)

    def icdf(self, p: Any) -> torch.Tensor:
        return torch.exp(self.p_mean + self.p_std * normal_icdf(as_probability(p)))

    def __repr__(self) -> str:
        return f"LogNormal(p_mean={self.p_mean:g}, p_std={self.p_std:g})"
