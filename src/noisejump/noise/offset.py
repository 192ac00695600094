"""Offset noise: a per-sample, per-channel constant added to white noise.

    x = (e + s e_c 1) / sqrt(1 + s^2),   S = (I + s^2 1 1^T) / (1 + s^2) per channel

(Guttenberg 2023, "Diffusion with offset noise"; s is the offset strength, 0.1 there.)
The channel axis is the event's first axis; the constant spans the others.

The trainers' offset noise is the raw form, ``Offset(s, normalize=False)``:

    diffusers  noise = randn_like(latents) + noise_offset * randn(B, C, 1, 1)
               (examples/text_to_image/train_text_to_image.py, ``--noise_offset``)
    kohya-ss   noise = noise + noise_offset * randn(B, C, 1, 1)
               (library/custom_train_functions.py, ``apply_noise_offset``)

both the input's noise and the epsilon target, so S = I + s^2 1 1^T: a fixed covariance,
which q_sample's closed form and chain already serve (``diffusers_offset_noise``,
``kohya_offset_noise``). kohya's ``adaptive_noise_scale`` (an offset scaled by the
latents' own channel means) depends on x0 and is not a noise family.
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


def diffusers_offset_noise(noise_offset: float) -> Offset:
    """diffusers' ``--noise_offset``: noise = randn_like(latents) + noise_offset *
    randn(B, C, 1, 1), that is ``Offset(noise_offset, normalize=False)`` (module docstring).
    Pass it as a ForwardProcess's noise; the returned noise is the epsilon target."""
    return Offset(noise_offset, normalize=False)


def kohya_offset_noise(noise_offset: float) -> Offset:
    """kohya-ss's ``--noise_offset`` (``apply_noise_offset`` without
    ``adaptive_noise_scale``): noise + noise_offset * randn(B, C, 1, 1), the same
    ``Offset(noise_offset, normalize=False)`` as ``diffusers_offset_noise``."""
    return diffusers_offset_noise(noise_offset)
