"""The training objective around the noisy state: timestep samplers, prediction targets,
loss weightings, input perturbations and the keyed losses.

    samplers      timestep samplers, keyed: ``get_sampler(name, **kwargs)`` (uniform,
                  stratified, logit-normal, mode, cosmap, beta, EDM's log-normal, tables,
                  importance, mixtures, truncations), each with its density, CDF and
                  inverse CDF; ``sample_time`` maps draws to a schedule's time
    targets       what the model predicts: epsilon, v, the sample or the flow velocity, and
                  each target's conversion factor to epsilon-MSE
    weighting     loss weightings omega(lambda; prediction), found by name (get_weighting):
                  min-SNR-gamma, soft-min-SNR, debiased, P2, SD3's, EDM's, EDM2's learned
    perturbation  input perturbation (Ning et al. 2023) and time-dependent offset noise
                  (Kutsuna 2024), keyed like q_sample
    loss          ``keyed_mse`` and ``keyed_x_t``: losses that regenerate e from its keys
                  (also importable as ``noisejump.loss``)
    inspector     ``implied_weighting``: the weighted epsilon-MSE w(lambda) = p omega c a
                  configuration optimises (Kingma & Gao 2023), ``same_objective``
"""

from .inspector import ImpliedWeighting, implied_weighting, same_objective
from .loss import LOSS_PREDICTIONS, keyed_mse, keyed_x_t, min_snr_weights
from .perturbation import InputPerturbation, TimeDependentOffset
from .samplers import (
    SAMPLERS,
    TimestepSampler,
    get_sampler,
    keyed_uniform,
    keyed_uniforms,
    sample_time,
)
from .targets import (
    PREDICTIONS,
    check_prediction,
    check_target,
    conversion_factor,
    log_conversion_factor,
    target,
)
from .weighting import (
    WEIGHTINGS,
    LearnedUncertainty,
    Weighting,
    get_weighting,
    loss_weights,
    min_snr_weight,
    weighting_names,
)

__all__ = [
    "LOSS_PREDICTIONS",
    "PREDICTIONS",
    "SAMPLERS",
    "WEIGHTINGS",
    "ImpliedWeighting",
    "InputPerturbation",
    "LearnedUncertainty",
    "TimeDependentOffset",
    "TimestepSampler",
    "Weighting",
    "check_prediction",
    "get_sampler",
    "check_target",
    "conversion_factor",
    "get_weighting",
    "implied_weighting",
    "keyed_mse",
    "keyed_uniform",
    "keyed_uniforms",
    "keyed_x_t",
    "log_conversion_factor",
    "loss_weights",
    "min_snr_weight",
    "min_snr_weights",
    "same_objective",
    "sample_time",
    "target",
    "weighting_names",
]
