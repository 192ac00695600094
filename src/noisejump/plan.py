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

from dataclasses import dataclass

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


def check_path(path: str, allowed=("auto", "chain")) -> str:
    if path not in allowed:
        raise ValueError(f"path must be one of {allowed}, got {path!r}")
    return path
