"""Fused kernels (Triton) with their torch references, and the switch between them.

    q_sample_keyed    x_t (and e) in one pass with keyed noise; torch custom op with backward
    mse.keyed_mse_fused   the MSE of any target, regenerating e from its keys (used by
                          ``noisejump.loss.keyed_mse``)
    set_backend, backend, get_backend   "auto" (CUDA -> kernel), "torch", "triton"

triton is imported only when a kernel runs; nothing is queried at import time.
"""

from .dispatch import BACKENDS, backend, get_backend, set_backend
from .q_sample import fused_noise_scale, q_sample_keyed, q_sample_reference

__all__ = [
    "BACKENDS",
    "backend",
    "get_backend",
    "set_backend",
    "fused_noise_scale",
    "q_sample_keyed",
    "q_sample_reference",
]
