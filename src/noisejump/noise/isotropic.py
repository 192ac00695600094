"""Isotropic white noise, S = I: the DDPM case (Ho et al. 2020, eq. 4)."""

from __future__ import annotations

import torch

from .base import F64, NoiseFamily, event_size


class Isotropic(NoiseFamily):
    """e ~ N(0, I); L = I."""

    name = "isotropic"
    eigenbasis = "identity"
    is_isotropic = True

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        """Any event shape, scalars (a batch of shape (B,)) included."""

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        return white

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.eye(event_size(event_shape), dtype=F64)

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.ones(tuple(event_shape), dtype=F64)

    def restricted(
        self, event_shape: tuple[int, ...], axis: int, start: int, stop: int
    ) -> NoiseFamily:
        """Every axis: the elements are independent."""
        return self
