"""The weight formula as the opaque custom op ``noisejump::loss_weight``, which
``Weighting.weights`` calls while torch.compile traces: inductor would evaluate exp, log
and logaddexp in its own way, so compiled weights would differ from eager ones in the
last bits. Through the op they are the eager ones, bitwise.
"""

# No "from __future__ import annotations": torch.library reads the op's annotations as types.
import torch

from .base import _CLASSES


@torch.library.custom_op("noisejump::loss_weight", mutates_args=())
def loss_weight_op(
    signal: torch.Tensor, sigma: torch.Tensor, name: str, parameters: list[float], prediction: str
) -> torch.Tensor:
    """float32 weights of the registered weighting ``name`` built with ``parameters``."""
    weighting = _CLASSES[name](*parameters)
    return weighting._weights(signal, sigma, prediction)


@loss_weight_op.register_fake
def _(
    signal: torch.Tensor, sigma: torch.Tensor, name: str, parameters: list[float], prediction: str
) -> torch.Tensor:
    return torch.empty_like(signal, dtype=torch.float32)
