"""Low rank plus diagonal: S = W W^T + diag(D) (torch.distributions.LowRankMultivariateNormal)."""

from __future__ import annotations

import math
from typing import Any

import torch

from .base import MAX_VARIANCE, NoiseFamily, as_float64


class LowRank(NoiseFamily):
    """L e = W e_r + sqrt(D) * e_d with e = (e_d, e_r): L = [diag(sqrt D), W], d x (d + r).

    Args:
        cov_factor: W, (d, r).
        cov_diag: D, (d,), > 0, so that S = W W^T + diag(D) is positive definite (as in
            torch.distributions).
    White shape: (B, d + r). Kept as given (no normalisation). Cost O(d r).
    """

    name = "lowrank"
    cost = "O(d r)"

    def __init__(self, cov_factor: Any, cov_diag: Any) -> None:
        self._cov_factor = as_float64(
            cov_factor, "cov_factor", self.name, largest=MAX_VARIANCE**0.5
        )
        self._cov_diag = as_float64(cov_diag, "cov_diag", self.name, largest=MAX_VARIANCE)
        if self._cov_factor.dim() != 2:
            raise ValueError(
                f"lowrank: cov_factor must be (d, r), got {tuple(self._cov_factor.shape)}"
            )
        d = self._cov_factor.shape[0]
        if self._cov_diag.shape != (d,):
            raise ValueError(
                f"lowrank: cov_diag must have shape ({d},) to match cov_factor "
                f"{tuple(self._cov_factor.shape)}, got {tuple(self._cov_diag.shape)}"
            )
        if (self._cov_diag <= 0).any():
            raise ValueError(
                f"lowrank: cov_diag must be > 0 (so that W W^T + diag(D) is positive "
                f"definite); got a minimum of {self._cov_diag.min().item():.6g}"
            )
        self.size, self.rank = self._cov_factor.shape

    @property
    def cov_factor(self) -> torch.Tensor:
        """W, float64 (d, r) (a copy: changing it changes nothing here)."""
        return self._cov_factor.clone()

    @property
    def cov_diag(self) -> torch.Tensor:
        """D, float64 (d,) (a copy)."""
        return self._cov_diag.clone()

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        super().check_shape(event_shape)
        if math.prod(event_shape) != self.size:
            raise ValueError(
                f"lowrank: cov_factor has {self.size} rows but the event shape "
                f"{tuple(event_shape)} has {math.prod(event_shape)} elements"
            )

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], self.size + self.rank)

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        diagonal, factor = white.split([self.size, self.rank], dim=-1)
        x = diagonal * self._on("sqrt(cov_diag)", white, self._cov_diag.sqrt) + factor @ self._on(
            "cov_factor.T", white, lambda: self._cov_factor.T
        )
        return x if shape is None else x.reshape(shape)

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        return self._cov_factor @ self._cov_factor.T + torch.diag(self._cov_diag)

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        self.check_shape(event_shape)
        return ((self._cov_factor**2).sum(1) + self._cov_diag).reshape(event_shape)

    def apply_ops(self, event_shape: tuple[int, ...]) -> float:
        return float(self.size * (self.rank + 1))

    def __repr__(self) -> str:
        return f"LowRank(d={self.size}, rank={self.rank})"
