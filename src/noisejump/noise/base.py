"""The protocol every noise family follows.

A family is a zero-mean Gaussian over one sample (the *event*, e.g. C x H x W) with
covariance S = L L^T, drawn as L e from white noise e ~ N(0, I). L need not be square:
a family may draw e of a larger *white shape* (DESIGN.md, section 1). Shapes passed to
``sample``/``white_shape``/``apply`` are whole batches, batch first; ``covariance`` and
``variance`` take one event shape (no batch dimension).

    S        covariance(event_shape)   dense float64 (d, d) from an analytic formula,
                                       written independently of ``apply`` (tests, verify)
    diag S   variance(event_shape)     per-element variance, float64, event-shaped
    L e      apply(white, shape)       structured noise of ``shape`` from white noise
    e        white_shape(shape)        the shape of e for a batch of ``shape``

Invariant: ``sample(shape)`` is exactly ``apply(randn(white_shape(shape)), shape)``, so a
keyed (counter-based) white source gives the same structured noise as ``sample``.

Scale: families with an intrinsic scale (offset, pyramid, stationary, frames) have unit
marginal variance, S_ii = 1, by default; ``normalize=False`` keeps the raw scale of their
formula. Families given a covariance by the user (diagonal, dense, low rank, sums,
Kronecker products) keep it exactly. A process with noise S has q(x_t | x0) =
N(signal_t x0, sigma_t^2 S): the "variance" of ``ForwardProcess.q_posterior`` is the
isotropic one, and the posterior covariance is that variance times S.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from .._numpy import from_numpy

F64 = torch.float64


class NoiseFamily:
    """Base class: white noise of ``white_shape`` pushed through ``apply``."""

    name = "base"
    #: Which orthonormal basis diagonalises S: "identity" (diagonal S), "fft" (stationary,
    #: circulant), "dct", or None (no cheap basis).
    eigenbasis: str | None = None
    #: True when S is the identity: the closed form is plain DDPM.
    is_isotropic = False
    #: How ``apply`` costs, for the plan: a big-O in d (elements per sample).
    cost = "O(d)"

    @property
    def stationary(self) -> bool:
        """True when S is translation invariant (circulant): diagonal in the FFT basis."""
        return self.eigenbasis == "fft" or self.is_isotropic

    def check_shape(self, event_shape: tuple[int, ...]) -> None:
        """Raise ValueError when this family cannot make noise of ``event_shape``."""
        if len(event_shape) == 0:
            raise ValueError(f"{self.name} noise needs at least one event dimension, got ()")

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)

    def apply(self, white: torch.Tensor, shape: tuple[int, ...] | None = None) -> torch.Tensor:
        """L e for white noise ``white`` of ``white_shape(shape)``; ``shape`` (the structured
        batch shape) defaults to ``white.shape`` and is needed where L is not square."""
        raise NotImplementedError

    def sample(
        self,
        shape: Sequence[int],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Structured noise L e of ``shape`` (batch first)."""
        shape = tuple(shape)
        self.check_shape(shape[1:])
        white = torch.randn(
            self.white_shape(shape), generator=generator, device=device, dtype=dtype
        )
        return self.apply(white, shape)

    def covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        """S for one event, a dense float64 (d, d) matrix from the analytic formula (a new
        tensor). d^2 memory: refused with ValueError above ``MAX_DENSE_BYTES`` (1 GiB,
        d > 11585), checked before anything is allocated; ``variance`` needs O(d)."""
        event_shape = tuple(event_shape)
        self.check_shape(event_shape)
        check_dense_bytes(event_shape, f"{self.name}: covariance")
        return self._covariance(event_shape)

    def _covariance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        """The analytic S of a valid event (the family's formula, written independently
        of ``apply``)."""
        raise NotImplementedError

    def variance(self, event_shape: tuple[int, ...]) -> torch.Tensor:
        """diag S, event-shaped float64 (a new tensor). Families override this with an
        O(d) formula; this fallback takes the dense covariance's diagonal."""
        return torch.diagonal(self.covariance(tuple(event_shape))).reshape(event_shape)

    def _on(
        self, key: Hashable, like: torch.Tensor, build: Callable[[], torch.Tensor]
    ) -> torch.Tensor:
        """The float64 table ``build()`` on like's device and dtype, cached: tables move
        once per device and dtype, not on every call (DESIGN.md, section 2)."""
        cache = self.__dict__.setdefault("_device_tables", {})
        full_key = (key, like.device, like.dtype)
        if full_key not in cache:
            cache[full_key] = build().to(device=like.device, dtype=like.dtype)
        return cache[full_key]

    def apply_ops(self, event_shape: tuple[int, ...]) -> float:
        """Rough multiply-adds of one ``apply`` per sample (the plan's cost estimate)."""
        return float(math.prod(event_shape))

    # ---- structure that per-frame steps and sharding use ------------------------------------

    def frame_split(self, event_shape: tuple[int, ...]) -> tuple[int, torch.Tensor] | None:
        """(axis, R) when S = R (x) S_space across the frames of event axis ``axis`` (R the
        F x F frame covariance, float64): per-frame steps then keep one draw
        (``noisejump.processes.per_element``). None when S has no such split (the default)."""
        return None

    def frame_white(self, white: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """For a family with a ``frame_split``: the noise of every frame drawn apart,
        (L_space applied to F independent white frames), shape (B, F, *the other event
        axes), from white noise of ``white_shape(shape)``. Then L e = (L_R (x) I) of it,
        and (G (x) I) of it has covariance G G^T (x) S_space for any F x F factor G."""
        raise NotImplementedError(f"{self.name} has no frame split")

    def restricted(
        self, event_shape: tuple[int, ...], axis: int, start: int, stop: int
    ) -> NoiseFamily | None:
        """The family of elements [start, stop) along event axis ``axis`` of events of
        ``event_shape``, when S is block diagonal along that axis and the white noise keeps
        the axis (its slice [start, stop) drawn apart gives the slice of L e); None when
        the correlation runs along the axis (the default: sharding refused)."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ---- helpers shared by the families -----------------------------------------------------


#: The most memory a dense float64 (d, d) matrix of one event may take: ``covariance``
#: (and what builds on it: ``ForwardProcess.moments``, ``verify``) refuses larger events
#: before allocating (1 GiB: d <= 11585, e.g. 3 x 62 x 62).
MAX_DENSE_BYTES = 2**30


def event_size(event_shape: tuple[int, ...]) -> int:
    return math.prod(event_shape)


def check_dense_bytes(event_shape: tuple[int, ...], what: str) -> None:
    """ValueError when a dense float64 (d, d) matrix of this event exceeds MAX_DENSE_BYTES."""
    d = event_size(event_shape)
    if 8 * d * d > MAX_DENSE_BYTES:
        raise ValueError(
            f"{what} of event {tuple(event_shape)} is a dense {d} x {d} float64 matrix "
            f"({8 * d * d / 2**30:.3g} GiB), above the bound of {MAX_DENSE_BYTES / 2**30:g} GiB "
            "(noisejump.noise.base.MAX_DENSE_BYTES): use a smaller event, or variance() "
            "for the per-element variances"
        )


def check_number(
    value: Any,
    name: str,
    family: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    open_low: bool = False,
) -> float:
    """A finite real number in [low, high] ((low, high] with ``open_low``), as a float;
    NumPy numbers are accepted. ValueError naming the family, parameter, value and range."""
    value = from_numpy(value)
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = number and math.isfinite(value) and (value > low if open_low else value >= low)
    if not (ok and value <= high):
        if math.isinf(high) and math.isinf(low):
            allowed = "a finite number"
        elif math.isinf(high):
            allowed = f"a finite number {'>' if open_low else '>='} {low:g}"
        else:
            allowed = f"a finite number in {'(' if open_low else '['}{low:g}, {high:g}]"
        raise ValueError(f"{family}: {name} must be {allowed}, got {value!r}")
    return float(value)


def check_positive(value: Any, name: str, family: str, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``allow_zero``), as a float."""
    return check_number(value, name, family, low=0.0, open_low=not allow_zero)


def check_image_event(event_shape: tuple[int, ...], what: str) -> None:
    """Events of 2-D families (stationary, pyramid; blurring): (C, H, W), or more axes
    before them (independent). Two axes are refused, not read as H x W: a batch (B, C, L)
    of 1-D signals would otherwise get noise correlated across its channels."""
    if len(event_shape) < 3:
        raise ValueError(
            f"{what}: needs events (C, H, W), a channel axis and then two spatial axes (axes "
            f"before them are independent), got event {tuple(event_shape)}. A batch "
            "(B, C, L) of 1-D signals is not read as H x W images: give it as (B, C, 1, L) "
            "for noise along L; single-channel images need their channel axis, (B, 1, H, W)"
        )


def check_rho(rho: Any, family: str) -> float:
    rho = from_numpy(rho)
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 <= rho < 1:
        raise ValueError(f"{family}: rho must be a correlation in [0, 1), got {rho!r}")
    return float(rho)


def resolve_axis(axis: int, event_shape: tuple[int, ...], family: str) -> int:
    """A non-negative event axis, or ValueError when the event has no such axis."""
    ndim = len(event_shape)
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{family}: frame axis {axis} does not exist for event shape "
            f"{tuple(event_shape)} ({ndim} dimensions; axes are counted without the batch)"
        )
    return axis % ndim


#: The largest variance (entry of S) a family may have: its noise, drawn in float32 up to
#: 5.8 standard deviations (``noisejump.rng``), then stays below 6e15, far inside float32's
#: range (3.4e38); larger parameters are refused at construction, not turned into inf.
MAX_VARIANCE = 1e30


def as_float64(
    values: Any, name: str, family: str, *, largest: float | None = None
) -> torch.Tensor:
    """A float64 CPU copy of a tensor parameter, refused when it holds NaN or infinity or,
    with ``largest``, an entry larger than that in magnitude (``MAX_VARIANCE`` for
    variances, its square root for factors)."""
    table = torch.as_tensor(values).detach().to(device="cpu", dtype=F64).clone()
    if not torch.isfinite(table).all():
        raise ValueError(f"{family}: {name} contains NaN or infinity")
    if largest is not None and table.numel() and table.abs().max() > largest:
        raise ValueError(
            f"{family}: {name} has an entry of magnitude {table.abs().max().item():.3g}, above "
            f"{largest:.3g}: noise of that scale overflows float32 (the bound keeps every "
            f"variance <= MAX_VARIANCE = {MAX_VARIANCE:g})"
        )
    return table
