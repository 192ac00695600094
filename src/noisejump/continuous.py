"""The continuous-time schedules under their short import path.

Their home is ``noisejump.schedules.continuous``; ``from noisejump.continuous import EDM``
keeps working and is the path the documentation shows.
"""

from .schedules.continuous import (
    EDM,
    VPSDE,
    ContinuousSchedule,
    FlowMatching,
    LogSNR,
    Shifted,
    SubVPSDE,
    resolution_shift,
)

__all__ = [
    "EDM",
    "ContinuousSchedule",
    "FlowMatching",
    "LogSNR",
    "Shifted",
    "SubVPSDE",
    "VPSDE",
    "resolution_shift",
]
