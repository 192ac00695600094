"""What a process will do for a step t, and why: the closed form, or the chain.

``process.plan(t, shape)`` returns a ``Plan``; ``q_sample`` follows it. The paths,
cheapest first (DESIGN.md, section 1, the table of cases):

    closed      one structured draw: x_t = signal_t x0 + sigma_t L e (per-element steps:
                diagonal S, or the "shared" joint law)
    frames      per-frame steps with frame-correlated noise S = R (x) S_space, the chain
                law: one draw mixed across frames by G, G G^T = rho o R (F x F per sample)
    increments  per-element steps with correlated noise, the chain law: one structured draw
                per distinct step value of a sample, accumulated in sorted order (exact)
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
from .per_element import distinct_steps, frame_axis

if TYPE_CHECKING:
    from ..noise import NoiseFamily

PATHS = ("closed", "frames", "increments", "per-mode", "mixture", "dense", "chain")


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


def fixed_covariance_path(
    noise: NoiseFamily,
    t: Any,
    path: str,
    event_shape: tuple[int, ...],
    joint_law: str = "chain",
) -> str:
    """The path of ``ForwardProcess`` for validated steps ``t`` on events of
    ``event_shape`` (what ``q_sample`` follows, without building the ``Plan``): "chain"
    when forced; for per-element steps with correlated noise under the chain law,
    "frames" where the family splits across frames and t varies along them only, else
    "increments"; otherwise "closed"."""
    if path == "chain":
        return "chain"
    diagonal = noise.is_isotropic or noise.eigenbasis == "identity"
    if not is_per_element(t) or diagonal or joint_law == "shared":
        return "closed"
    return "frames" if frame_axis(noise, t, tuple(event_shape)) is not None else "increments"


def plan_fixed_covariance(
    noise: NoiseFamily,
    t: Any,
    shape: tuple[int, ...] | None,
    path: str,
    *,
    continuous: bool = False,
    joint_law: str = "chain",
) -> Plan:
    """The plan of ``ForwardProcess`` (scalar transitions, fixed S = L L^T) for validated
    steps ``t`` on a batch of ``shape`` (None: no cost estimate, and per-element steps are
    taken to have the full shape). A continuous-time schedule has no chain, so no chain
    cost and no forced chain."""
    if continuous and path == "chain":
        raise ValueError("path='chain' needs a discrete schedule; this one is continuous-time")
    event = tuple(shape[1:]) if shape is not None else _event_of(t)
    chosen = fixed_covariance_path(noise, t, path, event, joint_law)
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
    chain_law = (
        "with correlated S the chain law Cov(x_i, x_j) = sigma_i sigma_j rho(ti, tj) S_ij, "
        "rho = exp(-|lambda_ti - lambda_tj| / 2), is not a multiple of S"
    )
    if chosen == "frames":
        frames = event[frame_axis(noise, t, event)]  # type: ignore[index]
        one_draw = ops(1)
        return Plan(
            "frames",
            f"per-frame steps, frame-correlated noise {noise!r} (S = R (x) S_space)",
            f"{chain_law}; across frames it is (rho o R) (x) S_space: one draw, mixed "
            f"across the {frames} frames by G, G G^T = rho o R ({frames} x {frames} per "
            "sample, positive definite by the Schur product theorem)",
            f"{noise.cost} + O(F d), F = {frames} frames",
            1,
            None if one_draw is None else one_draw + frames * math.prod(event),
            chain_ops,
        )
    if chosen == "increments":
        draws = distinct_steps(t)[0].shape[1]
        return Plan(
            "increments",
            f"per-element steps, correlated noise {noise!r}",
            f"{chain_law}: exact with one structured draw per distinct step value of a "
            f"sample (at most {draws} here), accumulated in sorted order",
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
    if is_per_element(t) and (noise.is_isotropic or noise.eigenbasis == "identity"):
        reason += "; S is diagonal, so per-element steps are elementwise closed forms"
    elif is_per_element(t):
        reason += (
            "; per-element steps under the 'shared' joint law: one draw L e, each element "
            "scaled by its own sigma_t (not the chain's law)"
        )
    return Plan("closed", structure, reason, noise.cost, 1, ops(1), chain_ops)


def _event_of(t: Any) -> tuple[int, ...]:
    """The event of per-element steps taken at their own shape (no sample shape given)."""
    return tuple(t.shape[1:]) if isinstance(t, torch.Tensor) and t.dim() > 1 else ()


def is_per_element(t: Any) -> bool:
    """True for a step tensor with a non-trivial size beyond the batch dimension."""
    return isinstance(t, torch.Tensor) and t.dim() > 1 and any(n > 1 for n in t.shape[1:])


def last_step(t: Any) -> int:
    return int(t.max()) if isinstance(t, torch.Tensor) else int(t)
