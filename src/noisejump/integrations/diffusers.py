"""A drop-in for the forward process of diffusers' schedulers.

``from_diffusers(scheduler_or_config)`` builds the noisejump process a diffusers scheduler
trains with, from its config, in float64. ``DiffusersAdapter(scheduler)`` offers the
scheduler methods a training script calls, with the same signatures:

    add_noise(original_samples, noise, timesteps)   x_t from the caller's noise
    get_velocity(sample, noise, timesteps)           v = sqrt(abar_t) e - sqrt(1 - abar_t) x0
    scale_noise(sample, timestep, noise)             flow matching, timestep in [0, T]
    add_fresh_noise(original_samples, timesteps, seed=, keys=)   keyed noise, one pass
    alphas_cumprod(device)                           abar_t on a device (the scheduler's
                                                     table stays where it is)

Three kinds of scheduler add noise in three forms (``SUPPORTED`` lists the classes):

    "vp"     sqrt(abar_t) x0 + sqrt(1 - abar_t) e      DDPM, DDIM, PNDM, DPM-Solver, ...
    "sigma"  x0 + sigma_t e, sigma_t^2 = (1 - abar_t) / abar_t          Euler, Heun, LMS, ...
    "flow"   (1 - sigma) x0 + sigma e, sigma = timestep / T     FlowMatchEuler, FlowMatchHeun

Differences from diffusers, all deliberate: coefficients come from float64 tables and are
applied in float32 (diffusers casts ``alphas_cumprod`` to the sample's dtype first, so in
bfloat16 the smallest steps get no noise at all); nothing is mutated (diffusers' add_noise
reassigns ``self.alphas_cumprod``); no timestep lookup loop, so no host sync per sample.
Schedulers are recognised by class name; diffusers is imported only to recognise a config
without ``_class_name`` (``scheduler.config`` of a scheduler built in code).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch

from .._numpy import from_numpy
from ..checks import as_device, check_values
from ..processes import ForwardProcess
from ..schedules import DiscreteSigmas, Schedule, get_schedule, schedule_names
from ..schedules.continuous import FlowMatching

__all__ = ["SUPPORTED", "DiffusersAdapter", "from_diffusers"]

_VP = (
    "DDPMScheduler",
    "DDIMScheduler",
    "DDPMParallelScheduler",
    "DDIMParallelScheduler",
    "PNDMScheduler",
    "LCMScheduler",
    "TCDScheduler",
    "SASolverScheduler",
    "DPMSolverMultistepScheduler",
    "DPMSolverSinglestepScheduler",
    "DEISMultistepScheduler",
    "UniPCMultistepScheduler",
)
_SIGMA = (
    "EulerDiscreteScheduler",
    "EulerAncestralDiscreteScheduler",
    "HeunDiscreteScheduler",
    "LMSDiscreteScheduler",
    "KDPM2DiscreteScheduler",
    "KDPM2AncestralDiscreteScheduler",
)
_FLOW = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
#: Supported scheduler class names, by the form in which they add noise.
SUPPORTED: dict[str, tuple[str, ...]] = {"vp": _VP, "sigma": _SIGMA, "flow": _FLOW}


def from_diffusers(scheduler_or_config: Any) -> ForwardProcess:
    """The noisejump process of a diffusers scheduler, or of its config.

    Args:
        scheduler_or_config: a diffusers scheduler instance, or its config mapping:
            one that names its class in ``_class_name`` (scheduler_config.json,
            ``load_config``), or ``scheduler.config`` of a scheduler built in code, whose
            class is recognised by its parameters (this imports diffusers).
    Returns:
        a [`ForwardProcess`][noisejump.ForwardProcess] over a float64
        [`Schedule`][noisejump.Schedule] ("vp" schedulers), its
        [`DiscreteSigmas`][noisejump.schedules.DiscreteSigmas] view ("sigma"), or
        [`FlowMatching`][noisejump.continuous.FlowMatching] ("flow"; the config's static
        shift becomes the shift of ``sample_t``).
    Raises:
        ValueError: an unsupported scheduler class or configuration, naming what is.
    """
    name, config = _identify(scheduler_or_config)
    kind = _kind(name)
    if kind == "flow":
        if config.get("invert_sigmas", False):
            raise ValueError(f"{name} with invert_sigmas=True is not supported")
        shift = 1.0 if config.get("use_dynamic_shifting", False) else config.get("shift", 1.0)
        return ForwardProcess(FlowMatching(shift=float(shift)))
    if kind != "flow" and config.get("use_flow_sigmas", False):
        # DPM-Solver and UniPC with flow sigmas add noise as (1 - sigma) x0 + sigma e on a
        # shifted flow grid, not with the betas of their config: a different process.
        raise ValueError(
            f"{name} with use_flow_sigmas=True is not supported: it adds noise on a shifted "
            "flow-matching grid, not with its betas. Train with FlowMatchEulerDiscreteScheduler "
            "(or noisejump.continuous.FlowMatching) instead"
        )
    if kind == "sigma" and config.get("rescale_betas_zero_snr", False):
        # diffusers sets abar_T = 2**-24 (6e-8) there, above the abar of the step before it
        # (4.2e-9 for rescaled linear betas): sigma_T = 4096 < sigma_{T-1}, not a forward
        # process any more.
        raise ValueError(
            f"{name} with rescale_betas_zero_snr=True is not supported: sigma_T is infinite "
            "at zero terminal SNR, and diffusers' clamp (abar_T = 2**-24) makes the last "
            "step less noisy than the one before. Use a 'vp' scheduler (e.g. DDPMScheduler)."
        )
    schedule = _schedule(name, config)
    if kind == "sigma":
        if config.get("timestep_type", "discrete") != "discrete":
            raise ValueError(
                f"{name} with timestep_type={config['timestep_type']!r} is not supported: its "
                "timesteps are log-sigmas, not step indices; use timestep_type='discrete'"
            )
        return ForwardProcess(DiscreteSigmas(schedule))
    return ForwardProcess(schedule)


class DiffusersAdapter:
    """diffusers' ``add_noise`` / ``get_velocity`` / ``scale_noise``, computed by noisejump.

    Replace ``noise_scheduler.add_noise(latents, noise, timesteps)`` in a training script
    by ``adapter.add_noise(latents, noise, timesteps)`` with
    ``adapter = DiffusersAdapter(noise_scheduler)``; the scheduler is read, never changed.

    Attributes:
        process: the [`ForwardProcess`][noisejump.ForwardProcess] (see
            [`from_diffusers`][noisejump.integrations.diffusers.from_diffusers]).
        kind: "vp", "sigma" or "flow" (see the module docstring).
        num_train_timesteps: T of the config.
    """

    def __init__(self, scheduler: Any):
        name, config = _identify(scheduler)
        self.scheduler_name = name
        self.kind = _kind(name)
        self.num_train_timesteps = int(config.get("num_train_timesteps", 1000))
        self.process = from_diffusers(scheduler)
        if self.kind == "sigma":
            self._vp = ForwardProcess(self.process.schedule.base)
        elif self.kind == "vp":
            self._vp = self.process
        self._alphas_cumprod: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: Any
    ) -> torch.Tensor:
        """x_t for the caller's noise at integer ``timesteps`` in [0, T - 1] (one per sample,
        or one for the whole batch: an int, a 0-d or a (1,) tensor, as diffusers takes them).

        "vp": sqrt(abar_t) x0 + sqrt(1 - abar_t) e (Ho et al. 2020, eq. 4); "sigma":
        x0 + sigma_t e. Float timesteps must hold whole numbers: the training timesteps
        (an Euler scheduler's after ``set_timesteps`` are fractional, and diffusers
        interpolates sigmas between steps there: refused). Returns original_samples' dtype.
        """
        if self.kind == "flow":
            raise TypeError(
                f"{self.scheduler_name} has no add_noise; flow matching uses "
                "scale_noise(sample, timestep, noise)"
            )
        steps = self._integer_steps(timesteps, original_samples)
        return self.process.q_sample(original_samples, steps, noise=noise)[0]

    def get_velocity(
        self, sample: torch.Tensor, noise: torch.Tensor, timesteps: Any
    ) -> torch.Tensor:
        """v = sqrt(abar_t) e - sqrt(1 - abar_t) x0 (Salimans & Ho 2022), ``sample`` being
        the clean x0 as in diffusers. Not defined for flow matching (its target is
        ``noise - sample``, ``ForwardProcess.flow_velocity``)."""
        if self.kind == "flow":
            raise TypeError(
                f"{self.scheduler_name} has no get_velocity; the flow-matching target is "
                "noise - sample (ForwardProcess.flow_velocity)"
            )
        return self._vp.v_target(sample, noise, self._integer_steps(timesteps, sample))

    def alphas_cumprod(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """abar_t of the T training steps on ``device``, in ``dtype``: what a script reads
        as ``noise_scheduler.alphas_cumprod`` (SNR weights, x0 from a prediction).

        diffusers' own ``add_noise`` and ``get_velocity`` (DDPM, DDIM and their Parallel
        variants) reassign ``scheduler.alphas_cumprod`` to the sample's device, and scripts
        index it with GPU timesteps afterwards (train_unconditional.py, prediction_type
        "sample"). The adapter never changes the scheduler, so there the table stays on the
        CPU: read ``adapter.alphas_cumprod(timesteps.device)`` instead. The values are the
        ones ``add_noise`` applies: built in float64 from the config and rounded once to
        ``dtype`` (diffusers' float32 cumulative product differs by up to 1.3e-5 relative,
        for cosine betas). Cached per device and dtype; each call returns a fresh copy.
        """
        if self.kind == "flow":
            raise TypeError(
                f"{self.scheduler_name} has no alphas_cumprod; flow matching's noise level is "
                "sigma = timestep / T"
            )
        key = (as_device(device), dtype)
        table = self._alphas_cumprod.get(key)
        if table is None:
            table = self._vp.schedule.alphas_cumprod.to(device=device, dtype=dtype)
            self._alphas_cumprod[key] = table
        return table.clone()

    def scale_noise(
        self, sample: torch.Tensor, timestep: Any, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(1 - sigma) x0 + sigma e with sigma = timestep / T, timestep in [0, T] (float).

        diffusers' FlowMatch schedulers keep sigma = timestep / T in their tables (the
        shift is already inside the timestep), so any timestep in [0, T] works here, not
        only those in ``scheduler.timesteps``. ``noise`` is drawn when None.
        """
        if self.kind != "flow":
            raise TypeError(
                f"scale_noise is the flow-matching forward process; {self.scheduler_name} "
                "adds noise with add_noise"
            )
        return self.process.q_sample(sample, self._flow_time(timestep, sample), noise=noise)[0]

    def _flow_time(self, timestep: Any, sample: torch.Tensor) -> Any:
        """t = timestep / T in float64; a (1,) tensor applies to the whole batch. Timesteps
        outside [0, T] are refused in the caller's units."""
        T = self.num_train_timesteps
        timestep = _one_for_all(from_numpy(timestep), sample)
        if isinstance(timestep, torch.Tensor):
            check_values(
                timestep,
                lambda v: (v >= 0) & (v <= T),
                name="timestep",
                allowed=f"in [0, {T}]",
                validate=self.process.validate,
            )
        elif isinstance(timestep, (int, float)) and not 0 <= timestep <= T:
            raise ValueError(f"timestep must be in [0, {T}], got {timestep!r}")
        if isinstance(timestep, torch.Tensor):
            return timestep.to(torch.float64) / self.num_train_timesteps
        if isinstance(timestep, (int, float)) and not isinstance(timestep, bool):
            return float(timestep) / self.num_train_timesteps
        raise TypeError(f"timestep must be a float or a tensor, got {type(timestep).__name__}")

    def add_fresh_noise(
        self, original_samples: torch.Tensor, timesteps: Any, *, seed: int, keys: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw keyed noise and add it in one pass: (x_t, noise), both original_samples' dtype.

        The noise of sample b is a pure function of (seed, keys[b]) (``noisejump.rng``,
        docs/keyed-noise.md): the same for any batch size, order or number of GPUs. Unlike
        ``add_noise``, whose caller already paid for drawing and storing the noise, this
        draws and applies it inside ``ForwardProcess.q_sample`` (the fused kernel where
        one is available). ``timesteps``: integer steps, or for flow matching floats in
        [0, T] as for
        [`scale_noise`][noisejump.integrations.diffusers.DiffusersAdapter.scale_noise].
        ``noise`` is the epsilon-prediction target.
        """
        if self.kind == "flow":
            t = self._flow_time(timesteps, original_samples)
        else:
            t = self._integer_steps(timesteps, original_samples)
        return self.process.q_sample(original_samples, t, seed=seed, keys=keys)

    def _integer_steps(self, timesteps: Any, sample: torch.Tensor) -> Any:
        """Integer tensors and ints as they are; whole-valued float tensors as int64; a (1,)
        tensor applies to the whole batch. Validated in [0, T - 1], as diffusers indexes
        them: noisejump's step -1 (the data) has no diffusers timestep."""
        timesteps = _one_for_all(from_numpy(timesteps), sample)
        if isinstance(timesteps, torch.Tensor) and timesteps.dtype.is_floating_point:
            check_values(
                timesteps,
                lambda v: v == v.round(),
                name="timesteps",
                allowed=f"whole numbers in [0, {self.num_train_timesteps - 1}] for "
                f"{self.scheduler_name} (its training timesteps; the fractional timesteps of "
                "set_timesteps index interpolated sigmas, which the adapter does not offer)",
                validate=self.process.validate,
            )
            timesteps = timesteps.round().to(torch.int64)
        schedule = self.process.schedule
        return schedule.steps(timesteps, sample, name="timesteps", validate=self.process.validate)

    def __repr__(self) -> str:
        return f"DiffusersAdapter({self.scheduler_name}, {self.process!r})"


# ---- reading a scheduler's config ---------------------------------------------------------


def _identify(scheduler_or_config: Any) -> tuple[str, Mapping[str, Any]]:
    """(class name, config) of a scheduler instance or a config mapping."""
    if isinstance(scheduler_or_config, Mapping):
        config = scheduler_or_config
        name = config.get("_class_name")
        if name is None:
            name = _class_from_parameters(config)
        if not isinstance(name, str):
            raise ValueError(f"a scheduler config's '_class_name' must be a string, got {name!r}")
        return name, config
    attached = getattr(scheduler_or_config, "config", None)
    if not isinstance(attached, Mapping):
        raise TypeError(
            "from_diffusers takes a diffusers scheduler or its config mapping, got "
            f"{type(scheduler_or_config).__name__}"
        )
    for cls in type(scheduler_or_config).__mro__:  # subclasses of a supported scheduler
        if _kind(cls.__name__, strict=False):
            return cls.__name__, attached
    return type(scheduler_or_config).__name__, attached


def _one_for_all(timesteps: Any, sample: torch.Tensor) -> Any:
    """A (1,) timesteps tensor for a batch of more samples: its one value, for every sample,
    as diffusers broadcasts it (``alphas_cumprod[timesteps].flatten()``, then unsqueezed)."""
    batch = sample.shape[0] if isinstance(sample, torch.Tensor) and sample.dim() else None
    if isinstance(timesteps, torch.Tensor) and timesteps.shape == (1,) and batch not in (1, None):
        return timesteps[0]
    return timesteps


def _class_from_parameters(config: Mapping[str, Any]) -> str:
    """The class of a config without ``_class_name``: ``scheduler.config`` of a scheduler
    built in code holds exactly its class's ``__init__`` parameters (plus private ``_``
    keys), so the supported class whose parameters are exactly the config's keys is it.
    Several classes with those parameters are accepted only when they add noise in the
    same form; else (none, or several forms), and without diffusers, ValueError naming the
    fix."""
    fix = (
        "pass the scheduler itself (from_diffusers(scheduler)), or a config that names its "
        "class in '_class_name' (scheduler_config.json and Scheduler.load_config have it)"
    )
    keys = {key for key in config if not key.startswith("_")}
    try:
        import diffusers
    except ImportError:
        raise ValueError(
            f"a config without '_class_name' needs diffusers to read it: {fix}"
        ) from None
    matches = []
    for name in dir(diffusers):
        if not name.endswith("Scheduler"):
            continue
        try:  # diffusers names schedulers whose optional dependencies are missing: skip
            parameters = set(inspect.signature(getattr(diffusers, name).__init__).parameters)
        except (ImportError, TypeError, ValueError):
            continue
        if parameters - {"self"} == keys:
            matches.append(name)
    kinds = {_kind(name, strict=False) for name in matches}
    if len(matches) == 1 or (len(kinds) == 1 and "" not in kinds):
        return matches[0]  # one class (the caller refuses it if unsupported), or one form
    found = f"the parameters of {matches}" if matches else "no scheduler's parameters"
    raise ValueError(
        f"a scheduler config without '_class_name' whose keys {sorted(keys)} are {found}: {fix}"
    )


def _kind(name: str, *, strict: bool = True) -> str:
    for kind, names in SUPPORTED.items():
        if name in names:
            return kind
    if not strict:
        return ""
    listed = ", ".join(n for names in SUPPORTED.values() for n in names)
    raise ValueError(f"diffusers scheduler {name!r} is not supported; supported: {listed}")


def _schedule(name: str, config: Mapping[str, Any]) -> Schedule:
    """The float64 schedule of a "vp" or "sigma" scheduler's config."""
    num_steps = int(config.get("num_train_timesteps", 1000))
    zero_snr = bool(config.get("rescale_betas_zero_snr", False))
    trained = config.get("trained_betas")
    if trained is not None:
        schedule = Schedule.from_betas(list(trained), name="trained_betas")
        schedule = schedule.rescale_zero_terminal_snr() if zero_snr else schedule
    else:
        beta_schedule = config.get("beta_schedule", "linear")
        if beta_schedule == "cosine" or beta_schedule not in schedule_names():
            allowed = [n for n in schedule_names() if n != "cosine"]
            raise ValueError(
                f"{name} with beta_schedule={beta_schedule!r} is not supported; "
                f"supported: {allowed} or trained_betas"
            )
        schedule = get_schedule(
            beta_schedule,
            num_steps,
            beta_start=_number(config, "beta_start", 1e-4),
            beta_end=_number(config, "beta_end", 0.02),
            rescale_zero_terminal_snr=zero_snr,
        )
    return schedule


def _number(config: Mapping[str, Any], key: str, default: float) -> float:
    """A number of the config, or a ValueError naming the key and its value."""
    value = config.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"scheduler config {key!r} must be a number, got {value!r}") from None
