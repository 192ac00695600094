"""Dense covariance for small d: S given, or its Cholesky factor L (S = L L^T)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import MAX_VARIANCE, NoiseFamily, as_float64


class Dense(NoiseFamily):
    """L e with L the lower Cholesky factor of S (torch.distributions' ``scale_tril``).

    Args:
        cov: S, (d, d) symmetric positive definite; or
        scale_tril: L, (d, d) lower triangular with a positive diagonal.
    Exactly one of them. The event may have any shape with d elements. Cost O(d^2).
    """

    name = "dense"
    cost = "O(d^2)"

    def __init__(self, cov: Any = None, scale_tril: Any = None) -> None:
        if (cov is None) == (scale_tril is None):
            raise TypeError(
                "dense: give exactly one of cov= (S, d x d) and scale_tril= (L, S = L L^T): "
                "get_noise('dense', cov=S) or noisejump.noise.Dense(cov=S)"
            )
        if cov is not None:
            cov = as_float64(cov, "cov", self.name, largest=MAX_VARIANCE)
            _check_square(cov, "cov")
            if not torch.allclose(cov, cov.T, rtol=1e-10, atol=1e-12):
                raise ValueError("dense: cov must be symmetric")
            scale_tril, info = torch.linalg.cholesky_ex(cov)
            if int(info) != 0:
                smallest = torch.linalg.eigvalsh(cov).min().item()
                raise ValueError(
                    f"dense: cov is not positive definite (smallest eigenvalue "
                    f"{smallest:.6g}); a covariance needs all eigenvalues > 0"
                )
            self._cov = cov
        else:
            scale_tril = as_float64(scale_tril, "scale_tril", self.name, largest=MAX_VARIANCE**0.5)
            _check_square(scale_tril, "scale_tril")
            if not torch.equal(scale_tril, scale_tril.tril()):
                raise ValueError("dense: scale_tril must be lower triangular")
            if (scale_tril.diagonal() <= 0).any():
                raise ValueError("dense: scale_tril needs a positive diagonal")
            self._cov = scale_tril @ scale_tril.T
        self._scale_tril = scale_tril
        self.size = scale_tril.shape[0]

    @property
    def cov(self) -> torch.Tensor:
        """S, float64 (d, d) (a copy: changing it changes nothing here)."""
        return self._cov.clone()

    @property
    def scale_tril(self) -> torch.Tensor:
        """L, the lower Cholesky factor of S, float64 (d, d) (a copy)."""
        return self._scale_tril.clone()

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        super().check_shape(event_shape)
        if math.prod(event_shape) != self.size:
            raise ValueError(
                f"dense: the covariance is {self.size} x {self.size} but the event shape "
                f"{tuple(event_shape)} has {math.prod(event_shape)} elements"
            )

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        flat = white.reshape(white.shape[0], -1)
        scale_tril_t = self._on("scale_tril.T", white, lambda: self._scale_tril.T)
        return (flat @ scale_tril_t).reshape(white.shape)

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        return self._cov.clone()

    def apply_ops(self, event_shape: tuple[int, ...]) -> float:
        return float(self.size) ** 2

    def __repr__(self) -> str:
        return f"Dense(d={self.size})"


def _check_square(matrix: torch.Tensor, name: str) -> None:
    if matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] == 0:
        raise ValueError(f"dense: {name} must be a square (d, d) matrix, got {tuple(matrix.shape)}")
