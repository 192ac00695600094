"""Pyramid (multi-resolution) noise: white noise at resolutions H/r^k, upsampled, summed.

    x = D^{-1/2} sum_k discount^k Up_k e_k,   e_k ~ N(0, I) of shape (h_k, w_k),
    h_k = max(1, floor(H / r^k)),   S = D^{-1/2} (sum_k discount^(2k) Up_k Up_k^T) D^{-1/2}

with Up_k bilinear upsampling (align_corners=False) and D = diag of the bracket, so every
position has unit variance: bilinear upsampling gives a variance that varies with position,
which we normalise per position, analytically (DESIGN.md). Pyramid noise as in Whitaker
2023 ("Multi-resolution noise for diffusion model training"), with a fixed ratio r.
Up_k = U_k (x) V_k is separable; U_k is PyTorch's bilinear rule written as a matrix.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F

from .._numpy import from_numpy
from .base import F64, NoiseFamily, check_image_event, check_number, check_positive

#: The most levels a pyramid has (sides of 2^64 pixels halve to 1 within them).
MAX_LEVELS = 64


def _bilinear_taps(size_out: int, size_in: int) -> tuple[torch.Tensor, ...]:
    """Row i of 1-D linear upsampling, align_corners=False: weight 1 - frac at ``low`` and
    frac at ``high``, source x = (i + 0.5) size_in / size_out - 0.5 clamped at 0."""
    i = torch.arange(size_out, dtype=F64)
    source = ((i + 0.5) * (size_in / size_out) - 0.5).clamp(min=0)
    low = source.floor().long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    return low, high, source - low


def bilinear_matrix(size_out: int, size_in: int) -> torch.Tensor:
    """The (size_out, size_in) matrix of 1-D linear upsampling (``_bilinear_taps``)."""
    low, high, frac = _bilinear_taps(size_out, size_in)
    rows = torch.arange(size_out)
    matrix = torch.zeros(size_out, size_in, dtype=F64)
    matrix[rows, low] += 1 - frac
    matrix[rows, high] += frac
    return matrix


def bilinear_row_power(size_out: int, size_in: int) -> torch.Tensor:
    """sum_j U[i, j]^2 of ``bilinear_matrix`` per row, in O(size_out) memory: the two taps
    squared, or 1 where they fall on one (clamped) source."""
    low, high, frac = _bilinear_taps(size_out, size_in)
    return torch.where(low == high, torch.ones_like(frac), (1 - frac) ** 2 + frac**2)


class Pyramid(NoiseFamily):
    """Multi-resolution noise over the last two event axes (H, W).

    Args:
        ratio: r > 1, the resolution ratio between levels (2 halves H and W each level).
        discount: the amplitude of level k is discount^k, in (0, 1].
        levels: the number of levels, at most MAX_LEVELS = 64 (default: until a side
            reaches 1, at most 64).
        normalize: unit variance at every position (default True).
    White shape: (B, *event[:-2], sum_k h_k w_k), the levels' white noise concatenated.
    """

    name = "pyramid"

    def __init__(
        self,
        ratio: float = 2.0,
        discount: float = 0.8,
        levels: int | None = None,
        normalize: bool = True,
    ) -> None:
        ratio = check_positive(ratio, "ratio", self.name)
        if ratio <= 1:
            raise ValueError(f"pyramid: ratio must be > 1, got {ratio!r}")
        discount = check_number(discount, "discount", self.name, low=0.0, high=1.0, open_low=True)
        levels = from_numpy(levels)
        if levels is not None and (
            isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS
        ):
            raise ValueError(
                f"pyramid: levels must be an int in [1, {MAX_LEVELS}] or None, got {levels!r}"
            )
        self.ratio, self.discount, self.levels = ratio, discount, levels
        self.normalize = normalize
        self._cache: dict = {}

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        check_image_event(tuple(event_shape), self.name)

    def restricted(
        self, event_shape: tuple[int, ...], axis: int, start: int, stop: int
    ) -> NoiseFamily | None:
        """The axes before the two image axes: there the images are independent."""
        return self if axis < len(event_shape) - 2 else None

    def sizes(self, height: int, width: int) -> list[tuple[int, int]]:
        """(h_k, w_k) for each level k. Without ``levels``: until a side reaches 1; a side
        that is 1 from the start (H = 1: 1-D signals given as (C, 1, L)) does not count."""
        sizes = []
        for k in range(self.levels or MAX_LEVELS):
            # r^k overflows a float for a huge r: every side is 1 by then
            scale = self.ratio**k if k * math.log(self.ratio) < 700 else math.inf
            h = max(1, math.floor(height / scale))
            w = max(1, math.floor(width / scale))
            sizes.append((h, w))
            reached = (h == 1 and height > 1) or (w == 1 and width > 1) or h == w == 1
            if self.levels is None and reached:
                break
        return sizes

    def _raw_variance(self, height: int, width: int) -> torch.Tensor:
        """diag(sum_k discount^(2k) Up_k Up_k^T): (H, W), float64, O(H W), cached."""
        key = (height, width)
        if key not in self._cache:
            var = torch.zeros(height, width, dtype=F64)
            for k, (h, w) in enumerate(self.sizes(height, width)):
                row, col = bilinear_row_power(height, h), bilinear_row_power(width, w)
                var += self.discount ** (2 * k) * torch.outer(row, col)
            self._cache[key] = var
        return self._cache[key]

    def _std(self, height: int, width: int) -> torch.Tensor:
        """What ``apply`` divides by: sqrt of the raw variance (1 without ``normalize``)."""
        var = self._raw_variance(height, width)
        return var.sqrt() if self.normalize else torch.ones_like(var)

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        """1 everywhere (raw: the bracket's diagonal per position), without the dense S."""
        self.check_shape(tuple(event_shape))
        raw = self._raw_variance(*event_shape[-2:])
        per_position = torch.ones_like(raw) if self.normalize else raw
        return per_position.expand(tuple(event_shape)).clone()

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        n = sum(h * w for h, w in self.sizes(shape[-2], shape[-1]))
        return (*shape[:-2], n)

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if shape is None:
            raise ValueError("pyramid: apply needs the structured shape (its L is not square)")
        height, width = shape[-2], shape[-1]
        flat = white.reshape(-1, 1, white.shape[-1])  # (N, 1, sum h_k w_k)
        total: torch.Tensor | None = None
        start = 0
        for k, (h, w) in enumerate(self.sizes(height, width)):
            level = flat[..., start : start + h * w].reshape(-1, 1, h, w)
            start += h * w
            if (h, w) != (height, width):
                level = F.interpolate(level, size=(height, width), mode="bilinear")
            level = level * self.discount**k
            total = level if total is None else total + level
        std = self._on(("std", height, width), white, lambda: self._std(height, width))
        return (cast(torch.Tensor, total) / std).reshape(shape)

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        height, width = event_shape[-2:]
        block = torch.zeros(height * width, height * width, dtype=F64)
        for k, (h, w) in enumerate(self.sizes(height, width)):
            rows, cols = bilinear_matrix(height, h), bilinear_matrix(width, w)
            block += self.discount ** (2 * k) * torch.kron(rows @ rows.T, cols @ cols.T)
        inv_std = 1 / self._std(height, width).flatten()
        block = inv_std[:, None] * block * inv_std[None, :]
        return torch.block_diag(*[block] * math.prod(event_shape[:-2]))

    def apply_ops(self, event_shape: tuple[int, ...]) -> float:
        return 4.0 * math.prod(event_shape) * len(self.sizes(*event_shape[-2:]))

    def __repr__(self) -> str:
        return (
            f"Pyramid(ratio={self.ratio}, discount={self.discount}, levels={self.levels}, "
            f"normalize={self.normalize})"
        )
