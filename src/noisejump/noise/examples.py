"""One valid example of every family, with the event shapes it is checked on.

Used by ``noisejump verify --noise NAME`` and by the contract tests that every family must
pass (the registry pattern of torch.distributions' ``_get_examples``). ``exact`` is a small
event for the float64 check, ``stat`` a realistic one for the statistical check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import get_noise
from .base import NoiseFamily
from .stationary import frequency_radius


@dataclass(frozen=True)
class Example:
    build: Callable[[], NoiseFamily]
    exact: tuple[int, ...] = (2, 4, 4)
    stat: tuple[int, ...] = (3, 16, 16)
    params: str = ""


def _spectrum(size: int) -> torch.Tensor:
    """A symmetric, smooth power spectrum: P(f) = 1 / (0.05 + |f|^2)."""
    return 1 / (0.05 + frequency_radius(size, size) ** 2)


def _ar_cov(d: int, rho: float = 0.7) -> torch.Tensor:
    index = torch.arange(d, dtype=torch.float64)
    return rho ** (index[:, None] - index[None, :]).abs() + 0.1 * torch.eye(d, dtype=torch.float64)


EXAMPLES: dict[str, Example] = {
    "isotropic": Example(lambda: get_noise("isotropic")),
    "diagonal": Example(
        lambda: get_noise("diagonal", variance=torch.tensor([0.5, 1.0, 2.0]).reshape(3, 1, 1)),
        (3, 4, 4),
        params="variance=[0.5, 1, 2] per channel",
    ),
    "offset": Example(lambda: get_noise("offset", strength=0.5), params="strength=0.5"),
    "pyramid": Example(lambda: get_noise("pyramid", discount=0.8), params="ratio=2, discount=0.8"),
    "colored": Example(lambda: get_noise("colored", alpha=1.5), params="alpha=1.5"),
    "pink": Example(lambda: get_noise("pink"), params="alpha=1"),
    "brown": Example(lambda: get_noise("brown"), params="alpha=2"),
    "blue": Example(lambda: get_noise("blue"), params="alpha=-1"),
    "rbf": Example(lambda: get_noise("rbf", length_scale=2.0), params="length_scale=2"),
    "spectral": Example(
        lambda: get_noise("spectral", power=_spectrum(8)),
        (1, 8, 8),
        (3, 8, 8),
        params="power=1/(0.05+|f|^2) on 8x8",
    ),
    "frames-mixed": Example(
        lambda: get_noise("frames-mixed", rho=0.8, axis=0), (4, 2, 2), (8, 8, 8), "rho=0.8"
    ),
    "frames-progressive": Example(
        lambda: get_noise("frames-progressive", rho=0.9, axis=0), (4, 2, 2), (8, 8, 8), "rho=0.9"
    ),
    "dense": Example(
        lambda: get_noise("dense", cov=_ar_cov(16)), (16,), (16,), "0.7^|i-j| + 0.1 I"
    ),
    "lowrank": Example(
        lambda: get_noise(
            "lowrank",
            cov_factor=torch.randn(48, 3, generator=torch.Generator().manual_seed(0)),
            cov_diag=torch.full((48,), 0.5),
        ),
        (3, 4, 4),
        (3, 4, 4),
        "d=48, rank 3, diag 0.5",
    ),
    "sum": Example(
        lambda: get_noise("sum", parts=[get_noise("offset", strength=0.5), get_noise("pink")]),
        params="offset(0.5) + pink",
    ),
    "kronecker": Example(
        lambda: get_noise(
            "kronecker",
            space=get_noise("rbf", length_scale=1.5),
            frames=get_noise("frames-progressive", rho=0.8, axis=0),
        ),
        (3, 4, 4),
        (6, 12, 12),
        "rbf(1.5) x frames-progressive(0.8)",
    ),
}
