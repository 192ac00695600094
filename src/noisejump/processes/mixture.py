"""A noise whose covariance moves between fixed atoms over the steps (DESIGN.md, "mixture
of fixed atoms").

    chain:     x_t = sqrt(alpha_t) x_(t-1) + sqrt(beta_t) sum_k sqrt(w_k(t)) L_k e_k
    marginal:  x_t = signal_t x0 + sum_k sqrt(c_k(t)) L_k e_k,
               c_k(t) = sum_(s<=t) (abar_t / abar_s) beta_s w_k(s)
                      = alpha_t c_k(t-1) + beta_t w_k(t)

so C_t = sum_k c_k(t) S_k: still a closed form, O(K) applications. The posterior
q(x_(t-1) | x_t, x0) is the Kalman update with C_(t-1), a = sqrt(alpha_t), C_t:
K = a C_(t-1) C_t^-1, mean = signal_(t-1) x0 + K (x_t - signal_t x0),
cov = C_(t-1) - a K C_(t-1); it needs C_t^-1: per element when every atom is diagonal, per
frequency when every atom is stationary (FFT basis), a dense solve otherwise (small d).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch

from ..noise import NoiseFamily, Stationary, Sum
from ..schedules import Schedule
from ..schedules.discrete import gather
from .plan import Plan
from .time_varying import F64, TimeVaryingProcess

MAX_DENSE_D = 2048


class MixtureProcess(TimeVaryingProcess):
    """Noise sum_k sqrt(w_k(t)) L_k e_k at step t, atoms S_k = L_k L_k^T fixed.

    Args:
        schedule: a discrete [`Schedule`][noisejump.Schedule] (its betas and abar).
        atoms: K >= 1 noise families.
        weights: w_k(t) >= 0, a (T, K) tensor or a callable mapping the steps
            ``arange(T)`` (float64) to it.
    """

    def __init__(
        self, schedule: Schedule, atoms: Sequence[NoiseFamily], weights: Any, *, path: str = "auto"
    ) -> None:
        atoms = list(atoms)
        if not atoms or not all(isinstance(a, NoiseFamily) for a in atoms):
            raise ValueError(f"mixture: atoms must be noise families, got {atoms!r}")
        steps = torch.arange(schedule.num_steps, dtype=F64)
        weights = weights(steps) if callable(weights) else weights
        weights = torch.as_tensor(weights, dtype=F64).clone()
        if weights.shape != (schedule.num_steps, len(atoms)):
            raise ValueError(
                f"mixture: weights must have shape (T, K) = ({schedule.num_steps}, "
                f"{len(atoms)}), got {tuple(weights.shape)}"
            )
        if not torch.isfinite(weights).all() or (weights < 0).any():
            raise ValueError("mixture: weights w_k(t) must be finite and >= 0")
        self.schedule, self.atoms, self._weights = schedule, atoms, weights
        self.num_steps = schedule.num_steps
        self.path = path
        self._layout = Sum(atoms) if len(atoms) > 1 else None
        # c_k(t) = alpha_t c_k(t-1) + beta_t w_k(t), c_k(-1) = 0, in float64
        alphas, betas = schedule.alphas, schedule.betas
        c = torch.zeros_like(weights)
        previous = torch.zeros(len(atoms), dtype=F64)
        for k in range(self.num_steps):
            previous = alphas[k] * previous + betas[k] * weights[k]
            c[k] = previous
        self._c = c
        if all(a.is_isotropic or a.eigenbasis == "identity" for a in atoms):
            self.basis: str | None = "identity"  # every S_k diagonal: the posterior is per element
        elif all(a.is_isotropic or isinstance(a, Stationary) for a in atoms):
            self.basis = "fft"  # every S_k circulant: the posterior is per frequency
        else:
            self.basis = None

    @property
    def weights(self) -> torch.Tensor:
        """w_k(t), float64 (T, K) (a copy: changing it changes nothing here)."""
        return self._weights.clone()

    @property
    def c(self) -> torch.Tensor:
        """c_k(t) = sum_(s<=t) (abar_t / abar_s) beta_s w_k(s), float64 (T, K) (a copy)."""
        return self._c.clone()

    def __repr__(self) -> str:
        return f"MixtureProcess({self.schedule!r}, atoms={self.atoms!r})"

    def check_event(self, event_shape: tuple[int, ...]) -> None:
        for atom in self.atoms:
            atom.check_shape(event_shape)

    def white_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self._layout is None:
            return self.atoms[0].white_shape(tuple(shape))
        return self._layout.white_shape(tuple(shape))

    def _noises(self, white: torch.Tensor, shape: tuple[int, ...]) -> list[torch.Tensor]:
        """L_k e_k for each atom, from one white draw."""
        if self._layout is None:
            return [self.atoms[0].apply(white, shape)]
        chunks = white.split(self._layout._sizes(shape), dim=-1)
        return [
            atom.apply(chunk.reshape(atom.white_shape(tuple(shape))), shape)
            for atom, chunk in zip(self.atoms, chunks, strict=True)
        ]

    def _coefficient(self, table: torch.Tensor, t: Any, like: torch.Tensor) -> torch.Tensor:
        """table[t] per atom, shaped to broadcast against ``like`` (per-sample t)."""
        values = table.to(like.device)[t]  # (K,) or (B, 1, .., 1, K)
        return values.movedim(-1, 0).to(like.dtype)

    def _closed_parts(
        self, x0: torch.Tensor, t: Any, draw: Callable[[int], torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cd = x0.dtype if x0.dtype == F64 else torch.float32
        signal = gather(self.schedule._table("signal", x0.device, cd), t)
        mean = signal * x0.to(cd)
        c_t = self._coefficient(self._c.sqrt(), t, mean)
        total: Any = 0  # 0, then a tensor
        for root_c, noise in zip(c_t, self._noises(draw(0), tuple(x0.shape)), strict=True):
            total = total + root_c * noise
        return mean, total

    def _chain_step(self, x: torch.Tensor, k: int, white: torch.Tensor) -> torch.Tensor:
        root_w = self._weights[k].sqrt().tolist()
        x = x * math.sqrt(self.schedule.alphas[k])
        root_beta = math.sqrt(self.schedule.betas[k])
        for w, noise in zip(root_w, self._noises(white, tuple(x.shape)), strict=True):
            x = x + (root_beta * w) * noise
        return x

    def _plan(self, t: Any, shape: tuple[int, ...] | None) -> Plan:
        k = len(self.atoms)
        posterior = {
            "identity": "per element (all atoms diagonal)",
            "fft": "per frequency (all atoms stationary: a shared FFT basis)",
            None: "a dense d x d solve, small d only (the atoms share no eigenbasis)",
        }[self.basis]
        return Plan(
            "mixture",
            f"mixture of {k} fixed atoms, C_t = sum_k c_k(t) S_k",
            "the transitions sqrt(alpha_t) I are scalar, so the atoms' noises add up in "
            f"closed form with weights c_k(t); the posterior needs C_t^-1: {posterior}",
            f"{k} x ({', '.join(a.cost for a in self.atoms)})",
            1,
        )

    def covariance(self, event_shape: tuple[int, ...], t: int) -> torch.Tensor:
        """C_t = sum_k c_k(t) S_k, dense float64 (analytic atom covariances)."""
        return cast(
            torch.Tensor,
            sum(float(self._c[t, j]) * a.covariance(event_shape) for j, a in enumerate(self.atoms)),
        )

    def moments(self, event_shape: tuple[int, ...], t: int) -> tuple[torch.Tensor, torch.Tensor]:
        d = math.prod(event_shape)
        signal = float(self.schedule._table("signal", "cpu")[t])
        return signal * torch.eye(d, dtype=F64), self.covariance(event_shape, t)

    def q_posterior(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and covariance of q(x_(t-1) | x_t, x0) for one int step t (module docstring).

        Returns (mean in x_t's dtype, cov): cov is event-shaped per-element variances when
        every atom is diagonal; the (H, W) per-frequency variances when every atom is
        stationary (the covariance is F^H diag(cov) F per channel, F the unitary 2-D DFT);
        else the dense (d, d) float64 matrix (d <= 2048). At t = 0 the target is x0: (x0, 0).
        """
        self._check_posterior_inputs(x0, x_t)
        t = self._steps(t, None)
        if not isinstance(t, int):
            raise TypeError("mixture q_posterior takes one int step t")
        event = tuple(x_t.shape[1:])
        self.check_event(event)
        if t == 0:
            return x0.clone(), torch.zeros(event, dtype=F64)
        signal = self.schedule._table("signal", "cpu")
        a = math.sqrt(float(self.schedule.alphas[t]))
        residual = x_t.to(F64) - float(signal[t]) * x0.to(F64)  # x_t - E[x_t | x0]
        prior_mean = float(signal[t - 1]) * x0.to(F64)
        if self.basis == "fft":
            height, width = event[-2:]
            spectra = [
                torch.ones(height, width, dtype=F64)
                if atom.is_isotropic
                else cast(Stationary, atom).power_spectrum(height, width)
                for atom in self.atoms
            ]
            c_prev = torch.stack([float(self._c[t - 1, j]) * p for j, p in enumerate(spectra)]).sum(
                0
            )
            c_t = torch.stack([float(self._c[t, j]) * p for j, p in enumerate(spectra)]).sum(0)
            gain = a * c_prev / c_t
            update = torch.fft.irfft2(
                gain[:, : width // 2 + 1] * torch.fft.rfft2(residual), s=(height, width)
            )
            return (prior_mean + update).to(x_t.dtype), c_prev - a * gain * c_prev
        if self.basis == "identity":
            var = [atom.variance(event) for atom in self.atoms]
            c = self._c
            c_prev = cast(torch.Tensor, sum(float(c[t - 1, j]) * v for j, v in enumerate(var)))
            c_t = cast(torch.Tensor, sum(float(c[t, j]) * v for j, v in enumerate(var)))
            gain = a * c_prev / c_t
            mean = prior_mean + gain * residual
            return mean.to(x_t.dtype), c_prev - a * gain * c_prev
        d = math.prod(event)
        if d > MAX_DENSE_D:
            raise ValueError(
                f"mixture q_posterior: atoms without a shared diagonal basis need a dense "
                f"{d} x {d} solve; only d <= {MAX_DENSE_D} is supported"
            )
        c_prev, c_t = self.covariance(event, t - 1), self.covariance(event, t)
        gain = a * torch.linalg.solve(c_t, c_prev).T  # a C_(t-1) C_t^-1 (both symmetric)
        flat = residual.reshape(len(x_t), d)
        mean = prior_mean + (flat @ gain.T).reshape(x_t.shape)
        return mean.to(x_t.dtype), c_prev - a * gain @ c_prev
