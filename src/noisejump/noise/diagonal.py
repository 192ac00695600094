"""Diagonal noise: per-element or per-channel variances, S = diag(v)."""

from __future__ import annotations

from typing import Any

import torch

from .base import MAX_VARIANCE, NoiseFamily, as_float64


class Diagonal(NoiseFamily):
    """L e = sqrt(v) * e with v >= 0 broadcast to the event shape.

    Args:
        variance: the variances v, a tensor that broadcasts to the event shape (batch
            excluded), e.g. shape (C, 1, 1) for per-channel or (C, H, W) per element.
            Kept as given (no normalisation).
    """

    name = "diagonal"
    eigenbasis = "identity"

    def __init__(self, variance: Any) -> None:
        v = as_float64(variance, "variance", self.name, largest=MAX_VARIANCE)
        if not (v > 0).all():
            raise ValueError(
                f"diagonal: variances must be > 0 (S positive definite, so whitening and the "
                f"posterior stay finite), got a minimum of {v.min().item():.6g}"
            )
        self._var = v
        self._scale = v.sqrt()

    @property
    def var(self) -> torch.Tensor:
        """v as given, float64 (a copy: changing it changes nothing here)."""
        return self._var.clone()

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        super().check_shape(event_shape)
        try:
            torch.broadcast_shapes(self._var.shape, tuple(event_shape))
            ok = len(self._var.shape) <= len(event_shape)
        except RuntimeError:
            ok = False
        if not ok or torch.broadcast_shapes(self._var.shape, tuple(event_shape)) != tuple(
            event_shape
        ):
            raise ValueError(
                f"diagonal: variance of shape {tuple(self._var.shape)} does not broadcast to "
                f"the event shape {tuple(event_shape)} (batch excluded)"
            )

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        return white * self._on("scale", white, lambda: self._scale)

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.diag(self.variance(event_shape).flatten())

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        self.check_shape(tuple(event_shape))
        return self._var.expand(tuple(event_shape)).clone()

    def restricted(
        self, event_shape: tuple[int, ...], axis: int, start: int, stop: int
    ) -> NoiseFamily:
        """Every axis: the elements are independent; the variances of the slice."""
        ndim = len(event_shape)
        var_axis = axis - (ndim - self._var.dim())  # variances broadcast from the right
        if var_axis < 0 or self._var.shape[var_axis] == 1:
            return self
        cache = self.__dict__.setdefault("_restricted", {})
        if (var_axis, start, stop) not in cache:
            cache[var_axis, start, stop] = Diagonal(self._var.narrow(var_axis, start, stop - start))
        return cache[var_axis, start, stop]

    def __repr__(self) -> str:
        return f"Diagonal(variance of shape {tuple(self._var.shape)})"
