"""Offset noise: a per-sample, per-channel constant added to white noise.

    x = (e + s e_c 1) / sqrt(1 + s^2),   S = (I + s^2 1 1^T) / (1 + s^2) per channel

(Guttenberg 2023, "Diffusion with offset noise"; s is the offset strength, 0.1 there.)
The channel axis is the event's first axis; the constant spans the others.
"""

from __future__ import annotations

import math

import torch

from .base import F64, NoiseFamily, check_number, event_size

#: The largest offset strength s: the white part of each element then keeps
#: 1 / (1 + s^2) ~ 1e-6 of its variance, the eigenvalue floor the stationary families keep
#: (DESIGN.md); beyond it S is numerically singular (whitening, verify) and, near
#: s = 1e154, s^2 overflows float64.
MAX_STRENGTH = 1e3


class Offset(NoiseFamily):
    """White noise plus strength * one shared N(0, 1) per (sample, channel).

    Args:
        strength: s in [0, MAX_STRENGTH = 1000], the offset's standard deviation relative
            to the white part.
        normalize: divide by sqrt(1 + s^2) for unit marginal variance (default True).
    White shape: (B, C, prod(spatial) + 1); the last entry of each channel is e_c.
    """

    name = "offset"

    def __init__(self, strength: float = 0.1, normalize: bool = True) -> None:
        self.strength = check_number(strength, "strength", self.name, low=0.0, high=MAX_STRENGTH)
        self.normalize = normalize
        self._norm = 1 / math.sqrt(1 + self.strength**2) if normalize else 1.0

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        if len(event_shape) < 2:
            raise ValueError(
                f"offset: needs an event of shape (C, ...) with at least 2 dimensions "
                f"(channels first), got {tuple(event_shape)}"
            )

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], shape[1], event_size(shape[2:]) + 1)

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if shape is None:
            raise ValueError("offset: apply needs the structured shape (its L is not square)")
        n = white.shape[-1] - 1
        x = white[..., :n] + self.strength * white[..., n:]
        return (x * self._norm).reshape(shape)

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        n = event_size(event_shape[1:])
        block = torch.eye(n, dtype=F64) + self.strength**2 * torch.ones(n, n, dtype=F64)
        return torch.block_diag(*[block] * event_shape[0]) * self._norm**2

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        """S_ii = (1 + s^2) / (1 + s^2) = 1 (raw: 1 + s^2), without the dense S."""
        self.check_shape(tuple(event_shape))
        return torch.full(tuple(event_shape), (1 + self.strength**2) * self._norm**2, dtype=F64)

    def restricted(
        self, event_shape: tuple[int, ...], axis: int, start: int, stop: int
    ) -> NoiseFamily | None:
        """The channel axis (0): the offset is shared within a channel, not across them."""
        return self if axis == 0 else None

    def __repr__(self) -> str:
        return f"Offset(strength={self.strength}, normalize={self.normalize})"
