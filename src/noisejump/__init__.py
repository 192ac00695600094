"""noisejump: the forward (noising) process of diffusion models, exact and in O(1).

x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) e (Ho et al. 2020, eq. 4), for isotropic and
correlated Gaussian noise, tested against its own step-by-step chain.
"""

from .processes import (
    PREDICTIONS,
    BlurringProcess,
    ForwardProcess,
    LinearGaussianChain,
    MixtureProcess,
    Plan,
)
from .schedules import Schedule, get_schedule, schedule_names
from .verify import verify

__version__ = "0.1.0"

__all__ = [
    "PREDICTIONS",
    "BlurringProcess",
    "ForwardProcess",
    "LinearGaussianChain",
    "MixtureProcess",
    "Plan",
    "Schedule",
    "get_schedule",
    "schedule_names",
    "verify",
    "__version__",
]
