"""The objective of a training run: its process, timestep sampler, shift, weighting and
input perturbation, built from the run's config, and the presets ``noisejump objective``
inspects and ``noisejump train`` trains.

    process      ddpm: the discrete schedule (--schedule, --diffusion-steps), shifted by
                 ``schedule.shifted(s)``; flow: ``FlowMatching(shift=s)`` (SD3's
                 convention: the model sees the shifted time t'); vp: ``VPSDE()``, edm:
                 ``EDM(sigma_data)``, each ``.shifted(s)`` (the model sees the unshifted
                 time); absorbing and uniform: tokens (``train/categorical.py``: their
                 keep probability, model and losses; the Gaussian options refused there)
    model time   ddpm: the step k; flow and vp: 1000 t (the range of the U-Net's step
                 embedding); edm: EDM's preconditioned denoiser D(x; sigma) = c_skip x +
                 c_out F(c_in x; c_noise) (Karras et al. 2022, Table 1), F fed
                 1000 c_noise = 250 ln sigma, sigma the noise level of x (after the shift)
    sampler      ``get_sampler(--timestep-sampler, its parameters)``, truncated to
                 [--t-min, --t-max] when given; importance over the ddpm steps
    weighting    ``get_weighting(--weighting, its parameters)``: every formula weighting
                 (EDM2's learned one is refused: its parameters would need a place in the
                 checkpoint; ``noisejump objective`` reports it as not inspectable)
    perturbation --input-perturbation gamma (Ning et al. 2023), or --time-offset s
                 (Kutsuna 2024's balanced time-dependent offset noise, ddpm and isotropic
                 noise only): the input noise differs from the target's

Options that do not shape the run's objective (a sampler's parameters for another
sampler, the discrete schedule's options for a continuous process) are refused, not
ignored: a run's config says what it trained.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..categorical import LogLinear
from ..continuous import EDM, VPSDE, FlowMatching
from ..objective import (
    InputPerturbation,
    TimeDependentOffset,
    TimestepSampler,
    get_sampler,
    get_weighting,
)
from ..schedules import get_schedule

#: ``noisejump train --process``: the process trained, and what that means (the CLI's
#: choices and help come from this table).
PROCESSES = {
    "ddpm": "Gaussian DDPM on --schedule and --diffusion-steps (the default)",
    "flow": "rectified flow x_t = (1 - t) x0 + t e, SD3's shift convention",
    "edm": "EDM's x0 + sigma e with its preconditioned denoiser (prediction sample)",
    "vp": "the VP-SDE (Song et al. 2021), continuous t in [0, 1]",
    "absorbing": "tokens, absorbing state (MDLM, Sahoo et al. 2024): the digits' 17 pixel "
    "levels masked on a log-linear keep probability, continuous time",
    "uniform": "tokens, uniform (D3PM, Austin et al. 2021): pixel levels resampled "
    "uniformly on --schedule and --diffusion-steps",
}
#: The continuous Gaussian processes (ddpm is discrete).
CONTINUOUS = ("flow", "edm", "vp")
#: The token processes (``train/categorical.py``: one-hot U-Net, MDLM/D3PM losses).
TOKENS = ("absorbing", "uniform")
#: The processes on the discrete schedule (--schedule, --diffusion-steps).
ON_DISCRETE_SCHEDULE = ("ddpm", "uniform")
#: The timestep samplers a run can name, and the config fields of their parameters.
SAMPLER_PARAMETERS: dict[str, dict[str, str]] = {
    "uniform": {},
    "stratified": {},
    "logit_normal": {"logit_mean": "logit_mean", "logit_std": "logit_std"},
    "mode": {"mode_scale": "scale"},
    "cosmap": {},
    "beta": {"beta_a": "a", "beta_b": "b"},
    "log_normal": {"p_mean": "p_mean", "p_std": "p_std"},
    "importance": {},
}
TIMESTEP_SAMPLERS = tuple(SAMPLER_PARAMETERS)
#: The weightings a run can name, and the config fields of their parameters (snr_gamma
#: is min-SNR's and soft-min-SNR's gamma; every one also takes max_weight).
WEIGHTING_PARAMETERS: dict[str, dict[str, str]] = {
    "uniform": {},
    "min_snr": {"snr_gamma": "gamma"},
    "soft_min_snr": {"snr_gamma": "gamma"},
    "debiased": {},
    "p2": {"p2_gamma": "gamma", "p2_k": "k"},
    "sigma_sqrt": {},
    "cosmap": {},
    "edm": {"sigma_data": "sigma_data"},
    "edm2": {"sigma_data": "sigma_data"},
}
TRAIN_WEIGHTINGS = tuple(WEIGHTING_PARAMETERS)
#: The time the U-Net's step embedding is fed is this multiple of a continuous time.
TIME_SCALE = 1000.0
#: ``noisejump objective``'s presets: a description and the train options they set.
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPM: linear, uniform t, epsilon", {}),
    "iddpm": ("improved DDPM: cosine, uniform t, epsilon", {"schedule": "cosine"}),
    "sd3": (
        "SD3: flow, logit-normal(0, 1), shift 3, velocity",
        {
            "process": "flow",
            "timestep_sampler": "logit_normal",
            "shift": 3.0,
            "prediction": "flow_velocity",
        },
    ),
    "edm": (
        "EDM: log-normal(-1.2, 1.2), EDM weighting, sample",
        {
            "process": "edm",
            "timestep_sampler": "log_normal",
            "weighting": "edm",
            "prediction": "sample",
        },
    ),
    "min-snr-5": (
        "min-SNR-5, v, linear",
        {"prediction": "v", "weighting": "min_snr", "snr_gamma": 5.0},
    ),
}


def build_schedule(config: Any) -> Any:
    """The run's schedule (module docstring), shifted by ``config.shift``; a token run's
    keep probability: MDLM's log-linear one (absorbing) or the discrete schedule (uniform,
    which takes no shift)."""
    if config.process == "absorbing":
        return LogLinear()
    if config.process in ON_DISCRETE_SCHEDULE:
        schedule = get_schedule(
            config.schedule,
            config.diffusion_steps,
            rescale_zero_terminal_snr=config.zero_terminal_snr,
        )
        return schedule.shifted(config.shift)
    if config.process == "flow":
        return FlowMatching(shift=config.shift)
    base = VPSDE() if config.process == "vp" else EDM(sigma_data=config.sigma_data)
    return base if config.shift == 1.0 else base.shifted(config.shift)


def build_sampler(config: Any) -> TimestepSampler:
    """The run's timestep sampler, with its parameters and truncation."""
    name = config.timestep_sampler
    if name == "importance":
        return get_sampler("importance", num_steps=config.diffusion_steps)
    kwargs = {arg: getattr(config, field) for field, arg in SAMPLER_PARAMETERS[name].items()}
    for end in ("t_min", "t_max"):
        if getattr(config, end) is not None:
            kwargs[end] = getattr(config, end)
    return get_sampler(name, **kwargs)


def build_weighting(config: Any) -> Any:
    """The run's loss weighting with its parameters (max_weight None: no cap); edm2 is
    the ``LearnedUncertainty`` module (which training refuses)."""
    kwargs = {
        arg: getattr(config, field) for field, arg in WEIGHTING_PARAMETERS[config.weighting].items()
    }
    if config.weighting != "edm2":
        kwargs["max_weight"] = math.inf if config.max_weight is None else config.max_weight
    return get_weighting(config.weighting, **kwargs)


def build_perturbation(
    config: Any, schedule: Any
) -> InputPerturbation | TimeDependentOffset | None:
    if config.input_perturbation:
        return InputPerturbation(config.input_perturbation)
    if config.time_offset:
        return TimeDependentOffset(schedule, config.time_offset)
    return None


def check_objective(config: Any, default: Any) -> None:
    """ValueError for options the run's process, sampler or weighting do not use, and for
    combinations training refuses (module docstring)."""
    if config.process not in PROCESSES:
        raise ValueError(f"process must be one of {list(PROCESSES)}, got {config.process!r}")
    if config.timestep_sampler not in TIMESTEP_SAMPLERS:
        raise ValueError(
            f"timestep_sampler must be one of {TIMESTEP_SAMPLERS}, got {config.timestep_sampler!r}"
        )
    if config.weighting not in TRAIN_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {TRAIN_WEIGHTINGS}, got {config.weighting!r}")
    if config.weighting == "edm2":
        raise ValueError(
            "--weighting edm2 is learned (EDM2's u(sigma), Karras et al. 2024): noisejump "
            "train does not train it (its parameters have no place in the checkpoint); use "
            "keyed_mse(..., weighting=LearnedUncertainty()) in your own loop. It is not "
            "inspectable either: noisejump objective reports it so"
        )
    used = set(SAMPLER_PARAMETERS[config.timestep_sampler])
    used |= set(WEIGHTING_PARAMETERS[config.weighting])
    if config.process == "edm":
        used.add("sigma_data")
    unused = ["logit_mean", "logit_std", "mode_scale", "beta_a", "beta_b", "p_mean", "p_std"]
    unused += ["p2_gamma", "p2_k", "sigma_data"]
    if config.process not in ON_DISCRETE_SCHEDULE:
        unused += ["schedule", "diffusion_steps", "zero_terminal_snr"]
    for name in unused:
        if name not in used and getattr(config, name) != getattr(default, name):
            raise ValueError(
                f"--{name.replace('_', '-')} does not apply to this run (--process "
                f"{config.process}, --timestep-sampler {config.timestep_sampler}, --weighting "
                f"{config.weighting}); a run's config says what it trained"
            )
    continuous = config.process in CONTINUOUS or config.process == "absorbing"
    if config.timestep_sampler == "importance" and continuous:
        raise ValueError(
            "--timestep-sampler importance learns a law over discrete steps: --process ddpm only"
        )
    if config.process == "edm" and config.prediction != "sample":
        raise ValueError(
            "--process edm trains EDM's preconditioned denoiser D(x; sigma), an x0 estimate: "
            f"--prediction sample, got {config.prediction!r}"
        )
    if config.input_perturbation and config.time_offset:
        raise ValueError("give --input-perturbation or --time-offset, not both")
    if config.time_offset and (config.process != "ddpm" or config.noise != "isotropic"):
        raise ValueError(
            "--time-offset walks the discrete chain with white noise: --process ddpm and "
            "--noise isotropic only"
        )
    for name in ("input_perturbation", "time_offset"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def check_sampler_space(sampler: TimestepSampler, config: Any) -> None:
    """EDM's time is a noise level: it takes samplers on sigma (log_normal); the other
    processes take u in [0, 1]... and a sigma sampler through their log-SNR, except the
    token processes, whose keep probability is no Gaussian noise level."""
    if config.process in TOKENS and sampler.space != "u":
        raise ValueError(
            f"--process {config.process} draws t from u in [0, 1] (its keep probability is no "
            f"Gaussian noise level): a sampler on u, got {config.timestep_sampler!r} (a law "
            "on sigma)"
        )
    if config.process == "edm" and sampler.space != "sigma":
        raise ValueError(
            f"--process edm draws noise levels: --timestep-sampler log_normal, got "
            f"{config.timestep_sampler!r} (a law on u in [0, 1])"
        )


class ContinuousTime(nn.Module):
    """A network of (x, step) fed a continuous time: f(x, 1000 t)."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.network(x, TIME_SCALE * t)


class EDMDenoiser(nn.Module):
    """EDM's preconditioned denoiser D(x; sigma) = c_skip x + c_out F(c_in x; c_noise)
    (Karras et al. 2022, Table 1), an estimate of x0; sigma = ``shift`` times the time
    (the noise level of x on ``EDM().shifted(shift)``). F is fed 1000 c_noise."""

    def __init__(self, network: nn.Module, sigma_data: float, shift: float) -> None:
        super().__init__()
        self.network = network
        self.edm = EDM(sigma_data=sigma_data)
        self.shift = shift

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        sigma = (self.shift * t.to(torch.float64)).reshape(-1, *([1] * (x.dim() - 1)))
        c_skip, c_out = self.edm.c_skip(sigma), self.edm.c_out(sigma)
        c_in, c_noise = self.edm.c_in(sigma), self.edm.c_noise(sigma)
        inner = (c_in * x).to(x.dtype)
        F_x = self.network(inner, (TIME_SCALE * c_noise.flatten()).to(torch.float32))
        return (c_skip * x + c_out * F_x.to(torch.float64)).to(torch.float32)


def wrap_model(config: Any, network: nn.Module) -> nn.Module:
    """The network as the loop calls it, ``model(x_t, t)`` (module docstring)."""
    if config.process == "ddpm":
        return network
    if config.process == "edm":
        return EDMDenoiser(network, config.sigma_data, config.shift)
    return ContinuousTime(network)
