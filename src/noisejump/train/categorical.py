"""Token diffusion on the digits: ``noisejump train --process absorbing`` and ``uniform``.

    data      the bundled digits as tokens: their integer pixels 0..16, (N, 1, 8, 8) int64,
              K = 17 classes; as images, tokens / 8 - 1 (the Gaussian run's scaling, exact)
    process   absorbing: MDLM's log-linear keep probability (``LogLinear``, t in [1e-3, 1]);
              uniform: the run's discrete schedule (--schedule, --diffusion-steps) read as
              the keep probability (D3PM)
    model     ``TokenUNet``: the run's U-Net on one-hot tokens (S channels in) with x0
              logits out (its first K output channels), fed the time as 1000 t (continuous)
              or the step (discrete)
    one step  t from the run's timestep sampler, keyed per sample as the Gaussian run's
              (``noisejump.objective.sample_time``); absorbing: t = t_min + (1 - t_min) u
              for the sampler's u ("uniform" or "stratified"), float64; uniform: the
              sampler over the T steps. x_t = q_sample(x0, t, seed, keys) (keyed: stream
              2^30). Loss: ``mdlm_loss`` (absorbing), ``d3pm_loss`` with lambda = 0.001
              (uniform); the mean over the batch, times the sampler's weight
    samples   ``ancestral_sample`` in ``SAMPLE_STEPS`` steps (``--steps``)

Options that shape only the Gaussian run (--noise, --prediction, --weighting and its
parameters, --zero-terminal-snr, --shift, --input-perturbation, --time-offset; for
absorbing also --schedule, --diffusion-steps, --t-min and --t-max, and samplers other than
uniform and stratified) are refused, not ignored: a run's config says what it trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..categorical import CategoricalProcess, d3pm_loss, mdlm_loss
from ..categorical.sampling import ancestral_sample
from .data import digits_split
from .objective import TIME_SCALE, TOKENS
from .unet import UNet

#: The token processes of ``noisejump train --process`` (rows of ``objective.PROCESSES``).
PROCESSES = TOKENS
#: The digits' pixel levels 0..16: the data classes of a token run.
NUM_CLASSES = 17
#: Steps of the ancestral sampler by default (capped at T for a discrete schedule:
#: ``sampling.sampler_steps``).
SAMPLE_STEPS = 100
#: Timestep samplers a continuous-time (absorbing) run accepts: MDLM's ELBO is an
#: expectation over uniform t.
CONTINUOUS_SAMPLERS = ("uniform", "stratified")
#: Why each option a token run refuses does not apply to it.
_LOGITS = "a token model predicts the logits of x0 under the process's ELBO"
_GAUSSIAN_ONLY = {
    "noise": _LOGITS,
    "prediction": _LOGITS,
    "weighting": _LOGITS,
    "max_weight": _LOGITS,
    "zero_terminal_snr": "a token run reads the schedule's abar_t as a keep probability",
    "shift": "the shift moves a Gaussian log-SNR; a token run keeps its keep probability",
    "input_perturbation": "input perturbations add Gaussian noise, tokens have none",
    "time_offset": "offset noise is Gaussian, tokens have none",
}
_ABSORBING_ONLY = {
    "schedule": "an absorbing run uses MDLM's log-linear keep probability in continuous time",
    "diffusion_steps": "an absorbing run uses MDLM's log-linear keep probability in "
    "continuous time",
    "t_min": "MDLM's ELBO draws t uniformly on the whole [1e-3, 1]",
    "t_max": "MDLM's ELBO draws t uniformly on the whole [1e-3, 1]",
}


def load_tokens(spec: str) -> torch.Tensor:
    """The training digits as tokens (N, 1, 8, 8) int64 in [0, 16]."""
    if spec != "digits":
        raise ValueError(f"token runs train on the digits (data 'digits'), got {spec!r}")
    images = digits_split()[0]
    return images_to_tokens(images)


def images_to_tokens(images: torch.Tensor) -> torch.Tensor:
    """Digits in [-1, 1] (pixel / 8 - 1) back to their integer pixels."""
    return ((images + 1.0) * 8.0).round().to(torch.int64)


def tokens_to_images(tokens: torch.Tensor) -> torch.Tensor:
    """Tokens 0..16 as images in [-1, 1]: token / 8 - 1 (float32, exact)."""
    return tokens.to(torch.float32) / 8.0 - 1.0


def check_config(config: Any) -> None:
    """ValueError for an option that a token run does not use (module docstring)."""
    from .config import TrainConfig

    default = TrainConfig()
    refused = dict(_GAUSSIAN_ONLY)
    if config.process == "absorbing":
        refused.update(_ABSORBING_ONLY)
        if config.timestep_sampler not in CONTINUOUS_SAMPLERS:
            raise ValueError(
                f"timestep_sampler for --process absorbing (continuous t) must be one of "
                f"{CONTINUOUS_SAMPLERS}, got {config.timestep_sampler!r}"
            )
    for name, why in refused.items():
        if getattr(config, name) != getattr(default, name):
            option = "--" + name.replace("_", "-")
            raise ValueError(f"{option} does not apply to --process {config.process}: {why}")
    if config.data != "digits":
        raise ValueError(
            f"--process {config.process} trains on the digits as tokens; --data "
            f"{config.data!r} has no token form"
        )


def build_process(config: Any) -> CategoricalProcess:
    """The run's token process on its keep probability (``objective.build_schedule``)."""
    return CategoricalProcess(config.build_schedule(), NUM_CLASSES, config.process)


class TokenUNet(nn.Module):
    """x0 logits from tokens: the U-Net on one-hot tokens, S channels in and out, its
    first K output channels the logits. Tokens (B, 1, H, W) in, logits (B, 1, H, W, K)
    out; the output convolution starts at zero, so an untrained model predicts uniform
    classes."""

    def __init__(self, num_states: int, num_classes: int, **unet: Any) -> None:
        super().__init__()
        self.num_states, self.num_classes = num_states, num_classes
        self.unet = UNet(in_channels=num_states, **unet)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        one_hot = nn.functional.one_hot(x_t[:, 0], self.num_states)  # (B, H, W, S)
        logits = self.unet(one_hot.permute(0, 3, 1, 2).float(), t)  # (B, S, H, W)
        return logits[:, : self.num_classes].permute(0, 2, 3, 1)[:, None]


def build_model(config: Any, image_shape: tuple[int, int, int]) -> TokenUNet:
    channels, height, width = image_shape
    if channels != 1 or height != width:
        raise ValueError(f"token runs take (1, H, H) digits, got {image_shape}")
    attention = config.attention_resolutions
    if attention is None:
        attention = (height // 2 ** (len(config.channel_mult) - 1),)
    states = NUM_CLASSES + 1 if config.process == "absorbing" else NUM_CLASSES
    return TokenUNet(
        states,
        NUM_CLASSES,
        channels=config.channels,
        channel_mult=config.channel_mult,
        num_blocks=config.num_blocks,
        attention_resolutions=attention,
        image_size=height,
    )


def model_time(process: CategoricalProcess, t: torch.Tensor) -> torch.Tensor:
    """What the network is fed: 1000 t for continuous t, the step itself for discrete."""
    return t * TIME_SCALE if process.is_continuous else t


def step_loss(
    config: Any,
    process: CategoricalProcess,
    network: nn.Module,
    device: torch.device,
    autocast: bool,
) -> Callable[..., tuple[torch.Tensor, torch.Tensor, float]]:
    """loss(x0, t, weight, keys) -> (loss, per-sample losses, the time the noising
    finished) of one step (module docstring)."""

    def loss(x0: torch.Tensor, t: torch.Tensor, weight: torch.Tensor, keys: torch.Tensor) -> Any:
        x_t = process.q_sample(x0, t, seed=config.seed, keys=keys.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        noised = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = network(x_t, model_time(process, t))
        logits = logits.float()
        if process.kind == "absorbing":
            per_sample = mdlm_loss(process, logits, x0, x_t, t)
        else:
            per_sample = d3pm_loss(process, logits, x0, x_t, t)
        return (weight.to(device) * per_sample).mean(), per_sample, noised

    return loss


def sample_images(
    model: nn.Module,
    process: CategoricalProcess,
    shape: tuple[int, ...],
    *,
    seed: int,
    steps: int,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Digits (``shape`` = (N, 1, H, W)) in [-1, 1] by ancestral sampling of the tokens
    in ``steps`` steps, with a CPU generator seeded by ``seed``."""
    generator = torch.Generator().manual_seed(seed)

    def x0_logits(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x_t, model_time(process, t))

    tokens = ancestral_sample(
        x0_logits,
        process,
        tuple(shape),
        steps=steps,
        generator=generator,
        device=device,
    )
    return tokens_to_images(tokens)
