"""argparse value types shared by the subcommands, and the bounds of the size options.

Each size option is range-checked at parse time against one of the bounds below, and each
``--help`` states its own. They lie far above what the commands are for and low enough
that a slip of the keyboard (``--channels 100000``) is an argument error, not an
allocation of terabytes that ends in a traceback or the kernel's out-of-memory killer. A
size within them can still exceed a machine's memory: the command then ends with one line
(``noisejump.cli``), not a traceback.
"""

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


#: Pixels per side: ``train --image-size`` and ``--attention-resolutions``, ``show --size``.
MAX_IMAGE_SIDE = 1024
#: ``train --channels``, the U-Net's width at its first level (Stable Diffusion's: 320).
MAX_CHANNELS = 1024
#: ``train --channel-mult``, each level's width over the first level's.
MAX_CHANNEL_MULT = 16
#: ``train --num-blocks``, residual blocks per level.
MAX_BLOCKS = 16
#: T, the steps of a schedule: ``--diffusion-steps`` of train, show and schedules.
MAX_DIFFUSION_STEPS = 100_000
#: Samples drawn or trained on at once: ``train --batch-size`` and ``--final-samples``,
#: ``sample`` and ``evaluate --num``, ``verify --n``, ``bench --batch``.
MAX_SAMPLES = 65_536
#: ``bench``: elements of the whole tensor, batch x shape (4 GiB in float32).
MAX_ELEMENTS = 2**30


def int_in(low: int, high: int):
    """An argparse type: an integer in [low, high], refused with both bounds named."""

    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in [{low}, {high}], got {text}")
        return value

    parse.__name__ = "integer"  # argparse names the type: "invalid integer value: 'x'"
    return parse


image_side = int_in(1, MAX_IMAGE_SIDE)
channels = int_in(1, MAX_CHANNELS)
channel_mult = int_in(1, MAX_CHANNEL_MULT)
blocks = int_in(1, MAX_BLOCKS)
diffusion_steps = int_in(1, MAX_DIFFUSION_STEPS)
samples = int_in(1, MAX_SAMPLES)
samples_or_none = int_in(0, MAX_SAMPLES)


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
