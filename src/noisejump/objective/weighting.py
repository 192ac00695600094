"""Per-sample loss weightings, as functions of the SNR and the prediction target.

Notation: snr_t = signal_t^2 / sigma_t^2 (``noisejump.schedules``).

Min-SNR-gamma (Hang et al. 2023, arXiv 2303.09556, eq. 8 and section 3.4), the weight for
the chosen target:

    epsilon  min(1, gamma / snr)      v  min(snr, gamma) / (snr + 1)      x0  min(snr, gamma)

Each is finite at snr = 0 (zero terminal SNR, Lin et al. 2023): min(1, gamma / 0) = 1 and
min(0, gamma) / 1 = 0, computed without 0/0.
"""

from __future__ import annotations

from typing import Any

import torch

from .._numpy import from_numpy
from .targets import PREDICTIONS

__all__ = ["WEIGHTINGS", "check_gamma", "loss_weights", "min_snr_weight"]

WEIGHTINGS = ("uniform", "min_snr")


def check_gamma(gamma: Any) -> float:
    """gamma of min-SNR-gamma: a positive number."""
    gamma = from_numpy(gamma)
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not gamma > 0:
        raise ValueError(f"min_snr_gamma must be a positive number, got {gamma!r}")
    return float(gamma)


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction: str) -> torch.Tensor:
    """Min-SNR-gamma weight of each snr (float64 in, float64 out); never NaN, snr >= 0."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    clipped = torch.clamp(snr, max=gamma)  # min(snr, gamma)
    if prediction == "epsilon":
        # min(1, gamma / snr) = min(snr, gamma) / snr, and 1 at snr = 0.
        return torch.where(snr > 0, clipped / snr.clamp(min=1e-300), torch.ones_like(snr))
    if prediction == "v":
        return clipped / (snr + 1)
    return clipped


def loss_weights(
    schedule: Any, t: torch.Tensor, weighting: str, gamma: float, prediction: str
) -> torch.Tensor:
    """Per-sample loss weights (float32, t's shape) for ``weighting`` at steps ``t``."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if weighting == "uniform":
        return torch.ones(t.shape, dtype=torch.float32)
    return min_snr_weight(schedule.snr[t.cpu()], gamma, prediction).to(torch.float32)
