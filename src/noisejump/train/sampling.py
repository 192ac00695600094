"""Samplers for a trained model f(x_t, t): ancestral DDPM and deterministic DDIM.

Notation as in ``noisejump.schedules``: signal_k = sqrt(abar_k), sigma_k = sqrt(1 - abar_k);
x0_hat = predict_x0(x_k, f(x_k, k)), clipped to the data range [-1, 1].

    ddpm  x_{k-1} ~ q(x_{k-1} | x_k, x0_hat): the exact posterior of the forward process,
          mean and variance from ``ForwardProcess.q_posterior``, its noise drawn from the
          process's noise family (correlated noise included) (Ho et al. 2020, eq. 6-7, Alg. 2)
    ddim  on n evenly spaced steps k_n > ... > k_1 = 0 (``spaced_steps``), eta = 0:
          e_hat = (x_k - signal_k x0_hat) / sigma_k,  x_j = signal_j x0_hat + sigma_j e_hat
          (Song et al. 2021, arXiv 2010.02502, eq. 12 with sigma = 0)

Both start from x_T ~ N(0, S) and are deterministic given the generator. A continuous
process (``noisejump train --process flow|edm|vp``) samples with ddim on a grid of times
from pure noise to the data (``continuous_grid``), the same update with its own signal_t
and sigma_t, starting from sigma_start e (the first-order step of the probability-flow
ODE: Euler for flow matching and EDM). A token run (``CategoricalProcess``) samples with
``ancestral``: ancestral unmasking in a stated number of steps
(``noisejump.categorical.sampling``, through ``train/categorical.py``).
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
    steps = sampler_steps("ddim", T, steps)
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


def sampler_steps(sampler: str, num_steps: int | None, steps: int | None = None) -> int:
    """The network evaluations ``sample`` makes: ddpm all ``num_steps``; ddim ``steps``
    (default ``DDIM_STEPS``, or ``num_steps`` when fewer; ``num_steps`` None: a
    continuous process); ancestral (tokens) likewise with ``categorical.SAMPLE_STEPS``."""
    if sampler == "ddpm" and num_steps is not None:
        return num_steps
    if steps is not None:
        return steps
    default = tokens.SAMPLE_STEPS if sampler == "ancestral" else DDIM_STEPS
    return default if num_steps is None else min(default, num_steps)


def default_sampler(process) -> str:
    """ancestral for a token process, else ddim."""
    return "ancestral" if isinstance(process, CategoricalProcess) else "ddim"


def process_steps(process) -> int | None:
    """T of a discrete process, None for a continuous one."""
    return None if getattr(process.schedule, "is_continuous", False) else process.num_steps


#: EDM's inference noise levels (Karras et al. 2022, eq. 5): sigma_max, sigma_min, rho.
EDM_SIGMA_MAX, EDM_SIGMA_MIN, EDM_RHO = 80.0, 0.002, 7.0
#: The last time of the VP-SDE's grid (Song et al. 2021 sample down to 1e-3).
VP_END = 1e-3


def continuous_grid(schedule, steps: int) -> torch.Tensor:
    """``steps`` float64 times from noise to data: EDM's rho = 7 grid of noise levels
    (eq. 5; in the schedule's time: sigma / shift after ``shifted``), u from 1 to 0 for
    flow matching (mapped by ``time_of``: a shift applies), t from 1 to 1e-3 for the
    others."""
    if getattr(schedule, "t_is_sigma", False) or getattr(
        getattr(schedule, "base", None), "t_is_sigma", False
    ):
        ramp = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
        top, bottom = EDM_SIGMA_MAX ** (1 / EDM_RHO), EDM_SIGMA_MIN ** (1 / EDM_RHO)
        sigma = (top + ramp * (bottom - top)) ** EDM_RHO
        return sigma / getattr(schedule, "shift", 1.0)
    if getattr(schedule, "is_flow", False):
        return schedule.time_of(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)[:-1])
    return torch.linspace(1.0, VP_END, steps, dtype=torch.float64)


@torch.no_grad()
def continuous_sample(
    model, process, shape, *, prediction: str, generator: torch.Generator, steps: int, device
) -> torch.Tensor:
    """DDIM (eta = 0) on ``continuous_grid``: x_0 = sigma_start e, then x0_hat, e_hat =
    (x - signal x0_hat) / sigma, x' = signal' x0_hat + sigma' e_hat; returns x0_hat of the
    last time."""
    grid = continuous_grid(process.schedule, steps)
    if prediction == "epsilon":  # x0 from e divides by signal, 0 at flow matching's t = 1
        grid = grid.clamp(max=1.0 - VP_END) if getattr(process.schedule, "is_flow", False) else grid
    signal, sigma = process.schedule.signal_sigma(grid)
    x = float(sigma[0]) * _prior(process, shape, generator, device)
    for i in range(len(grid)):
        t = torch.full((x.shape[0],), float(grid[i]), dtype=torch.float32, device=x.device)
        output = model(x, t).float()
        x0_hat = process.predict_x0(x, output, t, prediction).clamp(-1.0, 1.0)
        if i == len(grid) - 1:
            return x0_hat
        e_hat = (x - float(signal[i]) * x0_hat) / float(sigma[i])
        x = float(signal[i + 1]) * x0_hat + float(sigma[i + 1]) * e_hat
    return x


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
    continuous = process_steps(process) is None
    if continuous and not token and sampler != "ddim":
        raise ValueError(f"a continuous-time run samples with ddim, not {sampler!r}")
    was_training = model.training
    model.eval()
    try:
        if token:
            return tokens.sample_images(
                model,
                process,
                shape,
                seed=seed,
                steps=sampler_steps("ancestral", process_steps(process), steps),
                device=device,
            )
        if continuous:
            return continuous_sample(
                model,
                process,
                shape,
                prediction=prediction,
                generator=generator,
                steps=sampler_steps("ddim", None, steps),
                device=device,
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
