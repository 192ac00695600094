"""The configuration of a training run, and the model and process it describes.

Units: ``steps`` are optimiser steps; ``batch_size`` is the global batch (all ranks
together); ``ema_halflife_ksamples`` is the EMA half-life in thousands of training samples
(as EDM's ``ema_halflife_kimg``); ``lr`` is AdamW's learning rate after a linear warm-up of
``warmup_steps``.

Ranges (``validate``): counts are integers (steps, batch, checkpoints >= 1; warm-up, final
samples >= 0), ``seed`` in [0, 2^32), ``lr`` in (0, 1], and the other real numbers finite
and > 0.

``process`` names what is trained (``objective.PROCESSES``, the one table of ``noisejump
train --process``); it, the timestep sampler, the shift, the weighting and the input
perturbation with their parameters are stored in every checkpoint's config, so a resumed
run refuses another objective (``train/objective.py`` builds them).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch

from ..noise import available as noise_names
from ..noise import get_noise
from ..objective import PREDICTIONS, TimestepSampler, check_prediction
from ..processes import ForwardProcess
from ..schedules import schedule_names
from ..schedules.shift import check_shift
from . import categorical as tokens
from . import objective
from .objective import PROCESSES, TIMESTEP_SAMPLERS, TRAIN_WEIGHTINGS
from .unet import UNet

__all__ = ["PROCESSES", "TIMESTEP_SAMPLERS", "TRAIN_WEIGHTINGS", "TrainConfig"]
#: The largest learning rate ``validate`` accepts; the seed is below 2^32.
MAX_LR = 1.0
SEED_LIMIT = 2**32


def _check_int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a positive integer" if low == 1 else f"an integer >= {low}"
        raise ValueError(f"{name} must be {kind}, got {value!r}")


@dataclass
class TrainConfig:
    data: str = "digits"
    image_size: int | None = None
    process: str = "ddpm"
    schedule: str = "linear"
    diffusion_steps: int = 1000
    zero_terminal_snr: bool = False
    noise: str = "isotropic"
    prediction: str = "epsilon"
    weighting: str = "uniform"
    snr_gamma: float = 5.0
    timestep_sampler: str = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    mode_scale: float = 1.29
    beta_a: float = 1.0
    beta_b: float = 1.0
    p_mean: float = -1.2
    p_std: float = 1.2
    t_min: float | None = None
    t_max: float | None = None
    shift: float = 1.0
    p2_gamma: float = 1.0
    p2_k: float = 1.0
    sigma_data: float = 0.5
    max_weight: float | None = None
    input_perturbation: float = 0.0
    time_offset: float = 0.0
    channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2)
    num_blocks: int = 1
    attention_resolutions: tuple[int, ...] | None = None
    steps: int = 4000
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 100
    ema_halflife_ksamples: float = 25.0
    grad_clip: float = 1.0
    seed: int = 0
    device: str = "cpu"
    bf16: bool = True
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    final_samples: int = 64

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown training config key(s) {sorted(unknown)}")
        values = dict(values)
        for key in ("channel_mult", "attention_resolutions"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def validate(self) -> None:
        """Raise ValueError naming the first bad field, its value and what is allowed."""
        if self.process not in PROCESSES:
            raise ValueError(f"process must be one of {list(PROCESSES)}, got {self.process!r}")
        if self.process in tokens.PROCESSES:
            tokens.check_config(self)
        if self.schedule not in schedule_names():
            raise ValueError(f"schedule must be one of {schedule_names()}, got {self.schedule!r}")
        if self.noise not in noise_names():
            raise ValueError(f"noise must be one of {noise_names()}, got {self.noise!r}")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {self.prediction!r}")
        objective.check_objective(self, TrainConfig())
        for name in (
            "diffusion_steps",
            "channels",
            "num_blocks",
            "steps",
            "batch_size",
            "checkpoint_every",
            "keep_checkpoints",
        ):
            _check_int(name, getattr(self, name), 1)
        for name in ("warmup_steps", "final_samples", "seed"):
            _check_int(name, getattr(self, name), 0)
        if self.seed >= SEED_LIMIT:
            raise ValueError(f"seed must be an integer in [0, 2^32), got {self.seed!r}")
        if self.image_size is not None:
            _check_int("image_size", self.image_size, 1)
        for name in ("lr", "snr_gamma", "ema_halflife_ksamples", "grad_clip"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if self.lr > MAX_LR:
            raise ValueError(
                f"lr must be in (0, {MAX_LR:g}] (AdamW moves each weight by about lr per "
                f"step), got {self.lr!r}"
            )
        if not self.channel_mult or not all(
            isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in self.channel_mult
        ):
            raise ValueError(f"channel_mult must be positive integers, got {self.channel_mult}")
        check_shift(self.shift)
        schedule = self.build_schedule()
        if self.process in tokens.PROCESSES:  # its loss is its ELBO (tokens.check_config)
            objective.check_sampler_space(self.build_timestep_sampler(), self)
            return
        check_prediction(self.prediction, schedule)
        objective.check_sampler_space(self.build_timestep_sampler(), self)
        self.build_weighting().check_schedule(schedule, self.prediction)
        objective.build_perturbation(self, schedule)

    def build_schedule(self):
        """The run's schedule: discrete (ddpm) or continuous, shifted by ``shift``."""
        return objective.build_schedule(self)

    def build_process(self) -> ForwardProcess | tokens.CategoricalProcess:
        if self.process in tokens.PROCESSES:
            return tokens.build_process(self)
        return ForwardProcess(self.build_schedule(), get_noise(self.noise))

    def build_timestep_sampler(self) -> TimestepSampler:
        """The run's timestep sampler; importance sampling is over the run's steps."""
        return objective.build_sampler(self)

    def build_weighting(self):
        """The run's loss weighting, with its parameters."""
        return objective.build_weighting(self)

    def build_model(self, image_shape: tuple[int, int, int]) -> torch.nn.Module:
        """The U-Net, fed the run's time (``objective.wrap_model``: the step, 1000 t, or
        EDM's preconditioning); a token run's one-hot ``TokenUNet``."""
        if self.process in tokens.PROCESSES:
            return tokens.build_model(self, image_shape)
        return objective.wrap_model(self, self._build_unet(image_shape))

    def _build_unet(self, image_shape: tuple[int, int, int]) -> UNet:
        channels, height, width = image_shape
        if height != width:
            raise ValueError(f"images must be square, got {height}x{width}")
        attention = self.attention_resolutions
        if attention is None:  # the lowest resolution of the U-Net
            attention = (height // 2 ** (len(self.channel_mult) - 1),)
        return UNet(
            in_channels=channels,
            channels=self.channels,
            channel_mult=self.channel_mult,
            num_blocks=self.num_blocks,
            attention_resolutions=attention,
            image_size=height,
        )


#: Keys a resumed run may change: they schedule the run, they do not change its maths.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "keep_checkpoints", "final_samples", "device")


def check_resume_config(saved: dict, config: TrainConfig, path) -> None:
    """ValueError listing every key where ``config`` differs from a checkpoint's config."""
    current = config.to_json()
    saved = TrainConfig.from_json(saved).to_json()
    differ = [k for k in current if k not in RESUMABLE_CHANGES and current[k] != saved[k]]
    if differ:
        details = ", ".join(f"{k}: checkpoint {saved[k]!r} vs now {current[k]!r}" for k in differ)
        raise ValueError(
            f"checkpoint {str(path)!r} was written by another config ({details}); resume with "
            "the same options or start a new run folder"
        )
