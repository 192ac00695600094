"""Frame-correlated video noise along one event axis (PYoCo, Ge et al. 2023, arXiv 2305.10474).

    mixed:        e_i = rho e_shared + sqrt(1 - rho^2) e_ind,i    Cov(e_i, e_j) = rho^2 (i != j)
    progressive:  e_i = rho e_{i-1} + sqrt(1 - rho^2) e_ind,i    Cov(e_i, e_j) = rho^|i - j|

PYoCo's parameter a gives rho^2 = a^2 / (1 + a^2) (mixed) and rho = a / sqrt(1 + a^2)
(progressive, an AR(1) across frames). Both have unit variance; elements at different
positions within a frame are independent. ``axis`` counts event axes (batch excluded).
"""

from __future__ import annotations

import math

import torch

from .._numpy import from_numpy
from .base import F64, NoiseFamily, check_rho, event_size, resolve_axis


class _Frames(NoiseFamily):
    def __init__(self, rho: float = 0.5, axis: int = 0) -> None:
        self.rho = check_rho(rho, self.name)
        axis = from_numpy(axis)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"{self.name}: axis must be an int, got {axis!r}")
        self.axis = axis

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        super().check_shape(event_shape)
        resolve_axis(self.axis, event_shape, self.name)

    def _batch_axis(self, shape: tuple[int, ...]) -> int:
        return 1 + resolve_axis(self.axis, shape[1:], self.name)

    def frame_covariance(self, frames: int) -> torch.Tensor:
        raise NotImplementedError

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        axis = resolve_axis(self.axis, event_shape, self.name)
        before, after = event_size(event_shape[:axis]), event_size(event_shape[axis + 1 :])
        frames = self.frame_covariance(event_shape[axis])
        eye_before, eye_after = torch.eye(before, dtype=F64), torch.eye(after, dtype=F64)
        return torch.kron(eye_before, torch.kron(frames, eye_after))

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        self.check_shape(event_shape)
        return torch.ones(tuple(event_shape), dtype=F64)

    def frame_split(self, event_shape: tuple[int, ...]) -> tuple[int, torch.Tensor]:
        """S = R (x) I: the frame covariance R across the frame axis, S_space = I."""
        axis = resolve_axis(self.axis, tuple(event_shape), self.name)
        return axis, self.frame_covariance(event_shape[axis])

    def frame_white(self, white: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The first F white frames (S_space = I), frame axis moved to dim 1."""
        axis = self._batch_axis(tuple(shape))
        return white.narrow(axis, 0, shape[axis]).movedim(axis, 1)

    def restricted(
        self, event_shape: tuple[int, ...], axis: int, start: int, stop: int
    ) -> NoiseFamily | None:
        """Any axis but the frame axis: positions within a frame are independent."""
        return None if axis == resolve_axis(self.axis, event_shape, self.name) else self

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rho={self.rho}, axis={self.axis})"


class FramesMixed(_Frames):
    """Shared plus independent noise across frames (PYoCo, Ge et al. 2023, arXiv 2305.10474):
    e_i = rho e_shared + sqrt(1 - rho^2) e_ind,i, so rho is the mixing coefficient and the
    correlation of two frames is rho^2 (PYoCo's rho^2 = a^2 / (1 + a^2)). White shape: one
    extra frame (the shared e_shared is the last frame along the axis)."""

    name = "frames-mixed"

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        dims = list(shape)
        dims[self._batch_axis(shape)] += 1
        return tuple(dims)

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        axis = 1 + resolve_axis(self.axis, white.shape[1:], self.name)
        frames = white.shape[axis] - 1
        independent, shared = white.split([frames, 1], dim=axis)
        return self.rho * shared + math.sqrt(1 - self.rho**2) * independent

    def frame_covariance(self, frames: int) -> torch.Tensor:
        return (1 - self.rho**2) * torch.eye(frames, dtype=F64) + self.rho**2


class FramesProgressive(_Frames):
    """AR(1) across frames: e_0 = e_ind,0, e_i = rho e_{i-1} + sqrt(1 - rho^2) e_ind,i."""

    name = "frames-progressive"

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        axis = self._batch_axis(white.shape)
        innovations = white.unbind(axis)
        scale = math.sqrt(1 - self.rho**2)
        frames = [innovations[0]]
        for innovation in innovations[1:]:
            frames.append(self.rho * frames[-1] + scale * innovation)
        return torch.stack(frames, axis)

    def frame_covariance(self, frames: int) -> torch.Tensor:
        index = torch.arange(frames, dtype=F64)
        return self.rho ** (index[:, None] - index[None, :]).abs()
