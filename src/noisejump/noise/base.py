"""The protocol every noise family follows.

A family is a zero-mean Gaussian over one sample (the *event*, e.g. C x H x W) with
covariance S = L L^T, drawn as L e from white noise e ~ N(0, I). L need not be square:
a family may draw e of a larger *white shape* (DESIGN.md, section 1). Shapes passed to
``sample``/``white_shape`` are whole batches, batch first; ``covariance``/``variance``
take one event shape (no batch dimension).

    S        covariance(event_shape)   dense float64 (d, d), small d only (tests, verify)
    diag S   variance(event_shape)     per-element variance, float64, event-shaped
    L e      apply(white)              structured noise from white noise
    e        white_shape(shape)        the shape of e for a batch of ``shape``
"""

from __future__ import annotations

import torch


class NoiseFamily:
    """Base class: isotropic-shaped white noise pushed through ``apply``."""

    name = "base"
    #: Which basis diagonalises S: "identity" (diagonal S), "fft", "dct", or None (dense).
    eigenbasis: str | None = None
    #: True when S is the identity: the closed form is plain DDPM.
    is_isotropic = False

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def apply(self, white: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, shape, *, generator=None, device=None, dtype=torch.float32, out=None):
        """Structured noise L e of ``shape`` (batch first). ``out`` is a hint a family may
        write into (the chain reuses one buffer per step); always use the return value."""
        white = torch.randn(
            self.white_shape(tuple(shape)), generator=generator, device=device, dtype=dtype
        )
        return self.apply(white)

    def covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        raise NotImplementedError

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        return torch.diagonal(self.covariance(event_shape)).reshape(event_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
