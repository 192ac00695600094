"""Time-varying forward processes, each with the method names of ``ForwardProcess`` and its
own chain for checking: a mixture of fixed atoms, blurring (DCT), a general linear chain."""

from .base import TimeVaryingProcess
from .blurring import BlurringProcess
from .linear import LinearGaussianChain
from .mixture import MixtureProcess

__all__ = ["TimeVaryingProcess", "MixtureProcess", "BlurringProcess", "LinearGaussianChain"]
