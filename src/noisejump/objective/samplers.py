"""Timestep samplers: ``get_sampler(name, **kwargs)``, and their draws mapped to a process.

A sampler draws in its own space (``sampler_base``), with keyed draws: draw b depends only
on (seed, keys[b]) and, for stratified draws, on b's position in the global batch.

    name           space   arguments                      law
    uniform        u       -                              U(0, 1)
    stratified     u       base="uniform"                 one stratum of base per draw
    logit_normal   u       logit_mean=0, logit_std=1      SD3's logit-normal
    mode           u       scale=1.29                     SD3's mode, s in [-1, 2/(pi-2)]
    cosmap         u       -                              SD3's cosmap
    beta           u       a, b                           Beta(a, b)
    log_normal     sigma   p_mean=-1.2, p_std=1.2         EDM's log-normal sigma
    table          u       probabilities, edges=None      piecewise constant (``tables``)
    importance     u       num_steps                      loss-aware, stateful (``tables``)
    mixture        either  components, weights=None       sum_i w_i p_i (``composites``)
    truncated      either  base, t_min, t_max             base on [t_min, t_max]

Every name also takes ``t_min`` and ``t_max``: the law truncated to [t_min, t_max] (a
``truncated`` sampler around it). Formulas and sources: ``densities``, ``tables``,
``composites``.

A process maps draws to its own time (``schedule.time_of(x, space)``, ``sample_time``):
u to a discrete step floor(u T) (int64) or to a continuous schedule's t = u (EDM refuses
u: its time is a noise level); sigma to the discrete step whose sigma_k is nearest in
log sigma, or to the continuous time with log-SNR -2 log sigma.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from .composites import Mixture, Stratified, Truncated
from .densities import Beta, CosMap, LogitNormal, LogNormal, Mode, Uniform
from .sampler_base import SPACES, TimestepSampler, keyed_uniform, keyed_uniforms
from .tables import IMPORTANCE_HISTORY, IMPORTANCE_UNIFORM, Importance, Table

__all__ = [
    "IMPORTANCE_HISTORY",
    "IMPORTANCE_UNIFORM",
    "SAMPLERS",
    "SPACES",
    "TimestepSampler",
    "get_sampler",
    "keyed_uniform",
    "keyed_uniforms",
    "sample_time",
]

_CLASSES: dict[str, type[TimestepSampler]] = {
    "uniform": Uniform,
    "stratified": Stratified,
    "logit_normal": LogitNormal,
    "mode": Mode,
    "cosmap": CosMap,
    "beta": Beta,
    "log_normal": LogNormal,
    "table": Table,
    "importance": Importance,
    "mixture": Mixture,
    "truncated": Truncated,
}
#: The names ``get_sampler`` accepts.
SAMPLERS = tuple(_CLASSES)


def get_sampler(name: str, **kwargs: Any) -> TimestepSampler:
    """The timestep sampler ``name`` (module docstring for the names and their arguments).

    ``t_min``/``t_max`` truncate any law to [t_min, t_max] (in its space). Samplers given
    as arguments (``base``, ``components``) may be names or sampler objects.

    Examples:
        ``get_sampler("logit_normal", logit_mean=0.0, logit_std=1.0)``;
        ``get_sampler("mode", scale=1.29)``; ``get_sampler("uniform", t_min=1e-5)``;
        ``get_sampler("mixture", components=["uniform", "cosmap"], weights=[0.2, 0.8])``;
        ``get_sampler("importance", num_steps=1000)``.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a sampler name (str), got {name!r}")
    if name not in _CLASSES:
        raise ValueError(f"unknown timestep sampler {name!r}; choose one of {SAMPLERS}")
    cls = _CLASSES[name]
    t_min, t_max = kwargs.pop("t_min", None), kwargs.pop("t_max", None)
    signature = inspect.signature(cls).parameters
    parameters = list(signature)
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        takes = ", ".join(parameters) if parameters else "no arguments"
        raise TypeError(
            f"sampler {name!r} takes {takes} (and t_min, t_max), not {', '.join(unknown)}"
        )
    if name == "truncated":
        kwargs.update(t_min=t_min, t_max=t_max)
        t_min = t_max = None
    if name in ("stratified", "truncated"):
        kwargs["base"] = _as_sampler(kwargs.get("base", "uniform"), "base")
    if name == "mixture" and "components" in kwargs:
        components = kwargs["components"]
        if isinstance(components, (list, tuple)):
            kwargs["components"] = [_as_sampler(c, "components") for c in components]
    missing = [p for p, spec in signature.items() if spec.default is spec.empty and p not in kwargs]
    if missing:
        raise TypeError(f"sampler {name!r} needs {', '.join(missing)}")
    sampler = cls(**kwargs)
    if t_min is None and t_max is None:
        return sampler
    low, high = sampler.support
    return Truncated(sampler, low if t_min is None else t_min, high if t_max is None else t_max)


def _as_sampler(value: Any, what: str) -> TimestepSampler:
    if isinstance(value, TimestepSampler):
        return value
    if isinstance(value, str):
        return get_sampler(value)
    raise TypeError(f"{what} must be sampler names or samplers, got {value!r}")


def sample_time(
    schedule: Any,
    sampler: TimestepSampler,
    n: int,
    *,
    seed: int | None = None,
    keys: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    positions: torch.Tensor | None = None,
    global_batch: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` training times of ``schedule`` (a schedule or a ``ForwardProcess``) drawn by
    ``sampler``: (t, weight).

    The draws, in float64, become the schedule's time by ``schedule.time_of(x,
    sampler.space)``: a discrete schedule gives int64 steps, a continuous one float times
    in ``dtype`` (float32 by default: the time the model sees is the time that noised).
    The arguments are ``TimestepSampler.sample``'s; ``weight`` is float32, 1 except for
    importance sampling. An importance sampler must have the discrete schedule's T steps.
    """
    schedule = getattr(schedule, "schedule", schedule)  # a ForwardProcess's schedule
    if not isinstance(sampler, TimestepSampler):
        raise TypeError(f"sampler must be a TimestepSampler (get_sampler), got {sampler!r}")
    steps = getattr(schedule, "num_steps", None)
    if isinstance(sampler, Importance) and steps is not None and sampler.num_steps != steps:
        raise ValueError(
            f"the importance sampler has {sampler.num_steps} steps but the schedule has {steps}"
        )
    x, weight = sampler.sample(
        n,
        seed=seed,
        keys=keys,
        generator=generator,
        positions=positions,
        global_batch=global_batch,
        device=device,
        dtype=torch.float64,
    )
    t = schedule.time_of(x, sampler.space)
    if not t.dtype.is_floating_point:
        return t, weight
    if dtype is None:
        dtype = torch.float32
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    return t.to(dtype), weight
