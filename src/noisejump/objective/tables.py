"""Piecewise-constant laws: a user's table, and the importance sampler that learns one.

A table puts probability p_k on the bin [e_k, e_{k+1}) of its space (equal bins of [0, 1]
by default), uniformly inside the bin:

    pdf(x) = p_k / (e_{k+1} - e_k),   cdf(x) = P_k + p_k (x - e_k) / (e_{k+1} - e_k)

with P_k = p_0 + ... + p_{k-1}; the inverse CDF picks the bin k with P_k <= q < P_{k+1}
(``searchsorted``) and the point inside it. With T equal bins on u, bin k is step k of a
T-step schedule (floor(u T) = k): a table is then any law on the steps. A drawn point
keeps a margin of 2^-30 of its bin's width from both edges, so float64 rounding never
moves it into a neighbour's step; that margin is 2^-29 of a bin's mass, no atom.

Importance sampling (Nichol & Dhariwal 2021, arXiv 2102.09672, section 3.3): over the T
steps, p_t proportional to sqrt(E[L_t^2]) over the last 10 losses at t, mixed with 1 %
uniform, and the loss weighted 1 / (T p_t) so that its expectation is the uniform one;
uniform until every step has 10 losses. Its state (the loss history) is updated with the
whole global batch, so it stays identical on every rank.
"""

from __future__ import annotations

from typing import Any

import torch

from .._numpy import from_numpy
from .sampler_base import SPACES, TimestepSampler, as_float64, as_probability

F64 = torch.float64
IMPORTANCE_HISTORY = 10
IMPORTANCE_UNIFORM = 0.01
#: A draw stays this fraction of its bin's width away from the bin's edges.
BIN_MARGIN = 2.0**-30


class Table(TimestepSampler):
    """Probability ``probabilities[k]`` on bin [edges[k], edges[k+1]), uniform inside.

    Args:
        probabilities: K non-negative finite numbers, not all 0 (a list or a tensor);
            normalised to sum 1.
        edges: K + 1 strictly increasing finite edges inside the space (default: K equal
            bins of [0, 1], i.e. step k of a K-step schedule for u).
        space: ``"u"`` (default) or ``"sigma"`` (then ``edges`` is required).
    """

    name = "table"

    def __init__(self, probabilities: Any, edges: Any = None, space: str = "u") -> None:
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        self.space = space
        p = _as_vector(probabilities, "probabilities")
        if bool((p < 0).any()) or not bool(p.sum() > 0):
            raise ValueError(
                "probabilities must be >= 0 and not all 0, got "
                f"min {p.min().item():g}, sum {p.sum().item():g}"
            )
        self._probabilities = p / p.sum()
        self._edges = self._check_edges(edges, len(p))

    def _check_edges(self, edges: Any, count: int) -> torch.Tensor:
        if edges is None:
            if self.space == "sigma":
                raise ValueError("a table on sigma needs its edges (K + 1 noise levels)")
            return torch.arange(count + 1, dtype=F64) / count
        e = _as_vector(edges, "edges")
        low, high = self.support
        if len(e) != count + 1:
            raise ValueError(f"edges must have {count + 1} values for {count} bins, got {len(e)}")
        if not bool((e[1:] > e[:-1]).all()) or e[0] < low or e[-1] > high:
            raise ValueError(
                f"edges must increase strictly inside [{low:g}, {high:g}], got {e.tolist()}"
            )
        return e

    @property
    def edges(self) -> torch.Tensor:
        """The K + 1 bin edges, float64."""
        return self._edges.clone()

    def probabilities(self) -> torch.Tensor:
        """p_k of each bin (float64, sums to 1)."""
        return self._probabilities.clone()

    def _bin(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(bin index clamped to [0, K - 1], whether x is inside [e_0, e_K])."""
        e = self._edges.to(x.device)
        k = (torch.searchsorted(e, x.contiguous(), right=True) - 1).clamp(0, len(e) - 2)
        return k, (x >= e[0]) & (x <= e[-1])

    def pdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        p, e = self.probabilities().to(x.device), self._edges.to(x.device)
        k, inside = self._bin(x)
        value = p[k] / (e[k + 1] - e[k])
        return torch.where(inside, value, torch.zeros_like(value))

    def cdf(self, x: Any) -> torch.Tensor:
        x = as_float64(x, "x")
        p, e = self.probabilities().to(x.device), self._edges.to(x.device)
        k, _ = self._bin(x)
        below = torch.cumsum(p, 0) - p
        fraction = ((x - e[k]) / (e[k + 1] - e[k])).clamp(0.0, 1.0)
        return (below[k] + p[k] * fraction).clamp(0.0, 1.0)

    def icdf(self, p: Any) -> torch.Tensor:
        k, fraction = self._locate(as_probability(p))
        return self._point(k, fraction.clamp(0.0, 1.0))

    def _locate(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The bin k with P_k <= q < P_{k+1} and the fraction of the way through it."""
        p = self.probabilities().to(q.device)
        cumulative = torch.cumsum(p, 0)
        last = int(torch.nonzero(p > 0).max())  # q = 1 (or rounding) lands on a bin with mass
        k = torch.searchsorted(cumulative, q.contiguous(), right=True).clamp(max=last)
        return k, (q - (cumulative[k] - p[k])) / p[k]

    def _point(self, k: torch.Tensor, fraction: torch.Tensor) -> torch.Tensor:
        e = self._edges.to(k.device)
        return e[k] + fraction * (e[k + 1] - e[k])

    def _from_uniforms(
        self, u: torch.Tensor, positions: torch.Tensor | None, global_batch: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        k, fraction = self._locate(u[:, 0])
        x = self._point(k, fraction.clamp(BIN_MARGIN, 1.0 - BIN_MARGIN))
        return x, self._weights(k)

    def _weights(self, k: torch.Tensor) -> torch.Tensor:
        return torch.ones(len(k), dtype=torch.float32, device=k.device)

    def __repr__(self) -> str:
        return f"Table({len(self._probabilities)} bins on {self.space})"


class Importance(Table):
    """Loss-aware importance sampling over the T steps (module docstring; Nichol &
    Dhariwal 2021, section 3.3): draws step t with probability p_t, weight 1 / (T p_t).

    Args:
        num_steps: T, the steps of the discrete schedule it samples.
    """

    name = "importance"
    stateful = True

    def __init__(self, num_steps: int) -> None:
        num_steps = from_numpy(num_steps)
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {num_steps!r}")
        self.space = "u"
        self.num_steps = num_steps
        self._edges = torch.arange(num_steps + 1, dtype=F64) / num_steps
        self.history = torch.zeros(num_steps, IMPORTANCE_HISTORY, dtype=F64)
        self.counts = torch.zeros(num_steps, dtype=torch.int64)

    def probabilities(self) -> torch.Tensor:
        """p_t (float64, (T,)): importance weights once warm, uniform before."""
        T = self.num_steps
        if (self.counts < IMPORTANCE_HISTORY).any():
            return torch.full((T,), 1.0 / T, dtype=F64)
        p = self.history.pow(2).mean(1).sqrt()
        p = p / p.sum()
        return (1 - IMPORTANCE_UNIFORM) * p + IMPORTANCE_UNIFORM / T

    def _weights(self, k: torch.Tensor) -> torch.Tensor:
        p = self.probabilities().to(k.device)
        return (1.0 / (self.num_steps * p[k])).to(torch.float32)

    def update(self, t: torch.Tensor, losses: torch.Tensor) -> None:
        """Record per-sample (unweighted) losses at steps ``t`` of the whole global batch."""
        for step, loss in zip(t.tolist(), losses.to(F64).tolist(), strict=True):
            self.history[step] = torch.roll(self.history[step], -1)
            self.history[step, -1] = loss
            self.counts[step] = min(int(self.counts[step]) + 1, IMPORTANCE_HISTORY)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"history": self.history.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        shapes = {"history": self.history.shape, "counts": self.counts.shape}
        got = {k: tuple(v.shape) for k, v in state.items()}
        if got != {k: tuple(v) for k, v in shapes.items()}:
            raise ValueError(
                f"the importance sampler of {self.num_steps} steps needs a state "
                f"{ {k: tuple(v) for k, v in shapes.items()} }, got {got}"
            )
        self.history = state["history"].to(F64).clone()
        self.counts = state["counts"].to(torch.int64).clone()

    def __repr__(self) -> str:
        return f"Importance(num_steps={self.num_steps})"


def _as_vector(values: Any, name: str) -> torch.Tensor:
    """A non-empty 1-D float64 tensor of finite values (a copy)."""
    values = from_numpy(values)
    if isinstance(values, torch.Tensor):
        vector = values.detach().to(device="cpu", dtype=F64).clone()
    else:
        try:
            vector = torch.as_tensor(values, dtype=F64).clone()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from None
    if vector.dim() != 1 or len(vector) == 0:
        shape = tuple(vector.shape)
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {shape}")
    if not bool(torch.isfinite(vector).all()):
        raise ValueError(f"{name} must be finite, got {vector.tolist()}")
    return vector
