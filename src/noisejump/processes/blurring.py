"""Blurring / heat-dissipation diffusion: per-frequency decay in the DCT basis.

Hoogeboom & Salimans 2022, Blurring Diffusion Models (arXiv 2209.05557, eq. 9-10, 17);
Rissanen et al. 2022, inverse heat dissipation (arXiv 2206.13397). With U the orthonormal
2-D DCT-II over the last two event axes (Neumann boundaries) and u = U^T x:

    u_t = a_t * u_0 + sigma_t e,   a_t(lambda) = signal_t d_t(lambda),
    d_t(lambda) = (1 - d_min) exp(-lambda tau_t) + d_min,   tau_t = sigma_B(t)^2 / 2,
    lambda = pi^2 (k_y^2 / H^2 + k_x^2 / W^2),   sigma_B(t) = sigma_B,max sin^2(pi/2 (t+1)/T)

The chain per mode: m_t = r_t m_(t-1), c_t = r_t^2 c_(t-1) + q_t with r_t = a_t / a_(t-1)
and q_t = sigma_t^2 - r_t^2 sigma_(t-1)^2, which is >= 0 exactly when each mode's SNR
a_t^2 / sigma_t^2 does not increase: a schedule that breaks this has no chain and is
refused. Closed form: x_t = U(a_t * U^T x0 + sigma_t e), O(d (H + W)) with matrix DCTs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..noise.base import check_image_event
from ..schedules import Schedule
from ..schedules.discrete import gather
from .plan import Plan
from .time_varying import F64, TimeVaryingProcess


def dct_matrix(n: int) -> torch.Tensor:
    """Orthonormal DCT-II: U[k, j] = sqrt(2/n) cos(pi (2j + 1) k / (2n)), row 0 / sqrt(2)."""
    k = torch.arange(n, dtype=F64)[:, None]
    j = torch.arange(n, dtype=F64)[None, :]
    matrix = math.sqrt(2 / n) * torch.cos(math.pi * (2 * j + 1) * k / (2 * n))
    matrix[0] /= math.sqrt(2)
    return matrix


class BlurringProcess(TimeVaryingProcess):
    """Blurring diffusion on (..., H, W) samples.

    Args:
        schedule: the discrete noise schedule (signal_t, sigma_t).
        blur_sigma_max: sigma_B,max in pixels (20 in the paper for 64 x 64).
        min_scale: d_min in (0, 1), the smallest frequency scaling (0.001 in the paper).
        blur_sigmas: optional (T,) sigma_B(t) per step instead of the sin^2 schedule.
    """

    def __init__(
        self,
        schedule: Schedule,
        blur_sigma_max: float = 20.0,
        min_scale: float = 0.001,
        blur_sigmas: Any = None,
        *,
        path: str = "auto",
    ) -> None:
        if not 0 < min_scale < 1:
            raise ValueError(f"blurring: min_scale must be in (0, 1), got {min_scale!r}")
        if blur_sigmas is None:
            if not blur_sigma_max >= 0:
                raise ValueError(f"blurring: blur_sigma_max must be >= 0, got {blur_sigma_max}")
            u = torch.arange(1, schedule.num_steps + 1, dtype=F64) / schedule.num_steps
            blur_sigmas = blur_sigma_max * torch.sin(math.pi / 2 * u) ** 2
        blur_sigmas = torch.as_tensor(blur_sigmas, dtype=F64).clone()
        if (
            blur_sigmas.shape != (schedule.num_steps,)
            or not (torch.isfinite(blur_sigmas) & (blur_sigmas >= 0)).all()
        ):
            raise ValueError(
                f"blurring: blur_sigmas must be ({schedule.num_steps},) finite values >= 0, got "
                f"shape {tuple(blur_sigmas.shape)}"
            )
        self.schedule, self.min_scale, self._blur_sigmas = schedule, float(min_scale), blur_sigmas
        self.num_steps = schedule.num_steps
        self.path = path
        self._cache: dict = {}

    @property
    def blur_sigmas(self) -> torch.Tensor:
        """sigma_B(t) per step, float64 (T,) (a copy: changing it changes nothing here)."""
        return self._blur_sigmas.clone()

    def __repr__(self) -> str:
        blur = float(self._blur_sigmas.max())
        return f"BlurringProcess({self.schedule!r}, blur_sigma_max={blur:.3g})"

    def check_event(self, event_shape: tuple[int, ...]) -> None:
        check_image_event(tuple(event_shape), "blurring")
        self._tables(*event_shape[-2:])  # validates the schedule for this size

    def _tables(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Float64 (T, H, W) tables a_t, r_t, sqrt(q_t), validated; cached per size."""
        key = (height, width)
        if key in self._cache:
            return self._cache[key]
        k_y = torch.arange(height, dtype=F64)[:, None] / height
        k_x = torch.arange(width, dtype=F64)[None, :] / width
        lam = math.pi**2 * (k_y**2 + k_x**2)
        tau = (self._blur_sigmas**2 / 2)[:, None, None]
        d = (1 - self.min_scale) * torch.exp(-lam * tau) + self.min_scale
        signal = self.schedule._table("signal", "cpu")[:, None, None]
        sigma2 = (self.schedule._table("sigma", "cpu") ** 2)[:, None, None]
        a = signal * d
        a_prev = torch.cat([torch.ones_like(a[:1]), a[:-1]])
        sigma2_prev = torch.cat([torch.zeros_like(sigma2[:1]), sigma2[:-1]])
        r = a / a_prev
        q = sigma2 - r**2 * sigma2_prev
        tolerance = 1e-12 * sigma2
        bad = q < -tolerance
        if bad.any():
            step, ky, kx = (int(i) for i in bad.nonzero()[0])
            snr_before = float(a_prev[step, ky, kx] ** 2 / sigma2_prev[step, 0, 0])
            snr_after = float(a[step, ky, kx] ** 2 / sigma2[step, 0, 0])
            raise ValueError(
                f"blurring: invalid blur schedule: the SNR of DCT mode ({ky}, {kx}) rises "
                f"from {snr_before:.12g} at step {step - 1} to {snr_after:.12g} at step {step} "
                f"(blur_sigmas[{step}] = {float(self._blur_sigmas[step]):.6g}); each mode's "
                "SNR a_t^2 / sigma_t^2 must not increase, or no forward chain exists"
            )
        tables = a, r, q.clamp(min=0).sqrt()
        self._cache[key] = tables
        return tables

    def _on(
        self, name: str | tuple[str, int], table: torch.Tensor, like: torch.Tensor
    ) -> torch.Tensor:
        """A cached copy of a float64 table on like's device and dtype."""
        key = (name, like.device, like.dtype)
        if key not in self._cache:
            self._cache[key] = table.to(device=like.device, dtype=like.dtype)
        return self._cache[key]

    def _dct(self, x: torch.Tensor, inverse: bool = False) -> torch.Tensor:
        height, width = x.shape[-2:]
        u_h = self._on(("dct", height), dct_matrix(height), x)
        u_w = self._on(("dct", width), dct_matrix(width), x)
        if inverse:
            return u_h.T @ x @ u_w
        return u_h @ x @ u_w.T

    def _closed_parts(
        self, x0: torch.Tensor, t: Any, draw: Callable[[int], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cd = x0.dtype if x0.dtype == F64 else torch.float32
        height, width = x0.shape[-2:]
        a, _, _ = self._tables(height, width)
        if isinstance(t, torch.Tensor) and t.dim() > 0:  # (B, 1, .., 1): one step per sample
            a_t = a[t.flatten().cpu()].reshape(len(t), *[1] * (x0.dim() - 3), height, width)
        else:
            a_t = a[int(t)]
        a_t = a_t.to(device=x0.device, dtype=cd)
        sigma = gather(self.schedule._table("sigma", x0.device, cd), t)
        # U(sigma_t e) has the law of sigma_t e (U orthonormal): no transform for the noise
        return self._dct(a_t * self._dct(x0.to(cd)), inverse=True), sigma * draw(0)

    def _chain_step(self, x: torch.Tensor, k: int, white: torch.Tensor) -> torch.Tensor:
        _, r, root_q = self._tables(*x.shape[-2:])
        r_k = r[k].to(device=x.device, dtype=x.dtype)
        root_q_k = root_q[k].to(device=x.device, dtype=x.dtype)
        return self._dct(r_k * self._dct(x) + root_q_k * white, inverse=True)

    def _plan(self, t: Any, shape: tuple[int, ...] | None) -> Plan:
        return Plan(
            "per-mode",
            "blurring: A_t, Q_t share the DCT eigenbasis",
            "per DCT mode the chain is scalar: x_t = U(a_t * U^T x0 + sigma_t e)",
            "O(d (H + W)) (matrix DCTs)",
            1,
        )

    def moments(self, event_shape: tuple[int, ...], t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """M_t = U diag(a_t) U^T, C_t = sigma_t^2 I (per channel), dense float64."""
        height, width = event_shape[-2:]
        a, _, _ = self._tables(height, width)
        basis = torch.kron(dct_matrix(height), dct_matrix(width))  # rows: modes
        block = basis.T @ torch.diag(a[t].flatten()) @ basis
        channels = math.prod(event_shape[:-2])
        mean_op = torch.block_diag(*[block] * channels)
        sigma2 = float(self.schedule._table("sigma", "cpu")[t] ** 2)
        return mean_op, sigma2 * torch.eye(mean_op.shape[0], dtype=F64)

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and per-mode variance of q(x_(t-1) | x_t, x0), per DCT mode:
        mean_u = a_(t-1) u0 + c_(t-1) r_t / c_t (u_t - a_t u0), var_u = c_(t-1) q_t / c_t,
        c = sigma^2. Returns (mean in x_t's dtype, variances in the DCT basis: the
        covariance is U diag(var) U^T). At t = 0: (x0, 0)."""
        self._check_posterior_inputs(x0, x_t)
        t = self._steps(t, None)
        if not isinstance(t, int):
            raise TypeError("blurring q_posterior takes one int step t")
        self.check_event(tuple(x_t.shape[1:]))
        a, r, root_q = self._tables(*x_t.shape[-2:])
        if t == 0:
            return x0.clone(), torch.zeros(tuple(x_t.shape[-2:]), dtype=F64)
        sigma2 = self.schedule._table("sigma", "cpu") ** 2
        u0, u_t = self._dct(x0.to(F64)), self._dct(x_t.to(F64))
        gain = sigma2[t - 1] * r[t] / sigma2[t]
        mean = a[t - 1] * u0 + gain * (u_t - a[t] * u0)
        variance = sigma2[t - 1] * root_q[t] ** 2 / sigma2[t]
        return self._dct(mean, inverse=True).to(x_t.dtype), variance
