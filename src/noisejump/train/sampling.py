"""Samplers for a trained model f(x_t, t): ancestral DDPM and deterministic DDIM.

Notation as in ``noisejump.schedules``: signal_k = sqrt(abar_k), sigma_k = sqrt(1 - abar_k);
x0_hat = predict_x0(x_k, f(x_k, k)), clipped to the data range [-1, 1].

    ddpm  x_{k-1} ~ q(x_{k-1} | x_k, x0_hat): the exact posterior of the forward process,
          mean and variance from ``ForwardProcess.q_posterior``, its noise drawn from the
          process's noise family (correlated noise included) (Ho et al. 2020, eq. 6-7, Alg. 2)
    ddim  on n evenly spaced steps k_n > ... > k_1 = 0 (``spaced_steps``), eta = 0:
          e_hat = (x_k - signal_k x0_hat) / sigma_k,  x_j = signal_j x0_hat + sigma_j e_hat
          (Song et al. 2021, arXiv 2010.02502, eq. 12 with sigma = 0)

Both start from x_T ~ N(0, S) and are deterministic given the generator. A token run
(``CategoricalProcess``) samples with ``ancestral``: ancestral unmasking in a stated number
of steps (``noisejump.categorical.sampling``, through ``train/categorical.py``).
"""

from __future__ import annotations

import torch

from ..categorical import CategoricalProcess
from ..schedules.spacing import spaced_steps
from . import categorical as tokens

SAMPLERS = ("ddpm", "ddim")
#: The sampler of token runs.
TOKEN_SAMPLERS = ("ancestral",)


@torch.no_grad()
def ddpm_sample(
    model, process, shape, *, prediction: str, generator: torch.Generator, device="cpu"
) -> torch.Tensor:
    """Ancestral sampling through all T steps; returns x0 samples (float32, ``shape``)."""
    x = _prior(process, shape, generator, device)
    for k in reversed(range(process.num_steps)):
        x0_hat = _predict_x0(model, process, x, k, prediction)
        mean, variance = process.q_posterior(x0_hat, x, k)
        if k == 0:
            return mean
        noise = process.noise.sample(shape, generator=generator).to(device)
        x = mean + variance.sqrt() * noise
    return x


#: DDIM's default number of steps (capped at the schedule's T).
DDIM_STEPS = 50


@torch.no_grad()
def ddim_sample(
    model,
    process,
    shape,
    *,
    prediction: str,
    generator: torch.Generator,
    steps: int | None = None,
    device="cpu",
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) on ``steps`` evenly spaced steps (default: 50, or all
    T steps when T < 50); returns x0 samples."""
    T = process.num_steps
    steps = sampler_steps("ddim", process, steps)
    if not 1 <= steps <= T:
        raise ValueError(f"steps must be in [1, {T}], got {steps}")
    keep = spaced_steps(T, steps).tolist()  # "linspace", as diffusers' DDIM
    signal = process.schedule.sqrt_alphas_cumprod.tolist()
    sigma = process.schedule.sqrt_one_minus_alphas_cumprod.tolist()
    x = _prior(process, shape, generator, device)
    for i in reversed(range(len(keep))):
        k = keep[i]
        x0_hat = _predict_x0(model, process, x, k, prediction)
        if i == 0:
            return x0_hat
        e_hat = (x - signal[k] * x0_hat) / sigma[k]
        j = keep[i - 1]
        x = signal[j] * x0_hat + sigma[j] * e_hat
    return x


def sampler_steps(sampler: str, process, steps: int | None = None) -> int:
    """The network evaluations ``sample`` makes: ddpm all T steps; ddim ``steps``
    (default ``DDIM_STEPS``, or T when fewer); ancestral (tokens) ``steps`` (default
    ``categorical.SAMPLE_STEPS``, at most T)."""
    if sampler == "ancestral":
        return tokens.sample_steps(process, steps)
    if sampler == "ddpm":
        return process.num_steps
    return min(DDIM_STEPS, process.num_steps) if steps is None else steps


def default_sampler(process) -> str:
    """ancestral for a token process, else ddim."""
    return "ancestral" if isinstance(process, CategoricalProcess) else "ddim"


def sample(
    model,
    process,
    shape,
    *,
    sampler: str,
    prediction: str,
    seed: int,
    steps: int | None = None,
    device="cpu",
) -> torch.Tensor:
    """``ddpm_sample`` or ``ddim_sample`` with a CPU generator seeded by ``seed``; for a
    token process, ``ancestral`` (digits in [-1, 1], ``categorical.sample_images``)."""
    token = isinstance(process, CategoricalProcess)
    allowed = TOKEN_SAMPLERS if token else SAMPLERS
    if sampler not in allowed:
        kind = "a token run" if token else "a Gaussian run"
        raise ValueError(f"sampler must be one of {allowed} for {kind}, got {sampler!r}")
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        if token:
            return tokens.sample_images(
                model, process, shape, seed=seed, steps=steps, device=device
            )
        if sampler == "ddpm":
            return ddpm_sample(
                model, process, shape, prediction=prediction, generator=generator, device=device
            )
        return ddim_sample(
            model,
            process,
            shape,
            prediction=prediction,
            generator=generator,
            steps=steps,
            device=device,
        )
    finally:
        model.train(was_training)


def _prior(process, shape, generator, device) -> torch.Tensor:
    return process.noise.sample(tuple(shape), generator=generator).to(device)


def _predict_x0(model, process, x, k: int, prediction: str) -> torch.Tensor:
    t = torch.full((x.shape[0],), k, dtype=torch.int64, device=x.device)
    output = model(x, t).float()
    return process.predict_x0(x, output, k, prediction).clamp(-1.0, 1.0)
