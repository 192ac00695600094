"""Which implementation runs: the Triton kernels or the torch reference.

    "auto"    CUDA tensors take the Triton kernels, CPU tensors the torch reference (default)
    "torch"   always the torch reference (for example to compare with it on a GPU)
    "triton"  always the kernels, CPU tensors included: with TRITON_INTERPRET=1 set before
              the first kernel runs (their modules are imported then), Triton's CPU
              interpreter runs them (how the CPU tests reach the kernels)

Set it with ``set_backend(name)``, for a block with ``with backend(name):``, or for a whole
process with the environment variable NOISEJUMP_BACKEND (read at each call).
"""

from __future__ import annotations

import contextlib
import os

import torch

BACKENDS = ("auto", "torch", "triton")
_choice: str | None = None


def _check(name) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    return name


def get_backend() -> str:
    """The backend in force: ``set_backend``'s, else NOISEJUMP_BACKEND, else "auto"."""
    if _choice is not None:
        return _choice
    return _check(os.environ.get("NOISEJUMP_BACKEND", "auto"))


def set_backend(name: str | None) -> None:
    """Force "torch" or "triton", or return to "auto"; None falls back to NOISEJUMP_BACKEND."""
    global _choice
    _choice = None if name is None else _check(name)


@contextlib.contextmanager
def backend(name: str):
    """``with backend("triton"): ...`` forces a backend inside the block only."""
    global _choice
    previous, _choice = _choice, _check(name)
    try:
        yield
    finally:
        _choice = previous


def use_triton(device: torch.device) -> bool:
    """True when the kernels should run for tensors on ``device``."""
    choice = get_backend()
    return choice == "triton" or (choice == "auto" and device.type == "cuda")


def math_mode(kernel, fast: bool) -> int:
    """The kernels' MATH argument (``_normal_triton``): 2 (Triton's portable functions)
    when ``kernel`` was built for Triton's CPU interpreter (TRITON_INTERPRET=1 when its
    module was imported: no libdevice, no PTX there), else 1 when ``fast``, else 0."""
    if type(kernel).__name__ == "InterpretedFunction":
        return 2
    return 1 if fast else 0
