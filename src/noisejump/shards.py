"""Sharded keyed noise: which keyed counters a slice of every sample takes.

Context or sequence parallelism gives each rank elements [start, stop) of every sample
along one axis. Keyed noise (``noisejump.rng``) numbers a sample's elements in C order over
the *full* sample, so the rank must know where its slice lies in that order:

    shard = (axis, start, stop, size)   elements [start, stop) along event axis ``axis``
                                        (batch excluded) of a full length ``size``

With the sample's other axes split around it as (outer, axis, inner), the slice is
``outer`` runs of ``run = (stop - start) inner`` consecutive elements; run o begins at
element ``o stride + offset`` of the full sample, stride = size inner, offset = start inner.
A rank draws exactly those counters, so the ranks' outputs put together equal the
unsharded call bitwise (``docs/keyed-noise.md``, "Sharded noise").
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple

__all__ = ["Shard", "check_shard", "shard_runs", "full_event", "restrict"]


class Shard(NamedTuple):
    """Elements [start, stop) of every sample along event axis ``axis`` (counted without
    the batch, non-negative once checked), of a full length ``size``."""

    axis: int
    start: int
    stop: int
    size: int


def check_shard(shard: Any, event_shape: tuple[int, ...], name: str = "shard") -> Shard:
    """A valid ``Shard`` for a local sample of ``event_shape`` (the slice's event), or a
    ValueError/TypeError naming the argument, the value and what is allowed."""
    if isinstance(shard, Shard):
        values: tuple[Any, ...] = tuple(shard)
    elif isinstance(shard, (tuple, list)):
        values = tuple(shard)
    else:
        raise TypeError(
            f"{name} must be a tuple (axis, start, stop, size) of ints, got {type(shard).__name__}"
        )
    if len(values) != 4:
        raise ValueError(
            f"{name} must be (axis, start, stop, size): elements [start, stop) along event "
            f"axis `axis` of a full length `size` (which places the slice in the keyed "
            f"counters), got {shard!r}"
        )
    try:
        axis, start, stop, size = (_int(v) for v in values)
    except TypeError:
        raise TypeError(
            f"{name} must hold four ints (axis, start, stop, size), got {shard!r}"
        ) from None
    ndim = len(event_shape)
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"{name}: axis {axis} does not exist for samples of event shape "
            f"{tuple(event_shape)} ({ndim} axes, counted without the batch)"
        )
    axis %= ndim
    if not 0 <= start < stop <= size:
        raise ValueError(f"{name}: need 0 <= start < stop <= size, got {shard!r}")
    if stop - start != event_shape[axis]:
        raise ValueError(
            f"{name}: the slice [{start}, {stop}) holds {stop - start} elements along axis "
            f"{axis} but the local sample has {event_shape[axis]} there (event shape "
            f"{tuple(event_shape)})"
        )
    return Shard(axis, start, stop, size)


def full_event(shard: Shard, event_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The unsharded event: ``event_shape`` with the shard's axis at its full size."""
    dims = list(event_shape)
    dims[shard.axis] = shard.size
    return tuple(dims)


def shard_runs(shard: Shard | None, event_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(outer, run, stride, offset) of a local event (module docstring); the unsharded
    event is one run of all its elements: (1, d, d, 0)."""
    if shard is None:
        d = math.prod(event_shape)
        return 1, d, d, 0
    inner = math.prod(event_shape[shard.axis + 1 :])
    outer = math.prod(event_shape[: shard.axis])
    return outer, (shard.stop - shard.start) * inner, shard.size * inner, shard.start * inner


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError
    return operator.index(value)


def restrict(noise: Any, shard: Any, event_shape: tuple[int, ...]) -> tuple[Any, Shard]:
    """(the family of the slice, the shard of its white noise) for a noise family and a
    local sample of ``event_shape`` (``NoiseFamily.restricted``): a ValueError where the
    family correlates elements along the shard's axis, naming the axes it keeps
    independent, or where its white noise does not keep that axis."""
    checked = check_shard(shard, event_shape)
    full = full_event(checked, event_shape)
    noise.check_shape(full)
    axis, start, stop = checked.axis, checked.start, checked.stop
    family = noise.restricted(full, axis, start, stop)
    if family is None:
        independent = [a for a in range(len(full)) if noise.restricted(full, a, 0, 1)]
        raise ValueError(
            f"shard along event axis {axis}: {noise!r} correlates elements along that axis "
            f"(events {full}), so a slice's noise is no slice of independent draws; shard "
            f"along an axis it keeps independent: {independent or 'none'}"
        )
    local_white = tuple(family.white_shape((1, *event_shape)))
    full_white = tuple(noise.white_shape((1, *full)))
    expected = full_white[: axis + 1] + (stop - start,) + full_white[axis + 2 :]
    if local_white != expected:  # a family whose white noise moves the axis
        raise ValueError(
            f"shard along event axis {axis}: the white noise of {noise!r} does not keep "
            f"that axis (white shape {full_white[1:]} for events {full})"
        )
    return family, Shard(axis, start, stop, full_white[axis + 1])
