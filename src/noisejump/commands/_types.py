"""argparse value types shared by the subcommands."""

from __future__ import annotations

import argparse
import math

import torch

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def step(text: str) -> int:
    try:
        return non_negative_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"steps are >= 0, got {text}") from None


def seed(text: str) -> int:
    """An integer seed in [0, 2^32)."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"seeds are integers in [0, 2^32), got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite float > 0 (``inf`` and ``nan`` are refused here, before any work)."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def device(text: str) -> torch.device:
    try:
        value = torch.device(text)
    except RuntimeError:  # torch's message lists twenty device types
        value = None
    if value is None or value.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"device must be cpu or cuda[:N], got {text!r}")
    if value.type == "cuda" and not torch.cuda.is_available():
        build = "" if torch.version.cuda else f" (PyTorch {torch.__version__} is a CPU-only build)"
        raise argparse.ArgumentTypeError(f"{text} requested but no CUDA device is visible{build}")
    if value.type == "cuda" and (value.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(
            f"{text} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return value
