"""Noise schedules: what ``ForwardProcess`` asks of time, in one place.

    discrete.py    ``Schedule``: float64 tables of T steps (betas, alphas_cumprod), named
                   schedules as in diffusers, respacing, zero terminal SNR
    spacing.py     which n of T steps a sampler keeps (diffusers' and guided-diffusion's
                   spacings, ``Schedule.respace(n, spacing=...)``)
    sigmas.py      ``DiscreteSigmas``: a discrete schedule seen as x0 + sigma_t e
    continuous/    float time per sample: VP and sub-VP SDEs, EDM, flow matching, a
                   user-given log-SNR (also importable as ``noisejump.continuous``)

Every schedule answers the protocol ``ScheduleLike``: ``steps`` (validate and place t),
``marginal`` (signal_t, sigma_t) and ``transition`` (alpha_{t|s}, sigma^2_{t|s}).
"""

from .discrete import Schedule, ScheduleLike, get_schedule, schedule_names
from .sigmas import DiscreteSigmas
from .spacing import SPACINGS, spaced_steps

__all__ = [
    "SPACINGS",
    "DiscreteSigmas",
    "Schedule",
    "ScheduleLike",
    "get_schedule",
    "schedule_names",
    "spaced_steps",
]
