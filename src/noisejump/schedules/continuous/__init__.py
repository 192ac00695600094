"""Continuous-time forward processes, used through ``ForwardProcess`` with float t per sample.

VPSDE, SubVPSDE   Song et al. 2021 (arXiv 2011.13456), t in [0, 1]
EDM               Karras et al. 2022 (arXiv 2206.00364), the time is sigma in (0, inf)
FlowMatching      x_t = (1 - t) x0 + t e (Liu et al. 2022; Esser et al. 2024)
LogSNR            any strictly decreasing log-SNR function (Kingma et al. 2021)
Shifted           any of them shifted in log-SNR, ``schedule.shifted(s)``
"""

from .base import ContinuousSchedule
from .edm import EDM
from .flow import FlowMatching, resolution_shift
from .log_snr import LogSNR
from .shifted import Shifted
from .vp import VPSDE, SubVPSDE

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
