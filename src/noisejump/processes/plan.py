"""What a process will do for a step t, and why: the closed form, or the chain.

``process.plan(t, shape)`` returns a :class:`Plan`; ``q_sample`` follows it. The paths,
cheapest first (DESIGN.md, section 1, the table of cases):

    closed      one structured draw: x_t = signal_t x0 + sigma_t L e
    increments  per-element steps with correlated noise: one structured draw per distinct
                step value, accumulated in sorted order (exact)
    per-mode    a shared eigenbasis (DCT/FFT): x_t = U(m_t * U^T x0 + sqrt(c_t) * e)
    mixture     K fixed atoms: x_t = signal_t x0 + sum_k sqrt(c_k(t)) L_k e_k
    dense       dense M_t, C_t precomputed for the requested t (small d only)
    chain       x_k = A_k x_{k-1} + B_k e_k for k = 0..t (the O(t) reference)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ..checks import host_readable

if TYPE_CHECKING:
    from ..noise import NoiseFamily

PATHS = ("closed", "increments", "per-mode", "mixture", "dense", "chain")


@dataclass(frozen=True)
class Plan:
    """The path a process takes for one request.

    Attributes:
        path: one of ``PATHS``.
        structure: what makes the path exact (e.g. "fixed covariance S, L by FFT").
        reason: why this path and not a cheaper one.
        cost: big-O per sample, d = elements per sample.
        draws: structured noise draws per sample.
        ops_per_sample: rough multiply-adds per sample, when the shape is known.
        chain_ops_per_sample: the same estimate for the chain, for comparison.
        memory_bytes: memory the path precomputes (dense path), else 0.
    """

    path: str
    structure: str
    reason: str
    cost: str
    draws: int
    ops_per_sample: float | None = None
    chain_ops_per_sample: float | None = None
    memory_bytes: int = 0

    def __str__(self) -> str:
        lines = [
            f"path: {self.path}",
            f"  structure: {self.structure}",
            f"  why: {self.reason}",
            f"  cost per sample: {self.cost}, {self.draws} structured draw(s)",
        ]
        if self.ops_per_sample is not None:
            line = f"  estimate: {self.ops_per_sample:.3g} multiply-adds per sample"
            if self.chain_ops_per_sample is not None and self.path != "chain":
                ratio = self.chain_ops_per_sample / max(self.ops_per_sample, 1.0)
                line += f" (the chain: {self.chain_ops_per_sample:.3g}, {ratio:.3g}x more)"
            lines.append(line)
        if self.memory_bytes:
            lines.append(f"  precomputed memory: {self.memory_bytes / 2**20:.3g} MiB")
        return "\n".join(lines)


def check_path(path: str, allowed: tuple[str, ...] = ("auto", "chain")) -> str:
    if path not in allowed:
        raise ValueError(f"path must be one of {allowed}, got {path!r}")
    return path


def fixed_covariance_path(noise: NoiseFamily, t: Any, path: str) -> str:
    """The path of ``ForwardProcess`` for validated steps ``t`` (what ``q_sample`` follows,
    without building the :class:`Plan`): "chain" when forced, "increments" for per-element
    steps with correlated noise, else "closed"."""
    if path == "chain":
        return "chain"
    diagonal = noise.is_isotropic or noise.eigenbasis == "identity"
    return "increments" if is_per_element(t) and not diagonal else "closed"


def plan_fixed_covariance(
    noise: NoiseFamily,
    t: Any,
    shape: tuple[int, ...] | None,
    path: str,
    *,
    continuous: bool = False,
) -> Plan:
    """The plan of ``ForwardProcess`` (scalar transitions, fixed S = L L^T) for validated
    steps ``t`` on a batch of ``shape`` (None: no cost estimate). A continuous-time
    schedule has no chain, so no chain cost and no forced chain."""
    if continuous and path == "chain":
        raise ValueError("path='chain' needs a discrete schedule; this one is continuous-time")
    chosen = fixed_covariance_path(noise, t, path)
    # The last step, for the chain's cost: read only where that costs no device sync.
    readable = not isinstance(t, torch.Tensor) or host_readable(t)
    last = last_step(t) if (readable or chosen == "chain") and not continuous else None
    if shape is None:
        ops = lambda draws: None  # noqa: E731
    else:
        event = tuple(shape[1:])
        d, apply_ops = math.prod(event), noise.apply_ops(event)
        ops = lambda draws: draws * (apply_ops + 2 * d)  # noqa: E731
    chain_ops = None if last is None else ops(last + 1)
    if chosen == "chain":
        assert last is not None  # read for a forced chain (continuous refused above)
        return Plan(
            "chain",
            f"sequential chain x_k = sqrt(alpha_k) x_(k-1) + sqrt(beta_k) L e_k, {noise!r}",
            "forced by path='chain' (for comparison with the closed form)",
            f"O(t) x {noise.cost}",
            last + 1,
            chain_ops,
            chain_ops,
        )
    if chosen == "increments":
        draws = len(torch.unique(t))
        return Plan(
            "increments",
            f"per-element steps, correlated noise {noise!r}",
            "with correlated S, Cov(x_i, x_j) = sqrt(abar_ti abar_tj)(1/abar_min(ti,tj) - 1)"
            " S_ij is not a multiple of S: exact with one structured draw per distinct "
            f"step value ({draws} here), accumulated in sorted order",
            f"m x {noise.cost}, m = {draws} distinct steps",
            draws,
            ops(draws),
            chain_ops,
        )
    if noise.is_isotropic:
        structure = "isotropic noise, S = I"
        reason = "q(x_t | x0) = N(signal_t x0, sigma_t^2 I) (Ho et al. 2020, eq. 4)"
    else:
        structure = f"fixed covariance S ({noise!r}), L e in {noise.cost}"
        reason = (
            "the transitions sqrt(alpha_t) I commute with a fixed S: q(x_t | x0) = "
            "N(signal_t x0, sigma_t^2 S)"
        )
    if is_per_element(t):
        reason += "; S is diagonal, so per-element steps are elementwise closed forms"
    return Plan("closed", structure, reason, noise.cost, 1, ops(1), chain_ops)


def is_per_element(t: Any) -> bool:
    """True for a step tensor with a non-trivial size beyond the batch dimension."""
    return isinstance(t, torch.Tensor) and t.dim() > 1 and any(n > 1 for n in t.shape[1:])


def last_step(t: Any) -> int:
    return int(t.max()) if isinstance(t, torch.Tensor) else int(t)
