"""Noise schedules: what ``ForwardProcess`` asks of time, in one place.

    discrete.py    ``Schedule``: float64 tables of T steps (betas, alphas_cumprod), named
                   schedules as in diffusers, respacing, zero terminal SNR
    spacing.py     which n of T steps a sampler keeps (diffusers' and guided-diffusion's
                   spacings, ``Schedule.respace(n, spacing=...)``)
    shift.py       one shift for every schedule, in log-SNR (``schedule.shifted(s)``), the
                   rules that choose s (resolution, Flux's mu, Open-Sora) and
                   ``stretch_to_terminal`` for inference grids
    sigmas.py      ``DiscreteSigmas``: a discrete schedule seen as x0 + sigma_t e
    continuous/    float time per sample: VP and sub-VP SDEs, EDM, flow matching, a
                   user-given log-SNR (also importable as ``noisejump.continuous``)

Every schedule answers the protocol ``ScheduleLike``: ``steps`` (validate and place t),
``marginal`` (signal_t, sigma_t) and ``transition`` (alpha_{t|s}, sigma^2_{t|s}); and,
for training, ``shifted(s)`` and ``time_of(x, space)`` (a timestep sampler's draws as the
schedule's time).
"""

from .discrete import Schedule, ScheduleLike, get_schedule, schedule_names
from .shift import (
    dynamic_shift_mu,
    open_sora_shift,
    resolution_shift,
    shift_from_mu,
    stretch_to_terminal,
)
from .sigmas import DiscreteSigmas
from .spacing import SPACINGS, spaced_steps

__all__ = [
    "SPACINGS",
    "DiscreteSigmas",
    "Schedule",
    "ScheduleLike",
    "dynamic_shift_mu",
    "get_schedule",
    "open_sora_shift",
    "resolution_shift",
    "schedule_names",
    "shift_from_mu",
    "spaced_steps",
    "stretch_to_terminal",
]
