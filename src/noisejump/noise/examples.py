"""One valid example of every family, with the event shapes it is checked on, and the
parameters every family refuses.

``EXAMPLES`` is used by ``noisejump verify --noise NAME`` and by the contract tests that
every family must pass (the registry pattern of torch.distributions' ``_get_examples``).
``exact`` is a small event for the float64 check, ``stat`` a realistic one for the
statistical check. ``BAD_EXAMPLES`` (``_get_bad_examples``) lists invalid parameters
with the error each must raise at construction.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from . import get_noise
from .base import NoiseFamily
from .stationary import Colored, frequency_radius


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


@dataclass(frozen=True)
class BadExample:
    """Parameters a family refuses at construction, and the words of its message."""

    kwargs: dict[str, Any]
    message: str
    error: type[Exception] = ValueError


_INF, _NAN = math.inf, math.nan

#: Invalid parameters of every family (torch.distributions' ``_get_bad_examples``): each
#: is refused by ``get_noise(name, **kwargs)`` with ``error`` matching ``message``.
#: Non-finite values, and finite ones whose noise would not be (1/f^alpha overflowing,
#: s^2 overflowing), are among them.
BAD_EXAMPLES: dict[str, list[BadExample]] = {
    "isotropic": [BadExample({"scale": 2.0}, "takes no arguments", TypeError)],
    "diagonal": [
        BadExample({"variance": torch.tensor([1.0, -0.5])}, "variances must be > 0"),
        BadExample({"variance": torch.tensor([1.0, _INF])}, "NaN or infinity"),
        BadExample({"variance": torch.tensor([1e300, 1.0], dtype=torch.float64)}, "overflows"),
        BadExample({}, r"get_noise\('diagonal', variance=", TypeError),
    ],
    "offset": [
        BadExample({"strength": -1.0}, r"strength must be a finite number in \[0, 1000\]"),
        BadExample({"strength": _INF}, r"strength must be a finite number in \[0, 1000\]"),
        BadExample({"strength": 1e200}, r"in \[0, 1000\], got 1e\+200"),
        BadExample({"strength": _NAN}, "strength must be a finite number"),
        BadExample({"strength": "0.1"}, "strength must be a finite number"),
    ],
    "pyramid": [
        BadExample({"ratio": 1.0}, "ratio must be > 1"),
        BadExample({"ratio": _INF}, "ratio must be a finite number > 0"),
        BadExample({"discount": 0.0}, r"discount must be a finite number in \(0, 1\]"),
        BadExample({"discount": _NAN}, "discount must be a finite number"),
        BadExample({"levels": 10**9}, r"levels must be an int in \[1, 64\]"),
        BadExample({"levels": 2.5}, "levels must be an int"),
    ],
    "colored": [
        BadExample({"alpha": "pink"}, "alpha must be a finite number"),
        BadExample({"alpha": 1e6}, r"alpha must be a finite number in \[-10, 10\]"),
        BadExample({"alpha": -1e6}, r"in \[-10, 10\]"),
        BadExample({"alpha": _NAN}, "alpha must be a finite number"),
    ],
    "pink": [BadExample({"alpha": 2.0}, "multiple values", TypeError)],
    "brown": [BadExample({"normalize": True, "alpha": 1.0}, "multiple values", TypeError)],
    "blue": [BadExample({"alpha": -2.0}, "multiple values", TypeError)],
    "rbf": [
        BadExample({"length_scale": 0.0}, "length_scale must be a finite number >= 1e-100"),
        BadExample({"length_scale": _INF}, "length_scale must be a finite number >= 1e-100"),
        BadExample({"length_scale": _NAN}, "length_scale must be a finite number >= 1e-100"),
        BadExample({"length_scale": 1e-300}, "length_scale must be a finite number >= 1e-100"),
    ],
    "spectral": [
        BadExample({"power": -torch.ones(4, 4)}, "power spectrum is >= 0"),
        BadExample({"power": torch.arange(16.0).reshape(4, 4)}, r"P\(f\) = P\(-f\)"),
        BadExample({"power": torch.full((4, 4), _INF)}, "NaN or infinity"),
        BadExample({"power": torch.zeros(4, 4)}, "all zero"),
        BadExample({}, r"get_noise\('spectral', power=", TypeError),
    ],
    "frames-mixed": [
        BadExample({"rho": 1.0}, r"rho must be a correlation in \[0, 1\)"),
        BadExample({"rho": _NAN}, "rho must be a correlation"),
        BadExample({"axis": 0.5}, "axis must be an int"),
    ],
    "frames-progressive": [
        BadExample({"rho": -0.1}, "rho must be a correlation"),
        BadExample({"rho": _INF}, "rho must be a correlation"),
    ],
    "dense": [
        BadExample({"cov": torch.tensor([[1.0, 2.0], [2.0, 1.0]])}, "not positive definite"),
        BadExample({"cov": torch.ones(2, 3)}, "square"),
        BadExample({"cov": torch.tensor([[1.0, _NAN], [_NAN, 1.0]])}, "NaN or infinity"),
        BadExample({"cov": torch.eye(3, dtype=torch.float64) * 1e300}, "overflows float32"),
        BadExample({"scale_tril": torch.tensor([[1.0, 1.0], [0.0, 1.0]])}, "lower triangular"),
        BadExample({}, r"get_noise\('dense', cov=S\)", TypeError),
    ],
    "lowrank": [
        BadExample(
            {
                "cov_factor": torch.full((4, 2), 1e200, dtype=torch.float64),
                "cov_diag": torch.ones(4),
            },
            "cov_factor has an entry of magnitude 1e\\+200",
        ),
        BadExample({"cov_factor": torch.ones(4, 2), "cov_diag": -torch.ones(4)}, "must be > 0"),
        BadExample(
            {"cov_factor": torch.ones(4, 2), "cov_diag": torch.zeros(4)}, "positive definite"
        ),
        BadExample({"cov_factor": torch.ones(4, 2), "cov_diag": torch.ones(3)}, r"shape \(4,\)"),
        BadExample(
            {"cov_factor": torch.full((4, 2), _INF), "cov_diag": torch.ones(4)}, "NaN or infinity"
        ),
        BadExample({"cov_diag": torch.ones(4)}, r"needs parameters \(cov_factor\)", TypeError),
    ],
    "sum": [
        BadExample({"parts": [Colored(1.0)]}, "at least two"),
        BadExample({}, r"get_noise\('sum', parts=", TypeError),
    ],
    "kronecker": [
        BadExample({"space": Colored(1.0), "frames": Colored(1.0)}, "frame family"),
        BadExample({"space": Colored(1.0)}, r"needs parameters \(frames\)", TypeError),
    ],
}
