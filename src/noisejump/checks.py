"""Checks on tensor values that never sync a device and never break a compiled graph.

Where a value check runs depends on where the values are:

    a CPU tensor, eagerly     read on the host: a ValueError that names the argument, what
                              is allowed and the values given
    a CUDA (or other device) tensor, or any tensor while torch.compile traces
                              ``torch._assert_async`` inside the graph: no host read, no graph
                              break; out-of-range values raise a RuntimeError naming the
                              argument when the kernel runs (skipped with ``validate=False``)
    a meta tensor             no values to check

``check_device`` keeps an argument on the sample's device or on the CPU (a CPU tensor of
steps or keys is moved to the sample's device; anything else is refused). ``check_real``
validates one real parameter (a shift, a sampler's mean) at construction.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import torch

from ._numpy import from_numpy

__all__ = [
    "as_device",
    "as_int64",
    "broadcasts_per_element",
    "check_count",
    "check_device",
    "check_order",
    "check_range",
    "check_real",
    "check_values",
    "host_extremes",
    "host_readable",
]

#: Above this many elements the host read takes torch.aminmax, below it a Python list.
_LIST_LIMIT = 256
_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)


def host_readable(t: torch.Tensor) -> bool:
    """True when reading ``t`` on the host costs no device sync and breaks no graph."""
    return t.device.type == "cpu" and not torch.compiler.is_compiling()


def host_extremes(t: torch.Tensor) -> tuple[Any, Any]:
    """(min, max) of a non-empty real tensor that is ``host_readable``, as Python numbers: a
    Python list for small ones (cheaper than two reductions and their reads),
    torch.aminmax beyond."""
    if t.numel() <= _LIST_LIMIT:
        values = t.reshape(-1).tolist()
        return min(values), max(values)
    extremes = torch.aminmax(t)
    return extremes.min.item(), extremes.max.item()


def check_range(
    t: torch.Tensor, low: int, high: int, *, name: str, allowed: str, validate: bool = True
) -> None:
    """Require integer values in [low, high] (module docstring for where the check runs)."""
    if host_readable(t):
        if t.numel() == 0:
            return
        smallest, largest = host_extremes(t)
        if smallest < low or largest > high:
            raise ValueError(f"{name} must be {allowed}, got values in [{smallest}, {largest}]")
    elif validate and t.device.type != "meta":
        torch._assert_async(((t >= low) & (t <= high)).all(), f"{name} out of range: {allowed}")


def check_values(
    t: torch.Tensor,
    ok: Callable[[torch.Tensor], torch.Tensor],
    *,
    name: str,
    allowed: str,
    validate: bool = True,
) -> None:
    """Require ``ok(t)`` (a boolean mask of t's shape) everywhere; the message quotes the
    first value that fails."""
    if host_readable(t):
        mask = ok(t)
        if t.numel() and not bool(mask.all()):
            bad = t[~mask].flatten()[0].item()
            raise ValueError(f"{name} must be {allowed}, got {bad!r}")
    elif validate and t.device.type != "meta":
        torch._assert_async(ok(t).all(), f"{name} out of range: {allowed}")


def check_device(t: torch.Tensor, device: torch.device, name: str, sample: str = "x0") -> None:
    """``t`` must live on ``device`` (the sample's) or on the CPU (it is then moved)."""
    if t.device == device or t.device.type == "cpu" and device.type != "meta":
        return
    raise ValueError(
        f"{name} is on {t.device} but {sample} is on {device}; put {name} on {device} "
        "(or on the CPU, from where it is moved)"
    )


def as_int64(t: torch.Tensor, name: str, allowed: str) -> torch.Tensor:
    """An integer tensor as int64. Unsigned values above 2^63 - 1 (uint64) have no int64
    value: refused on the host, as they are out of every range here."""
    if t.dtype == torch.int64:
        return t
    if t.dtype == torch.uint64 and host_readable(t) and t.numel():
        large = t.view(torch.int64) < 0  # the top bit set: >= 2^63
        if bool(large.any()):
            bad = t[large].flatten()[0].item()
            raise ValueError(f"{name} must be {allowed}, got {bad}")
    return t.to(torch.int64)


def check_order(
    s: Any, t: Any, device: torch.device, *, strict: bool, validate: bool = True
) -> None:
    """s < t (``strict``) or s <= t, for ints or tensors (elementwise), checked where the
    module docstring says: a ValueError on the host, else an asynchronous assert."""
    relation = "<" if strict else "<="
    if isinstance(s, int) and isinstance(t, int):
        if not (s < t if strict else s <= t):
            raise ValueError(f"need s {relation} t, got s={s}, t={t}")
        return
    s_, t_ = torch.as_tensor(s, device=device), torch.as_tensor(t, device=device)
    in_order = s_ < t_ if strict else s_ <= t_
    if host_readable(in_order):
        if not bool(in_order.all()):
            raise ValueError(f"need s {relation} t elementwise, got s={_show(s)}, t={_show(t)}")
    elif validate and in_order.device.type != "meta":
        torch._assert_async(in_order.all(), f"need s {relation} t")


def _show(v: object) -> object:
    return v.flatten().tolist() if isinstance(v, torch.Tensor) else v


def broadcasts_per_element(t_shape: tuple[int, ...], like_shape: tuple[int, ...]) -> bool:
    """True when steps of ``t_shape`` are one per element of a sample of ``like_shape``:
    as many dimensions, each of size 1 or the sample's."""
    return len(t_shape) == len(like_shape) and all(
        a in (1, b) for a, b in zip(t_shape, like_shape, strict=True)
    )


def check_count(value: Any, name: str, low: int = 0) -> int:
    """An int >= ``low`` (NumPy integers too): TypeError for anything else, ValueError below
    ``low``, both naming the argument and the value."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= {low}, got {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int >= {low}, got {value!r}") from None
    if number < low:
        raise ValueError(f"{name} must be an int >= {low}, got {number}")
    return number


def as_device(device: torch.device | str, name: str = "device") -> torch.device:
    """``torch.device(device)``, or a ValueError that names the argument."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"{name} must be a torch device such as 'cpu' or 'cuda:0', got {device!r}"
        ) from error


def check_real(
    value: Any,
    name: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
) -> float:
    """A finite real number in the interval [low, high] (open at an end where asked), as a
    float: TypeError for a non-number (booleans included), ValueError naming the argument,
    the value and the interval otherwise. NumPy scalars are accepted."""
    value = from_numpy(value)
    if low == 0 and open_low and high == math.inf:
        kind, where = "a positive", ""
    elif low == -math.inf and high == math.inf:
        kind, where = "a", ""
    else:
        kind = "a"
        where = f" in {'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be {kind} float{where}, got {type(value).__name__}")
    inside = (value > low if open_low else value >= low) and (
        value < high if open_high else value <= high
    )
    if not (math.isfinite(value) and inside):
        raise ValueError(f"{name} must be {kind} finite float{where}, got {value!r}")
    return float(value)
