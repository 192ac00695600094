"""Families built from families: independent sums and Kronecker (space x frames) products.

sum:        x = sum_k L_k e_k,  S = sum_k S_k              (independent parts)
kronecker:  x = (L_frames (x) L_space) e,  S = S_frames (x) S_space   (video)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, cast

import torch

from .base import NoiseFamily, event_size, resolve_axis
from .frames import _Frames


class Sum(NoiseFamily):
    """The sum of independent noises: covariances add, S = c^2 sum_k S_k.

    With ``normalize`` (the default) c = 1 / sqrt(mean_i sum_k (S_k)_ii), so the mean
    marginal variance is 1 (every element's, when the parts have uniform variance, as the
    normalised families do); ``normalize=False`` keeps c = 1, the raw sum.
    White shape: (B, sum_k m_k), each part's white noise flattened (m_k per sample).
    """

    name = "sum"

    def __init__(self, parts: Sequence[NoiseFamily], normalize: bool = True) -> None:
        parts = list(parts)
        if len(parts) < 2 or not all(isinstance(p, NoiseFamily) for p in parts):
            raise ValueError(f"sum: needs at least two noise families, got {parts!r}")
        self.parts = parts
        self.normalize = bool(normalize)
        self._scales: dict[tuple[int, ...], float] = {}
        bases = {p.eigenbasis for p in parts}
        self.eigenbasis = bases.pop() if len(bases) == 1 and None not in bases else None
        self.cost = " + ".join(dict.fromkeys(p.cost for p in parts))

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        for part in self.parts:
            part.check_shape(event_shape)

    def _sizes(self, shape: tuple[int, ...]) -> list[int]:
        return [event_size(p.white_shape(tuple(shape))[1:]) for p in self.parts]

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return (shape[0], sum(self._sizes(shape)))

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if shape is None:
            raise ValueError("sum: apply needs the structured shape (its L is not square)")
        chunks = white.split(self._sizes(shape), dim=-1)
        total: Any = 0  # 0, then a tensor
        for part, chunk in zip(self.parts, chunks, strict=True):
            total = total + part.apply(chunk.reshape(part.white_shape(tuple(shape))), shape)
        return total * self._scale(tuple(shape[1:]))

    def _scale(self, event_shape: tuple[int, ...]) -> float:
        """c, from the parts' analytic variances (cached per event shape)."""
        if not self.normalize:
            return 1.0
        if event_shape not in self._scales:
            raw = sum(float(part.variance(event_shape).mean()) for part in self.parts)
            self._scales[event_shape] = raw**-0.5
        return self._scales[event_shape]

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        raw = cast(torch.Tensor, sum(part.covariance(event_shape) for part in self.parts))
        return raw * self._scale(tuple(event_shape)) ** 2

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        raw = cast(torch.Tensor, sum(part.variance(event_shape) for part in self.parts))
        return raw * self._scale(tuple(event_shape)) ** 2

    def apply_ops(self, event_shape: tuple[int, ...]) -> float:
        return sum(part.apply_ops(event_shape) for part in self.parts)

    def __repr__(self) -> str:
        return f"Sum({self.parts!r}, normalize={self.normalize})"


class Kronecker(NoiseFamily):
    """A spatial family within each frame times a frame family across frames.

    Args:
        space: any family, applied to the event with the frame axis removed; a clip
            (F, H, W) gives it (1, H, W), one channel.
        frames: a frame family (``frames-mixed`` or ``frames-progressive``); its ``axis``
            is the frame axis of the event.
    White shape: (B, frame whites, *space white shape per frame).
    """

    name = "kronecker"

    def __init__(self, space: NoiseFamily, frames: _Frames) -> None:
        if not isinstance(space, NoiseFamily):
            raise ValueError(f"kronecker: space must be a noise family, got {space!r}")
        if not isinstance(frames, _Frames):
            raise ValueError(
                f"kronecker: frames must be a frame family (frames-mixed or "
                f"frames-progressive), got {frames!r}"
            )
        self.space, self.frames = space, frames
        self._frames_first = type(frames)(rho=frames.rho, axis=0)
        self.cost = space.cost

    def _axis(self, event_shape: tuple[int, ...]) -> int:
        return resolve_axis(self.frames.axis, event_shape, self.name)

    def _space_event(self, event_shape: tuple[int, ...]) -> tuple[int, ...]:
        axis = self._axis(event_shape)
        return tuple(event_shape[:axis]) + tuple(event_shape[axis + 1 :])

    def _space_view(self, event_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The event the space family sees: the space event, with a unit channel axis in
        front where it has two axes (a clip (F, H, W) is one channel of H x W frames)."""
        space_event = self._space_event(event_shape)
        return (1, *space_event) if len(space_event) == 2 else space_event

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        self.frames.check_shape(event_shape)
        self.space.check_shape(self._space_view(event_shape))

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        event = tuple(shape[1:])
        frames = event[self._axis(event)]
        frame_whites = self._frames_first.white_shape((shape[0], frames, 1))[1]
        space_white = self.space.white_shape((1, *self._space_view(event)))[1:]
        return (shape[0], frame_whites, *space_white)

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        if shape is None:
            raise ValueError("kronecker: apply needs the structured shape")
        batch, frame_whites = white.shape[:2]
        space_event = self._space_event(tuple(shape[1:]))
        flat = white.reshape(batch * frame_whites, *white.shape[2:])
        x = self.space.apply(flat, (batch * frame_whites, *self._space_view(tuple(shape[1:]))))
        x = x.reshape(batch, frame_whites, *space_event)
        frames = shape[1 + self._axis(tuple(shape[1:]))]
        x = self._frames_first.apply(x, (batch, frames, *space_event))
        return x.movedim(1, 1 + self._axis(tuple(shape[1:])))

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        axis = self._axis(event_shape)
        frames = event_shape[axis]
        cov = torch.kron(
            self.frames.frame_covariance(frames),
            self.space.covariance(self._space_view(event_shape)),
        )
        # rows are ordered (frame, space...); permute them to the event's own order
        order = torch.arange(event_size(event_shape)).reshape(
            frames, *self._space_event(event_shape)
        )
        order = order.movedim(0, axis).flatten()
        return cov[order][:, order]

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        self.check_shape(event_shape)
        axis = self._axis(event_shape)
        space = self.space.variance(self._space_view(event_shape))
        space = space.reshape(self._space_event(event_shape))
        return space.unsqueeze(axis).expand(tuple(event_shape)).clone()

    def frame_split(self, event_shape: tuple[int, ...]) -> tuple[int, torch.Tensor]:
        """S = R (x) S_space with R the frame family's covariance."""
        axis = self._axis(tuple(event_shape))
        return axis, self.frames.frame_covariance(event_shape[axis])

    def frame_white(self, white: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """The space family applied to the first F frame whites: (B, F, *space event)."""
        event = tuple(shape[1:])
        batch, frames = white.shape[0], event[self._axis(event)]
        flat = white[:, :frames].reshape(batch * frames, *white.shape[2:])
        x = self.space.apply(flat, (batch * frames, *self._space_view(event)))
        return x.reshape(batch, frames, *self._space_event(event))

    def apply_ops(self, event_shape: tuple[int, ...]) -> float:
        axis = self._axis(event_shape)
        return event_shape[axis] * self.space.apply_ops(
            self._space_view(event_shape)
        ) + 2 * math.prod(event_shape)

    def __repr__(self) -> str:
        return f"Kronecker(space={self.space!r}, frames={self.frames!r})"
