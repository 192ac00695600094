"""Stationary spatial noise through the FFT: coloured (1/f^alpha), Gaussian kernel, any spectrum.

A stationary (circulant) covariance on an H x W torus is diagonal in the Fourier basis:
S = F^H diag(P) F with F the unitary 2-D DFT and P >= 0 the power spectrum. We draw real
white noise e and return irfft2(sqrt(P) * rfft2(e)) (DESIGN.md, section 1), over the last
two event axes; other event axes are independent. The analytic covariance is the
Wiener-Khinchin sum, written with cosines (no FFT):

    S[(i, j), (k, l)] = c(i - k, j - l),  c(a, b) = 1/(HW) sum_f P(f) cos(2 pi (f_y a/H + f_x b/W))

Spectra are floored at 1e-6 of their maximum (so whitening stays finite) and, by default,
divided by their mean, which is the marginal variance c(0, 0): unit variance.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import (
    F64,
    MAX_VARIANCE,
    NoiseFamily,
    as_float64,
    check_image_event,
    check_number,
)

FLOOR = 1e-6
#: The largest |alpha| of 1/f^alpha noise. Far beyond the noises in use (pink 1, brown 2),
#: and small enough that |f|^-alpha, with |f| in [1/n, 1/sqrt(2)], and its square root stay
#: finite in float32 on every grid with sides up to 2^16 (normalize=False); alpha = 1e6
#: overflows float64 (inf / inf: NaN noise).
ALPHA_MAX = 10.0


class Stationary(NoiseFamily):
    """Base class: subclasses give ``raw_spectrum(H, W)``, the full-grid power spectrum."""

    eigenbasis = "fft"
    cost = "O(d log d)"

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize
        self._cache: dict = {}

    def raw_spectrum(self, height: int, width: int) -> torch.Tensor:
        raise NotImplementedError

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        check_image_event(tuple(event_shape), self.name)

    def power_spectrum(self, height: int, width: int) -> torch.Tensor:
        """P on the full (H, W) frequency grid, floored and (by default) of mean 1: a new
        float64 tensor (changing it changes nothing here)."""
        return self._power(height, width).clone()

    def _power(self, height: int, width: int) -> torch.Tensor:
        """``power_spectrum``, cached per size: the table ``apply`` and the moments read."""
        key = (height, width)
        if key not in self._cache:
            power = self.raw_spectrum(height, width)
            power = power.clamp(min=FLOOR * float(power.max()))
            self._cache[key] = power / power.mean() if self.normalize else power
        return self._cache[key]

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        height, width = white.shape[-2:]
        amplitude = self._on(
            ("amplitude", height, width),
            white,
            lambda: self._power(height, width).sqrt()[:, : width // 2 + 1],
        )
        spectrum = torch.fft.rfft2(white) * amplitude
        return torch.fft.irfft2(spectrum, s=(height, width))

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        height, width = event_shape[-2:]
        power = self._power(height, width)
        index_y, index_x = torch.arange(height, dtype=F64), torch.arange(width, dtype=F64)
        phase_y = 2 * math.pi * torch.outer(index_y, index_y) / height
        phase_x = 2 * math.pi * torch.outer(index_x, index_x) / width
        cos_y, sin_y = phase_y.cos(), phase_y.sin()
        cos_x, sin_x = phase_x.cos(), phase_x.sin()
        # c(a, b) = 1/(HW) sum_f P(f) [cos(y) cos(x) - sin(y) sin(x)]
        c = (cos_y @ power @ cos_x.T - sin_y @ power @ sin_x.T) / (height * width)
        a = (torch.arange(height)[:, None] - torch.arange(height)[None, :]) % height
        b = (torch.arange(width)[:, None] - torch.arange(width)[None, :]) % width
        block = c[a[:, None, :, None], b[None, :, None, :]].reshape(height * width, -1)
        return torch.block_diag(*[block] * math.prod(event_shape[:-2]))

    def restricted(
        self, event_shape: tuple[int, ...], axis: int, start: int, stop: int
    ) -> NoiseFamily | None:
        """The axes before the two image axes: there the images are independent."""
        return self if axis < len(event_shape) - 2 else None

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        self.check_shape(event_shape)
        power = self._power(*event_shape[-2:])
        return torch.full(tuple(event_shape), float(power.mean()), dtype=F64)

    def apply_ops(self, event_shape: tuple[int, ...]) -> float:
        return 5.0 * math.prod(event_shape) * math.log2(max(2, math.prod(event_shape[-2:])))


def frequency_radius(height: int, width: int) -> torch.Tensor:
    """|f| in cycles per pixel on the full (H, W) grid (numpy.fft.fftfreq ordering)."""
    f_y = torch.fft.fftfreq(height, dtype=F64)
    f_x = torch.fft.fftfreq(width, dtype=F64)
    return torch.sqrt(f_y[:, None] ** 2 + f_x[None, :] ** 2)


class Colored(Stationary):
    """1/f^alpha noise: P(f) = |f|^(-alpha), the power (not the amplitude) falls as 1/f^alpha.

    alpha = 1 pink, 2 brown (red), -1 blue, 0 white; |alpha| <= ALPHA_MAX = 10. The DC
    term (|f| = 0) is set to the value at the lowest non-zero frequency (DESIGN.md).
    """

    name = "colored"

    def __init__(self, alpha: float = 1.0, normalize: bool = True) -> None:
        self.alpha = check_number(alpha, "alpha", self.name, low=-ALPHA_MAX, high=ALPHA_MAX)
        super().__init__(normalize)

    def raw_spectrum(self, height: int, width: int) -> torch.Tensor:
        radius = frequency_radius(height, width)
        radius[0, 0] = radius[radius > 0].min() if radius.numel() > 1 else 1.0
        return radius ** (-self.alpha)

    def __repr__(self) -> str:
        return f"Colored(alpha={self.alpha}, normalize={self.normalize})"


#: exp(-TAIL) = 2^-60 relative: Gaussian terms beyond it are below float64 rounding.
TAIL = 60 * math.log(2)


def periodic_gaussian_kernel(n: int, length_scale: float) -> torch.Tensor:
    """The periodised (wrapped) Gaussian kernel k(a) = sum_m exp(-(a + m n)^2 / (2 l^2))
    on Z_n, summed over every wrap m with |a + m n| <= l sqrt(2 TAIL): O(n (l / n + 1))."""
    reach = length_scale * math.sqrt(2 * TAIL)
    wraps = math.ceil(reach / n) + 1
    a = torch.arange(n, dtype=F64)
    m = torch.arange(-wraps, wraps + 1, dtype=F64)
    return torch.exp(-((a[:, None] + m[None, :] * n) ** 2) / (2 * length_scale**2)).sum(1)


def periodic_gaussian_spectrum(n: int, length_scale: float) -> torch.Tensor:
    """P(f), f = 0..n-1, the DFT of ``periodic_gaussian_kernel``, in O(n) memory for any l.

    Two exact sums, the faster-converging one taken: Poisson summation,
    P(f) = sum_m sqrt(2 pi) l exp(-2 pi^2 l^2 (f/n - m)^2), needs the m with
    |f/n - m| <= sqrt(TAIL / 2) / (pi l), about 3 / l of them (few for a wide kernel);
    the DFT of the kernel summed over its wraps needs about 2 l sqrt(2 TAIL) / n (few for
    a narrow one). Either way the terms number at most a handful where the counts cross
    (l ~ sqrt(n)), so no length scale needs a large table.
    """
    reach = math.sqrt(TAIL / 2) / (math.pi * length_scale)  # in cycles per sample
    poisson_terms = 2 * math.ceil(reach) + 2
    spatial_terms = 2 * (math.ceil(length_scale * math.sqrt(2 * TAIL) / n) + 1) + 1
    if spatial_terms < poisson_terms:
        return torch.fft.fft(periodic_gaussian_kernel(n, length_scale)).real
    f = torch.arange(n, dtype=F64) / n
    m = torch.arange(-math.ceil(reach), math.ceil(reach) + 2, dtype=F64)
    nu = f[:, None] - m[None, :]
    return (
        math.sqrt(2 * math.pi) * length_scale * torch.exp(-2 * (math.pi * length_scale * nu) ** 2)
    ).sum(1)


class RBF(Stationary):
    """Gaussian-kernel (RBF) noise with a length scale in pixels, on the torus.

    Covariance k(a, b) = k_y(a) k_x(b), each the periodised Gaussian exp(-a^2 / (2 l^2))
    summed over wraps: the FFT covariance is circulant, so this is the wrapped kernel
    (pad the domain for an unwrapped one). Spectrum: its DFT (``periodic_gaussian_spectrum``,
    O(H + W) memory for every length scale). A length scale far above the image
    (l = 1e9 on 64 x 64) is the limit of a constant field: all power at f = 0, the rest at
    the spectrum's floor.

    Args:
        length_scale: l > 0 in pixels, finite.
    """

    name = "rbf"

    def __init__(self, length_scale: float = 2.0, normalize: bool = True) -> None:
        # The kernel is white noise at any grid long before 1e-100 pixels; below, 1 / l^2
        # overflows.
        self.length_scale = check_number(length_scale, "length_scale", self.name, low=1e-100)
        super().__init__(normalize)

    def raw_spectrum(self, height: int, width: int) -> torch.Tensor:
        p_y = periodic_gaussian_spectrum(height, self.length_scale)
        p_x = periodic_gaussian_spectrum(width, self.length_scale)
        return torch.outer(p_y, p_x)

    def __repr__(self) -> str:
        return f"RBF(length_scale={self.length_scale}, normalize={self.normalize})"


class Spectral(Stationary):
    """Stationary noise with a given power spectrum P of shape (H, W) (full FFT grid,
    numpy.fft.fftfreq order), P >= 0 and symmetric, P(f) = P(-f), so the noise is real."""

    name = "spectral"

    def __init__(self, power: Any, normalize: bool = True) -> None:
        super().__init__(normalize)
        power = as_float64(power, "power", self.name, largest=MAX_VARIANCE)
        if power.dim() != 2:
            raise ValueError(f"spectral: power must be 2-D (H, W), got {tuple(power.shape)}")
        if (power < 0).any():
            raise ValueError(
                f"spectral: a power spectrum is >= 0 (else S is not positive semi-definite); "
                f"got a minimum of {power.min().item():.6g}"
            )
        if float(power.max()) <= 0:
            raise ValueError("spectral: power is all zero")
        mirrored = torch.roll(torch.flip(power, (0, 1)), (1, 1), (0, 1))  # P(-f)
        if not torch.allclose(power, mirrored, rtol=1e-10, atol=0):
            raise ValueError("spectral: power must satisfy P(f) = P(-f) (real noise)")
        self._given = power

    @property
    def power(self) -> torch.Tensor:
        """P as given, float64 (a copy: changing it changes nothing here)."""
        return self._given.clone()

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        super().check_shape(event_shape)
        if tuple(event_shape[-2:]) != tuple(self._given.shape):
            raise ValueError(
                f"spectral: the power spectrum is {tuple(self._given.shape)} but the event's "
                f"spatial shape is {tuple(event_shape[-2:])} (event {tuple(event_shape)})"
            )

    def raw_spectrum(self, height: int, width: int) -> torch.Tensor:
        self.check_shape((1, height, width))
        return self._given.clone()

    def __repr__(self) -> str:
        return f"Spectral(power of shape {tuple(self._given.shape)})"
