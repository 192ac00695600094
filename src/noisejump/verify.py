"""``verify``: a process's closed form against its own chain, exactly and statistically.

Exact (float64, small shape): both paths are linear in x0 and in their white draws, so
pushing basis vectors gives their mean operators M and covariances C = sum_j J_j J_j^T
(J_j: the output when draw j is a basis vector); both are compared with the analytic
(M_t, C_t) of ``process.moments`` (built from the families' analytic covariances, not
from their samplers). Statistical (realistic shape, seeded): n samples of each path from
one x0, whitened with the analytic law, z = L^-1 (x - M x0): KS of z against N(0, 1),
chi-square of |z|^2 per sample, mean and variance of z, and two-sample KS of closed form
against chain on random projections. All p-values share the false-alarm rate ``alpha``
by Bonferroni: each of the k entries is compared with alpha / k, and the smallest of the
m projections' p-values with alpha / (k m).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from . import stats
from ._numpy import from_numpy
from .processes import ForwardProcess

if TYPE_CHECKING:
    from .processes import TimeVaryingProcess

F64 = torch.float64
EXACT_TOLERANCE = 1e-10


@dataclass
class VerifyReport:
    """The numbers behind a verdict; ``str(report)`` prints them.

    ``pvalues`` are raw p-values. An entry that is the smallest of m tests (the two-sample
    KS over m random projections) records m in ``counts``; its threshold is alpha / (k m),
    k = len(pvalues), and every other entry's is alpha / k (Bonferroni).
    """

    process: str
    t: int | str
    exact_shape: tuple[int, ...]
    stat_shape: tuple[int, ...]
    n: int
    alpha: float
    exact_errors: dict[str, float] = field(default_factory=dict)
    pvalues: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def exact_ok(self) -> bool:
        return all(e <= EXACT_TOLERANCE for e in self.exact_errors.values())

    @property
    def threshold(self) -> float:
        """alpha / k: the threshold of an entry that is one test."""
        return self.alpha / max(1, len(self.pvalues))

    @property
    def thresholds(self) -> dict[str, float]:
        """Each entry's threshold: it rejects when its p-value is at or below it."""
        return {name: self.threshold / self.counts.get(name, 1) for name in self.pvalues}

    @property
    def statistical_ok(self) -> bool:
        thresholds = self.thresholds
        return all(p > thresholds[name] for name, p in self.pvalues.items())

    @property
    def passed(self) -> bool:
        return self.exact_ok and self.statistical_ok

    def smallest(self, relative: bool = False) -> tuple[str, float, float]:
        """(name, p-value, threshold) of the entry with the smallest p-value, or with the
        smallest p / threshold (the closest to rejection) when ``relative``."""
        thresholds = self.thresholds
        scale = thresholds if relative else dict.fromkeys(thresholds, 1.0)
        name = min(self.pvalues, key=lambda k: self.pvalues[k] / scale[k])
        return name, self.pvalues[name], thresholds[name]

    def __str__(self) -> str:
        lines = [
            f"verify {self.process} at t = {self.t}",
            f"  exact, float64, event {self.exact_shape} "
            f"(relative max error, tolerance {EXACT_TOLERANCE:g}):",
        ]
        lines += [f"    {k:<28} {v:.3g}" for k, v in self.exact_errors.items()]
        lines.append(
            f"  statistical, event {self.stat_shape}, n = {self.n} per path; {len(self.pvalues)} "
            f"checks share the false-alarm rate alpha = {self.alpha:g} (Bonferroni):"
        )
        thresholds = self.thresholds
        for name, p in self.pvalues.items():
            label = name
            if self.counts.get(name, 1) > 1:
                label = f"{name} (smallest of {self.counts[name]})"
            rejected = "  REJECTED" if p <= thresholds[name] else ""
            lines.append(f"    {label:<40} p = {p:<9.3g} threshold {thresholds[name]:.3g}"
                         f"{rejected}")  # fmt: skip
        if self.pvalues:
            smallest, closest = self.smallest(), self.smallest(relative=True)
            lines.append(
                f"  smallest p-value {smallest[1]:.3g} ({smallest[0]}), threshold {smallest[2]:.3g}"
            )
            if closest[0] != smallest[0]:
                lines.append(
                    f"  closest to its threshold: p-value {closest[1]:.3g} ({closest[0]}), "
                    f"threshold {closest[2]:.3g}"
                )
        verdict = "PASS" if self.passed else "FAIL"
        lines.append(
            f"  verdict: {verdict} (exact {'ok' if self.exact_ok else 'FAILED'}, "
            f"statistical {'ok' if self.statistical_ok else 'FAILED'})"
        )
        return "\n".join(lines)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-300))


def _linear_moments(
    run: Callable[[torch.Tensor, Callable[[int], torch.Tensor]], torch.Tensor],
    event_shape: tuple[int, ...],
    white_shape: tuple[int, ...],
    draws: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(M, C) of x = run(x0, draw) by pushing basis vectors of x0 and of each white draw."""
    d, m = math.prod(event_shape), math.prod(white_shape)
    basis = torch.eye(d, dtype=F64).reshape(d, *event_shape)
    zeros = torch.zeros(d, *white_shape, dtype=F64)
    mean_op = run(basis, lambda j: zeros).reshape(d, d).T
    # one batch holds every (draw j, white basis vector) pair: rows j*m .. (j+1)*m - 1
    n = draws * m
    x0 = torch.zeros(n, *event_shape, dtype=F64)

    def draw(j: int) -> torch.Tensor:
        white = torch.zeros(n, m, dtype=F64)
        white[j * m : (j + 1) * m] = torch.eye(m, dtype=F64)
        return white.reshape(n, *white_shape)

    jacobian = run(x0, draw).reshape(n, d)
    return mean_op, jacobian.T @ jacobian


def verify(
    process: ForwardProcess | TimeVaryingProcess,
    t: int = 20,
    *,
    exact_shape: tuple[int, ...] = (2, 4, 4),
    stat_shape: tuple[int, ...] = (3, 16, 16),
    n: int = 200,
    per_element: bool = False,
    per_frame: bool = False,
    alpha: float = 1e-3,
    seed: int = 0,
    n_projections: int = 8,
) -> VerifyReport:
    """Check ``process`` (a ForwardProcess or a time-varying process) at step ``t``.

    Args:
        t: the step (an int); with ``per_element`` each element gets a seeded step in
            [0, t] (ForwardProcess only); with ``per_frame`` each frame of a frame family's
            frame axis does (diffusion forcing's steps: the "frames" path).
        exact_shape, stat_shape: event shapes (batch excluded) of the exact and the
            statistical check; the exact one must stay small (d^2 memory).
        n: samples per path in the statistical check.
        alpha: the false-alarm rate of the whole statistical check.
    Returns a `VerifyReport`; ``report.passed`` is the verdict.
    """
    t, n, seed = from_numpy(t), from_numpy(n), from_numpy(seed)
    if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < process.num_steps:
        raise ValueError(f"verify: t must be an int in [0, {process.num_steps - 1}], got {t!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"verify: alpha must be in (0, 1), got {alpha!r}")
    if n < 20:
        raise ValueError(f"verify: n must be >= 20 samples per path (KS needs them), got {n}")
    generator = torch.Generator().manual_seed(seed)
    report = VerifyReport(repr(process), t, tuple(exact_shape), tuple(stat_shape), n, alpha)

    if per_element and per_frame:
        raise ValueError("verify: give per_element or per_frame, not both")

    def steps_for(event: tuple[int, ...]) -> Any:  # an int, or per-element steps
        if not (per_element or per_frame):
            return t
        if not isinstance(process, ForwardProcess):
            raise ValueError("verify: per_element and per_frame need a ForwardProcess")
        if per_element:
            return torch.randint(0, t + 1, (1, *event), generator=generator)
        split = process.noise.frame_split(event)
        if split is None:
            raise ValueError(f"verify: per_frame needs a frame family, got {process.noise!r}")
        shape = [1] * (len(event) + 1)
        shape[split[0] + 1] = event[split[0]]
        return torch.randint(0, t + 1, shape, generator=generator)

    process.check_event(tuple(exact_shape))
    process.check_event(tuple(stat_shape))

    # ---- exact ----------------------------------------------------------------------------
    event = tuple(exact_shape)
    t_exact = steps_for(event)
    white = process.white_shape((1, *event))[1:]
    closed_draws = process._plan(t_exact, (1, *event)).draws
    last = int(torch.as_tensor(t_exact).max())
    m_closed, c_closed = _linear_moments(
        lambda x0, draw: process._closed(x0, t_exact, draw), event, white, closed_draws
    )
    m_chain, c_chain = _linear_moments(
        lambda x0, draw: process._chain(x0, t_exact, draw), event, white, last + 1
    )
    m_law, c_law = process.moments(event, t_exact)
    report.exact_errors = {
        "mean operator: closed/law": _relative(m_closed, m_law),
        "mean operator: chain/law": _relative(m_chain, m_law),
        "covariance: closed/law": _relative(c_closed, c_law),
        "covariance: chain/law": _relative(c_chain, c_law),
    }

    # ---- statistical ----------------------------------------------------------------------
    event = tuple(stat_shape)
    t_stat = steps_for(event)
    x0 = torch.randn(1, *event, generator=generator, dtype=F64).expand(n, *event).contiguous()
    closed, _ = process.q_sample(x0, t_stat, generator=generator)
    chain = process.q_sample_loop(x0, t_stat, generator=generator)
    m_law, c_law = process.moments(event, t_stat)
    mean = (m_law @ x0[0].flatten()).expand(n, -1)
    for name, samples in (("closed", closed), ("chain", chain)):
        for test, p in stats.gaussian_pvalues(samples.reshape(n, -1), mean, c_law).items():
            report.pvalues[f"{name}: {test}"] = p
    projections = stats.projection_pvalues(
        closed.reshape(n, -1), chain.reshape(n, -1), n_projections, seed
    )
    # the smallest of the projections' p-values; its threshold is divided by their number
    report.pvalues["closed vs chain: KS"] = min(projections)
    report.counts["closed vs chain: KS"] = len(projections)
    return report
