"""A general linear-Gaussian chain x_k = A_k x_(k-1) + B_k e_k with callables A_k, B_k.

No closed form is assumed (DESIGN.md, the last row of the table): the marginal exists,
q(x_t | x0) = N(M_t x0, C_t) with M_t = A_t M_(t-1), C_t = A_t C_(t-1) A_t^T + B_t B_t^T
(M_(-1) = I, C_(-1) = 0), but needs dense d x d matrices and an O(d^3) factorisation.
So: for d <= 1024 and a memory estimate under 1 GiB, M_t and the Cholesky factor of C_t
are precomputed for the requested t (then x_t = M_t x0 + chol(C_t) e, O(d^2) per
sample); otherwise the O(t) chain. The posterior is the Kalman form
K = C_(t-1) A_t^T C_t^-1, mean = M_(t-1) x0 + K (x_t - M_t x0), cov = C_(t-1) - K A_t C_(t-1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from .._numpy import from_numpy
from .plan import Plan
from .time_varying import F64, TimeVaryingProcess

MAX_DENSE_D = 1024
MAX_DENSE_BYTES = 2**30


class LinearGaussianChain(TimeVaryingProcess):
    """x_k = A(k, x_(k-1)) + B(k, e_k), k = 0..T-1, e_k ~ N(0, I) of the event's shape.

    Args:
        num_steps: T.
        A: callable (k, x) -> A_k x for a batch x of shape (N, *event), linear in x.
        B: callable (k, e) -> B_k e for white e of shape (N, *event), linear in e.
    """

    def __init__(self, num_steps: int, A: Any, B: Any, *, path: str = "auto") -> None:
        num_steps = from_numpy(num_steps)
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"linear chain: num_steps must be a positive int, got {num_steps!r}")
        if not callable(A) or not callable(B):
            raise TypeError("linear chain: A and B must be callables (k, x) -> tensor")
        self.num_steps, self.A, self.B, self.path = num_steps, A, B, path
        self._cache: dict = {}

    def __repr__(self) -> str:
        return f"LinearGaussianChain(num_steps={self.num_steps})"

    @staticmethod
    def memory_estimate(d: int) -> int:
        """Bytes the dense path holds: M_t, C_t, their update and the factor, float64."""
        return 5 * d * d * 8

    def _chain_step(self, x: torch.Tensor, k: int, white: torch.Tensor) -> torch.Tensor:
        return self.A(k, x) + self.B(k, white)

    def _rows(self, fn: Any, k: int, rows: torch.Tensor, event: tuple[int, ...]) -> torch.Tensor:
        """fn(k, .) applied to each row of ``rows`` (n, d): rows @ F^T."""
        return fn(k, rows.reshape(len(rows), *event)).reshape(len(rows), -1)

    def moments(self, event_shape: tuple[int, ...], t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(M_t, C_t), dense float64, by pushing basis vectors through A_k and B_k: new
        tensors (the cached ones that sampling reads stay untouched)."""
        mean_op, cov, _ = self._moments(tuple(event_shape), t)
        return mean_op.clone(), cov.clone()

    def _moments(
        self, event_shape: tuple[int, ...], t: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(M_t, C_t, chol-like factor of C_t), cached per (event, t)."""
        key = (tuple(event_shape), t)
        if key in self._cache:
            return self._cache[key]
        d = math.prod(event_shape)
        eye = torch.eye(d, dtype=F64)
        mean_op, cov = eye, torch.zeros(d, d, dtype=F64)
        for k in range(t + 1):
            a_t = self._rows(self.A, k, eye, event_shape).T  # A_k as a matrix
            b_t = self._rows(self.B, k, eye, event_shape).T
            mean_op = a_t @ mean_op
            cov = a_t @ cov @ a_t.T + b_t @ b_t.T
        cov = (cov + cov.T) / 2
        factor = _factor(cov)
        self._cache[key] = (mean_op, cov, factor)
        return mean_op, cov, factor

    def _dense_ok(self, event_shape: tuple[int, ...]) -> bool:
        d = math.prod(event_shape)
        return d <= MAX_DENSE_D and self.memory_estimate(d) < MAX_DENSE_BYTES

    def _closed_parts(
        self, x0: torch.Tensor, t: Any, draw: Callable[[int], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        event = tuple(x0.shape[1:])
        if isinstance(t, torch.Tensor) and t.dim() > 0:  # one step per sample: row by row
            white = draw(0)
            rows = [
                self._closed_parts(
                    x0[i : i + 1],
                    int(t[i]),
                    lambda j, i=i: white[i : i + 1],  # type: ignore[misc]  # (default i=i)
                )
                for i in range(len(x0))
            ]
            return torch.cat([m for m, _ in rows]), torch.cat([e for _, e in rows])
        mean_op, _, factor = self._moments(event, int(t))
        cd = x0.dtype if x0.dtype == F64 else torch.float32
        flat = x0.reshape(len(x0), -1).to(cd)
        white = draw(0).reshape(len(x0), -1).to(cd)
        mean = flat @ mean_op.to(x0.device, cd).T
        return mean.reshape(x0.shape), (white @ factor.to(x0.device, cd).T).reshape(x0.shape)

    def _plan(self, t: Any, shape: tuple[int, ...] | None) -> Plan:
        if shape is None:
            raise ValueError("linear chain: plan needs the batch shape (for d and memory)")
        d = math.prod(shape[1:])
        memory = self.memory_estimate(d)
        last = int(torch.as_tensor(t).max())
        if self._dense_ok(shape[1:]):
            return Plan(
                "dense",
                "general linear-Gaussian chain, dense M_t and chol(C_t) for the requested t",
                f"no shared structure is assumed; d = {d} <= {MAX_DENSE_D} and the estimate "
                f"{memory / 2**20:.3g} MiB < 1 GiB, so the dense precompute (O(t d^3) once) "
                "pays for itself",
                "O(d^2) per sample after the precompute",
                1,
                2.0 * d * d,
                None,
                memory,
            )
        return Plan(
            "chain",
            "general linear-Gaussian chain, run step by step",
            f"no closed form is assumed and the dense precompute is out of bounds (d = {d}, "
            f"limit {MAX_DENSE_D}; estimate {memory / 2**20:.3g} MiB, limit 1 GiB)",
            "O(t) steps of A_k and B_k",
            last + 1,
        )

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and dense covariance of q(x_(t-1) | x_t, x0) (Kalman form, module docstring)
        for one int step t; at t = 0: (x0, 0)."""
        self._check_posterior_inputs(x0, x_t)
        t = self._steps(t, None)
        if not isinstance(t, int):
            raise TypeError("linear chain q_posterior takes one int step t")
        event = tuple(x_t.shape[1:])
        d = math.prod(event)
        if t == 0:
            return x0.clone(), torch.zeros(d, d, dtype=F64)
        if not self._dense_ok(event):
            raise ValueError(f"linear chain q_posterior needs d <= {MAX_DENSE_D}, got d = {d}")
        m_prev, c_prev, _ = self._moments(event, t - 1)
        m_t, c_t, _ = self._moments(event, t)
        a_t = self._rows(self.A, t, torch.eye(d, dtype=F64), event).T
        gain = torch.linalg.solve(c_t, a_t @ c_prev).T  # C_(t-1) A^T C_t^-1
        flat0 = x0.reshape(len(x0), d).to(F64)
        residual = x_t.reshape(len(x_t), d).to(F64) - flat0 @ m_t.T
        mean = flat0 @ m_prev.T + residual @ gain.T
        return mean.reshape(x_t.shape).to(x_t.dtype), c_prev - gain @ a_t @ c_prev


def _factor(cov: torch.Tensor) -> torch.Tensor:
    """F with F F^T = C: the Cholesky factor, or, for a singular C_t (a B_k of low rank),
    V sqrt(max(Lambda, 1e-12 max Lambda)) from the eigendecomposition."""
    scale_tril, info = torch.linalg.cholesky_ex(cov)
    if int(info) == 0:
        return scale_tril
    values, vectors = torch.linalg.eigh(cov)
    values = values.clamp(min=1e-12 * float(values.max()))
    return vectors * values.sqrt()
