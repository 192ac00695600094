"""The training objective around the noisy state: timestep samplers, prediction targets,
loss weightings and the keyed losses.

    samplers    timestep samplers, keyed: ``get_sampler(name, **kwargs)`` (uniform,
                stratified, logit-normal, mode, cosmap, beta, EDM's log-normal, tables,
                importance, mixtures, truncations), each with its density, CDF and
                inverse CDF; ``sample_time`` maps draws to a schedule's time
    targets     what the model predicts: epsilon, v or the sample
    weighting   per-sample loss weights (min-SNR-gamma), finite at zero terminal SNR
    loss        ``keyed_mse`` and ``keyed_x_t``: losses that regenerate e from its keys
                (also importable as ``noisejump.loss``)
"""

from .loss import LOSS_PREDICTIONS, keyed_mse, keyed_x_t, min_snr_weights
from .samplers import (
    SAMPLERS,
    TimestepSampler,
    get_sampler,
    keyed_uniform,
    keyed_uniforms,
    sample_time,
)
from .targets import PREDICTIONS, check_prediction, target
from .weighting import WEIGHTINGS, loss_weights, min_snr_weight

__all__ = [
    "LOSS_PREDICTIONS",
    "PREDICTIONS",
    "SAMPLERS",
    "WEIGHTINGS",
    "TimestepSampler",
    "check_prediction",
    "get_sampler",
    "keyed_mse",
    "keyed_uniform",
    "keyed_uniforms",
    "keyed_x_t",
    "loss_weights",
    "min_snr_weight",
    "min_snr_weights",
    "sample_time",
    "target",
]
