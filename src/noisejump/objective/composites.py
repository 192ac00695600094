"""Samplers built from others: stratified draws, truncations and mixtures.

stratified   x = icdf((j + q) / B) for the draw at position j of the global batch of B:
             one stratum of the base law per draw, across the batch and across ranks
             (the base law is unchanged: j is uniform over the batch)
truncated    the base law conditioned on [t_min, t_max]: p(x) / Z there, 0 outside,
             Z = F(t_max) - F(t_min); x = icdf(F(t_min) + q Z): the shape is kept,
             renormalised, with no atoms at the ends. Z < 1e-9 is refused: there the
             law has no mass to speak of (and F(t_min) + q Z would keep few digits)
mixture      sum_i w_i p_i(x): the component is chosen by the draw's own keyed
             uniform (the last one), the component draws from the ones before it;
             the inverse CDF is numerical (bisection between the components'
             inverse CDFs, which bracket it)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from .._numpy import from_numpy
from ..checks import check_real
from .sampler_base import TimestepSampler, as_float64, as_probability
from .special import invert_increasing

F64 = torch.float64
#: The least mass a truncation keeps.
MIN_TRUNCATED_MASS = 1e-9


class Stratified(TimestepSampler):
    """One stratum of ``base`` per draw of the global batch: x = icdf((j + q) / B).

    Args:
        base: the law to stratify (a stateless sampler; uniform by default).
    Draws take ``positions`` (j, integers in [0, B)) and ``global_batch`` (B); without
    them a call of n draws is a whole batch, j = 0..n-1.
    """

    name = "stratified"

    def __init__(self, base: TimestepSampler) -> None:
        self.base = _stateless(base, "stratified")
        self.space = base.space

    def pdf(self, x: Any) -> torch.Tensor:
        return self.base.pdf(x)

    def cdf(self, x: Any) -> torch.Tensor:
        return self.base.cdf(x)

    def icdf(self, p: Any) -> torch.Tensor:
        return self.base.icdf(p)

    def _from_uniforms(
        self, u: torch.Tensor, positions: torch.Tensor | None, global_batch: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        j, batch = _positions(positions, global_batch, len(u), u.device)
        x = self.base.icdf((j.to(F64) + u[:, 0]) / batch)
        return x, torch.ones(len(u), dtype=torch.float32, device=u.device)

    def __repr__(self) -> str:
        return f"Stratified({self.base!r})"


class Truncated(TimestepSampler):
    """``base`` conditioned on [t_min, t_max] (module docstring).

    Args:
        base: a stateless sampler.
        t_min, t_max: the interval, t_min < t_max, inside the base's support (for a sigma
            sampler, noise levels, t_max = inf allowed); it must hold a mass of at least
            1e-9.
    """

    name = "truncated"

    def __init__(self, base: TimestepSampler, t_min: float, t_max: float) -> None:
        self.base = _stateless(base, "truncated")
        self.space = base.space
        low, high = base.support
        self.t_min = check_real(t_min, "t_min", low=low, high=high)
        # a law on sigma may stay unbounded above: t_max = inf
        unbounded = high == math.inf and from_numpy(t_max) == math.inf
        self.t_max = math.inf if unbounded else check_real(t_max, "t_max", low=low, high=high)
        if not self.t_min < self.t_max:
            raise ValueError(f"need t_min < t_max, got t_min={t_min!r}, t_max={t_max!r}")
        ends = base.cdf(torch.tensor([self.t_min, self.t_max], dtype=F64))
        self._below, self._mass = float(ends[0]), float(ends[1] - ends[0])
        if not self._mass >= MIN_TRUNCATED_MASS:
            raise ValueError(
                f"{base!r} has mass {self._mass:.3g} in [t_min, t_max] = [{self.t_min:g}, "
                f"{self.t_max:g}]; a truncation needs at least {MIN_TRUNCATED_MASS:g}"
            )

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        value = self.base.pdf(x) / self._mass
        inside = (x >= self.t_min) & (x <= self.t_max)
        return torch.where(inside, value, torch.zeros_like(value))

    def cdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x").clamp(self.t_min, self.t_max)
        return ((self.base.cdf(x) - self._below) / self._mass).clamp(0.0, 1.0)

    def icdf(self, p: Any) -> torch.Tensor:
        q = self._below + as_probability(p) * self._mass
        return self.base.icdf(q.clamp(0.0, 1.0)).clamp(self.t_min, self.t_max)

    def __repr__(self) -> str:
        return f"Truncated({self.base!r}, t_min={self.t_min:g}, t_max={self.t_max:g})"


class Mixture(TimestepSampler):
    """sum_i w_i p_i: component i with probability w_i (module docstring).

    Args:
        components: stateless samplers of one space (names or sampler objects).
        weights: one positive finite weight per component (normalised; equal by default).
    """

    name = "mixture"

    def __init__(
        self, components: Sequence[TimestepSampler], weights: Sequence[float] | None = None
    ) -> None:
        if isinstance(components, (str, TimestepSampler)) or not len(components):
            raise ValueError("components must be a non-empty sequence of samplers")
        self.components = [_stateless(c, "mixture") for c in components]
        spaces = {c.space for c in self.components}
        if len(spaces) > 1:
            raise ValueError(f"the components of a mixture must share one space, got {spaces}")
        self.space = spaces.pop()
        if weights is None:
            weights = [1.0] * len(self.components)
        weights = list(from_numpy(weights))
        if len(weights) != len(self.components):
            raise ValueError(
                f"weights has {len(weights)} values for {len(self.components)} components"
            )
        values = [
            check_real(w, f"weights[{i}]", low=0.0, open_low=True) for i, w in enumerate(weights)
        ]
        self.weights = torch.tensor(values, dtype=F64) / sum(values)
        self.uniforms = 1 + max(c.uniforms for c in self.components)

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        return torch.stack([c.pdf(x) for c in self.components], -1) @ self.weights.to(x.device)

    def cdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        return torch.stack([c.cdf(x) for c in self.components], -1) @ self.weights.to(x.device)

    def icdf(self, p: Any) -> torch.Tensor:
        p = as_probability(p)
        # F_i(x_min) <= p for every i at x_min = min_i F_i^{-1}(p): so F(x_min) <= p, and
        # F(x_max) >= p at the largest; the root lies between.
        candidates = torch.stack([c.icdf(p) for c in self.components])
        lo, hi = candidates.min(0).values, candidates.max(0).values
        if self.space == "sigma":  # bisect in log sigma: relative precision at every scale
            log_x = invert_increasing(
                lambda y: self.cdf(torch.exp(y)), p, torch.log(lo), torch.log(hi)
            )
            return torch.exp(log_x)
        return invert_increasing(self.cdf, p, lo, hi)

    def _from_uniforms(
        self, u: torch.Tensor, positions: torch.Tensor | None, global_batch: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cumulative = torch.cumsum(self.weights, 0).to(u.device)
        choice = torch.searchsorted(cumulative, u[:, -1].contiguous(), right=True)
        choice = choice.clamp(max=len(self.components) - 1)
        draws = torch.stack(
            [
                c._from_uniforms(u[:, : c.uniforms], positions, global_batch)[0]
                for c in self.components
            ]
        )
        x = draws.gather(0, choice.unsqueeze(0))[0]
        return x, torch.ones(len(u), dtype=torch.float32, device=u.device)

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{w:.3g} {c!r}" for w, c in zip(self.weights.tolist(), self.components, strict=True)
        )
        return f"Mixture({parts})"


def _stateless(sampler: Any, what: str) -> TimestepSampler:
    if not isinstance(sampler, TimestepSampler):
        raise TypeError(
            f"a {what} sampler is built from samplers (get_sampler(...)), got {sampler!r}"
        )
    if sampler.stateful:
        raise ValueError(f"a {what} sampler cannot be built on the stateful {sampler!r}")
    return sampler


def _positions(
    positions: Any, global_batch: Any, n: int, device: torch.device
) -> tuple[torch.Tensor, int]:
    """The draws' positions j (int64 (n,), in [0, B)) and B, checked."""
    if positions is None and global_batch is None:
        return torch.arange(n, device=device), max(n, 1)
    if positions is None or global_batch is None:
        raise ValueError("stratified draws need both positions and global_batch, or neither")
    batch = from_numpy(global_batch)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"global_batch must be a positive int, got {global_batch!r}")
    j = from_numpy(positions)
    if not isinstance(j, torch.Tensor) or j.dtype.is_floating_point or j.dtype == torch.bool:
        raise TypeError(f"positions must be an integer tensor (n,), got {positions!r}")
    if j.shape != (n,):
        raise ValueError(f"positions must have shape ({n},), got {tuple(j.shape)}")
    if j.device.type == "cpu" and n and not bool(((j >= 0) & (j < batch)).all()):
        raise ValueError(
            f"positions must lie in [0, {batch}) (the global batch), got values in "
            f"[{int(j.min())}, {int(j.max())}]"
        )
    return j.to(device=device, dtype=torch.int64), batch
