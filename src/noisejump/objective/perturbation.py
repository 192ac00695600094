"""Input-side perturbations: the noise the model sees differs from what it must predict.

Notation (``noisejump.processes.forward``): x_t = signal_t x0 + sigma_t e, signal_t =
sqrt(abar_t), sigma_t = sqrt(1 - abar_t); alpha_t = 1 - beta_t is one step's factor and
abar_t = prod_{k <= t} alpha_k the product up to step t (code step k is step k + 1).

    input perturbation     x_t = signal_t x0 + sigma_t (e + gamma xi),   target e
                           (Ning et al. 2023, arXiv 2301.11706, DDPM-IP, Algorithm 1;
                           diffusers' ``--input_perturbation``)
    time-dependent offset  x_t = signal_t x0 + sigma_t (e + s psi_t xi_c),  target
                           e + s phi_t xi_c        (Kutsuna 2024, arXiv 2412.03134)

xi is white noise of x0's shape; xi_c one N(0, 1) per (sample, channel), constant over
the channel's other axes (the offset of ``noise.Offset``). Both are keyed like q_sample:
with the same (seed, keys), e is exactly the noise ``q_sample`` returns (stream 0) and
the extra draw comes from a stream of its own (``INPUT_PERTURBATION_STREAM``,
``OFFSET_STREAM``), so a sub-batch gets exactly its rows of the full call and
``keyed_mse`` with the same keys regenerates the right target e.

The offset noise of diffusers and kohya-ss (noise + s randn(B, C, 1, 1), input and target
alike) is ``noise.Offset(s, normalize=False)`` (``noise.diffusers_offset_noise``); it is
a fixed covariance and needs nothing here.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ..kernels.affine import affine, compute_dtype
from ..noise.base import check_number
from ..noise.offset import MAX_STRENGTH
from ..processes.forward import _check_sample
from ..rng import keyed_normal

__all__ = [
    "INPUT_PERTURBATION_STREAM",
    "OFFSET_STREAM",
    "InputPerturbation",
    "TimeDependentOffset",
]

F64 = torch.float64
#: The keyed streams of the extra draws, at the top of the 32-bit range: apart from the
#: callers' streams (1 .. 2^31) and the chain's extra draws (2^31 + j).
INPUT_PERTURBATION_STREAM = 2**32 - 1
OFFSET_STREAM = 2**32 - 2


class InputPerturbation:
    """Input perturbation (Ning et al. 2023, "Input perturbation reduces exposure bias in
    diffusion models", arXiv 2301.11706, Algorithm 1): train on

        y_t = signal_t x0 + sigma_t (e + gamma xi),   xi ~ N(0, I),   target e

    to make the network robust to the errors of its own earlier steps at sampling time.
    diffusers' examples/text_to_image/train_text_to_image.py does the same:
    ``new_noise = noise + input_perturbation * randn_like(noise)``, noisy latents from
    ``add_noise(latents, new_noise, t)``, and the loss against ``noise`` (or the v of
    ``noise``): ``--input_perturbation`` is gamma (recommended 0.1, the paper's value).
    xi is white for every noise family (``randn_like``); e is the family's L e.

    Args:
        gamma: the perturbation's scale, a finite number >= 0 (0: plain q_sample).
    """

    def __init__(self, gamma: float = 0.1) -> None:
        self.gamma = check_number(gamma, "gamma", "input perturbation", low=0.0)

    def q_sample(
        self, process: Any, x0: torch.Tensor, t: Any, *, seed: int, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(y_t, e): y_t the perturbed input in x0's dtype, e the target, exactly
        ``process.q_sample(x0, t, seed=seed, keys=keys)[1]``. Any path and family: y_t =
        signal_t x0 + sigma_t (e + gamma xi) elementwise, in float32 (float64 for float64
        x0), xi keyed on ``INPUT_PERTURBATION_STREAM``. Clean elements (step -1) stay x0."""
        _, noise = process.q_sample(x0, t, seed=seed, keys=keys)
        steps = process.schedule.steps(t, x0, lowest=-1, validate=process.validate)
        cd = compute_dtype(x0.dtype)
        signal, sigma = process.schedule.marginal(steps, x0.device, cd)
        xi = keyed_normal(
            tuple(x0.shape),
            seed=seed,
            keys=keys,
            stream=INPUT_PERTURBATION_STREAM,
            device=x0.device,
        ).to(cd)
        perturbed = noise.to(cd) + self.gamma * xi
        return affine(signal, x0, sigma, perturbed), noise

    def __repr__(self) -> str:
        return f"InputPerturbation(gamma={self.gamma:g})"


class TimeDependentOffset:
    """Generalized (time-dependent) offset noise (Kutsuna 2024, "Generalized diffusion model
    with adjusted offset noise", arXiv 2412.03134). The forward chain adds, besides its
    noise, a multiple of one offset draw xi (shared by every step of the chain):

        x_k = sqrt(alpha_k) x_{k-1} + d_k s xi_c + sqrt(beta_k) e_k,   x_{-1} = x0

    Its closed form keeps the one-step jump of DDPM, with abar_t (not alpha_t):

        x_t = signal_t x0 + m_t s xi_c + sigma_t e,   m_t = sum_{k <= t} sqrt(abar_t / abar_k) d_k
            = signal_t x0 + sigma_t (e + s psi_t xi_c),   psi_t = m_t / sigma_t

    so d_k = m_k - sqrt(alpha_k) m_{k-1} (m_{-1} = 0): using abar_k where the chain has
    alpha_k, or psi where the loss needs phi, is the easy mistake. Writing the ELBO's mean
    of q(x_{t-1} | x_t, x0, xi) as DDPM's (x_t - beta_t / sigma_t (e + s phi_t xi_c)) /
    sqrt(alpha_t), the epsilon-prediction target is e + s phi_t xi_c with

        phi_t = sigma_t d_t / beta_t          (phi_0 = psi_0)

    Plain offset noise (diffusers, kohya: psi_t = 1 in the input and the target alike) is
    the special case whose ELBO target is not its input noise (phi != psi). Kutsuna's
    *balanced* choice makes them equal: phi_t = psi_t for every t exactly when psi_t is
    proportional to 1 / sqrt(SNR_t); normalised to psi_T = 1 at the last step,

        psi_t = sqrt(SNR_T / SNR_t) = exp((lambda_T - lambda_t) / 2)

    (the offset at the last step is the plain offset noise of strength s). It needs
    SNR_T > 0: refused on a zero-terminal-SNR schedule.

    Args:
        schedule: a discrete [`Schedule`][noisejump.Schedule].
        strength: s, a finite number in [0, 1000] (0.1 as diffusers' common noise_offset).
        psi: "balanced" (above), "constant" (psi_t = 1: plain offset noise with the ELBO's
            target), or a float64-convertible tensor (T,) of finite psi_t.
    Tables (float64, (T,)): ``psi``, ``phi``, ``increments`` (d_k), ``offset_mean`` (m_t).
    """

    def __init__(self, schedule: Any, strength: float = 0.1, psi: Any = "balanced") -> None:
        alphas = getattr(schedule, "alphas", None)
        if getattr(schedule, "is_continuous", False) or not isinstance(alphas, torch.Tensor):
            raise TypeError(
                "time-dependent offset noise walks a discrete chain: schedule must be a "
                f"noisejump.Schedule, got {schedule!r:.80}"
            )
        self.schedule = schedule
        self.strength = check_number(
            strength, "strength", "time-dependent offset", low=0.0, high=MAX_STRENGTH
        )
        log_snr = schedule.log_snr
        sigma = schedule.sqrt_one_minus_alphas_cumprod
        self.psi = self._psi(psi, log_snr)
        self.offset_mean = sigma * self.psi  # m_t
        previous = torch.cat([self.offset_mean.new_zeros(1), self.offset_mean[:-1]])
        self.increments = self.offset_mean - alphas.sqrt() * previous  # d_k
        self.phi = sigma * self.increments / schedule.betas
        self.psi_kind = psi if isinstance(psi, str) else "table"

    def _psi(self, psi: Any, log_snr: torch.Tensor) -> torch.Tensor:
        if isinstance(psi, str):
            if psi == "constant":
                return torch.ones_like(log_snr)
            if psi != "balanced":
                raise ValueError(
                    f"psi must be 'balanced', 'constant' or a tensor of {len(log_snr)} values, "
                    f"got {psi!r}"
                )
            if log_snr[-1] == -math.inf:
                raise ValueError(
                    "balanced offset noise has psi_t = sqrt(SNR_T / SNR_t): it needs SNR_T > 0, "
                    f"and {self.schedule!r} has zero terminal SNR. Use psi='constant' or a "
                    "schedule without the rescale"
                )
            return torch.exp(0.5 * (log_snr[-1] - log_snr))
        values = torch.as_tensor(psi, dtype=F64) if not isinstance(psi, torch.Tensor) else psi
        if values.shape != log_snr.shape or not values.is_floating_point():
            raise ValueError(
                f"psi must be a floating tensor of shape ({len(log_snr)},) (one per step), got "
                f"{tuple(values.shape)} {values.dtype}"
            )
        values = values.to("cpu", F64)
        if not bool(torch.isfinite(values).all()):
            raise ValueError("psi must be finite at every step")
        return values.clone()

    # ---- sampling ---------------------------------------------------------------------------

    def q_sample(
        self, x0: torch.Tensor, t: Any, *, seed: int, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, noise) with noise = e + s psi_t xi_c and x_t = signal_t x0 + sigma_t noise,
        both in x0's dtype (computed in float32, float64 for float64 x0): e the keyed white
        noise of ``ForwardProcess(schedule).q_sample`` (stream 0), xi_c keyed on
        ``OFFSET_STREAM``. t: an int or one step per sample (B,)."""
        steps, signal, sigma = self._coefficients(x0, t)
        noise = self._noise(x0, steps, self.psi, seed, keys)
        return affine(signal, x0, sigma, noise), noise

    def target_noise(
        self, x0: torch.Tensor, t: Any, *, seed: int, keys: torch.Tensor
    ) -> torch.Tensor:
        """The epsilon-prediction target e + s phi_t xi_c of the same draw as ``q_sample``
        (regenerated from the keys), x0's dtype; equal to q_sample's noise when balanced."""
        steps, _, _ = self._coefficients(x0, t)
        return self._noise(x0, steps, self.phi, seed, keys)

    def q_sample_loop(
        self,
        x0: torch.Tensor,
        t: Any,
        *,
        generator: torch.Generator | None = None,
        offset: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x_t by walking the chain x_k = sqrt(alpha_k) x_{k-1} + d_k s xi_c + sqrt(beta_k) e_k,
        k = 0..t, with one xi_c for the whole chain: the reference the closed form is tested
        against. ``offset``: xi_c (B, C) to use (default: drawn from ``generator`` first);
        each e_k is then drawn from ``generator``. Runs in float32 (float64 for float64 x0),
        returns x0's dtype."""
        steps, _, _ = self._coefficients(x0, t)
        cd = compute_dtype(x0.dtype)
        batch, channels = x0.shape[:2]
        if offset is None:
            offset = torch.randn(batch, channels, generator=generator, dtype=cd)
        elif offset.shape != (batch, channels):
            raise ValueError(
                f"offset must have shape ({batch}, {channels}), got {tuple(offset.shape)}"
            )
        shift = (self.strength * offset.to(x0.device, cd)).reshape(
            (batch, channels) + (1,) * (x0.dim() - 2)
        )
        per_sample = steps.reshape(-1, *([1] * (x0.dim() - 1))).expand(
            batch, *([1] * (x0.dim() - 1))
        )
        sqrt_alphas = self.schedule.alphas.sqrt().tolist()
        sqrt_betas = self.schedule.betas.sqrt().tolist()
        increments = self.increments.tolist()
        x = x0.to(cd, copy=True)
        for k in range(int(steps.max()) + 1):
            e = torch.randn(x0.shape, generator=generator, dtype=cd).to(x0.device)
            step = sqrt_alphas[k] * x + increments[k] * shift + sqrt_betas[k] * e
            x = torch.where(per_sample >= k, step, x)
        return x.to(x0.dtype)

    # ---- helpers ------------------------------------------------------------------------------

    def _coefficients(self, x0: torch.Tensor, t: Any) -> tuple[torch.Tensor, Any, Any]:
        _check_sample(x0, "x0")
        if x0.dim() < 3:
            raise ValueError(
                f"time-dependent offset noise needs x0 of shape (B, C, ...) with at least one "
                f"axis after the channels, got {tuple(x0.shape)}"
            )
        steps = self.schedule.steps(t, x0)
        steps = torch.as_tensor(steps, device=x0.device)
        if steps.numel() not in (1, x0.shape[0]):
            raise ValueError(
                "time-dependent offset noise takes one step per sample, not per element"
            )
        steps = steps.reshape(-1).expand(x0.shape[0])
        signal, sigma = self.schedule.marginal(steps, x0.device, compute_dtype(x0.dtype))
        shape = (-1,) + (1,) * (x0.dim() - 1)
        return steps, signal.reshape(shape), sigma.reshape(shape)

    def _noise(
        self,
        x0: torch.Tensor,
        steps: torch.Tensor,
        table: torch.Tensor,
        seed: int,
        keys: torch.Tensor,
    ) -> torch.Tensor:
        """e + s table[t] xi_c in x0's dtype, keyed."""
        cd = compute_dtype(x0.dtype)
        batch, channels = x0.shape[:2]
        e = keyed_normal(tuple(x0.shape), seed=seed, keys=keys, device=x0.device).to(cd)
        xi = keyed_normal(
            (batch, channels), seed=seed, keys=keys, stream=OFFSET_STREAM, device=x0.device
        )
        coefficient = self.strength * table.to(x0.device, cd)[steps]
        shift = (coefficient[:, None] * xi.to(cd)).reshape(
            (batch, channels) + (1,) * (x0.dim() - 2)
        )
        return (e + shift).to(x0.dtype)

    def __repr__(self) -> str:
        return (
            f"TimeDependentOffset({self.schedule!r}, strength={self.strength:g}, "
            f"psi={self.psi_kind!r})"
        )
