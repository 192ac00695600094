"""Forward processes: one set of method names (q_sample, q_sample_loop, q_posterior, plan).

forward        ``ForwardProcess``: scalar transitions with a fixed noise covariance S
               (isotropic or any ``noisejump.noise`` family), discrete or continuous time
plan           ``Plan``: which path a request takes (closed form, increments, per mode,
               mixture, dense, chain), why, and its cost
per_element    per-element steps with correlated noise: the chain's joint law, exactly
time_varying   what the time-varying processes share (``TimeVaryingProcess``)
mixture        noise that changes over the steps: a mixture of fixed atoms
blurring       blurring diffusion, per DCT mode
linear         any linear Gaussian chain (dense for small d, else the chain)
"""

from .blurring import BlurringProcess
from .forward import PREDICTIONS, ForwardProcess
from .linear import LinearGaussianChain
from .mixture import MixtureProcess
from .plan import Plan
from .time_varying import TimeVaryingProcess

__all__ = [
    "PREDICTIONS",
    "BlurringProcess",
    "ForwardProcess",
    "LinearGaussianChain",
    "MixtureProcess",
    "Plan",
    "TimeVaryingProcess",
]
