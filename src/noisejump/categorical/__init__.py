"""Token (categorical) diffusion: the same shortcut for tokens, tested against its chain.

With Q_k = alpha_k I + (1 - alpha_k) 1 m^T for a fixed m (absorbing: the mask; uniform:
1/K) the steps commute and Qbar_t = keep_t I + (1 - keep_t) 1 m^T, so the state of a token
after t steps is one O(1) draw (Austin et al. 2021, D3PM; Sahoo et al. 2024, MDLM).
Transition matrices without that structure are precomputed or walked.

    process    ``CategoricalProcess``: q_probs, q_sample, q_sample_loop, q_posterior_probs,
               p_posterior_probs (the model side), plan
    keep       keep probabilities from a discrete or a variance-preserving schedule, and
               MDLM's ``LogLinear``
    matrices   user-given transition matrices (dense products or the chain) and D3PM's
               ``discretized_gaussian`` kernel
    draws      keyed 52-bit uniforms from the Philox stream; inverse-CDF draws
    loss       ``mdlm_loss`` (continuous-time absorbing ELBO), ``d3pm_loss`` (L_vb + lambda L_ce)
    sampling   ``ancestral_sample``: ancestral unmasking in a stated number of steps
    verify     ``verify_categorical``: closed form against the product of the step matrices
               and the posterior against Bayes' rule, exactly; frequencies of q_sample and
               q_sample_loop against q_probs, with negative controls
"""

from .draws import TOKEN_STREAM, categorical_draw, keyed_token_uniforms
from .keep import KeepSchedule, LogLinear
from .loss import HYBRID_LAMBDA, d3pm_loss, elbo_weight, mdlm_loss
from .matrices import discretized_gaussian
from .process import KINDS, CategoricalProcess
from .sampling import ancestral_sample, sampling_grid
from .verify import CategoricalReport, verify_categorical

__all__ = [
    "HYBRID_LAMBDA",
    "KINDS",
    "TOKEN_STREAM",
    "CategoricalProcess",
    "CategoricalReport",
    "KeepSchedule",
    "LogLinear",
    "ancestral_sample",
    "categorical_draw",
    "d3pm_loss",
    "discretized_gaussian",
    "elbo_weight",
    "keyed_token_uniforms",
    "mdlm_loss",
    "sampling_grid",
    "verify_categorical",
]
