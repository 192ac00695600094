"""The training objective: what the model predicts and how each step's loss is weighted.

Notation: x_t = signal_t x0 + sigma_t e, snr_t = signal_t^2 / sigma_t^2 (schedules.py).

    prediction "epsilon"  target e (the structured noise L e for correlated families)
    prediction "v"        target v = signal_t e - sigma_t x0 (Salimans & Ho 2022, sec. 4)
    prediction "sample"   target x0

Min-SNR-gamma weights (Hang et al. 2023, arXiv 2303.09556, eq. 8 and section 3.4), the
weight for the chosen target:

    epsilon  min(1, gamma / snr)      v  min(snr, gamma) / (snr + 1)      x0  min(snr, gamma)

Each is finite at snr = 0 (zero terminal SNR, Lin et al. 2023): min(1, gamma / 0) = 1 and
min(0, gamma) / 1 = 0, computed without 0/0. e-prediction on a zero-terminal-SNR schedule
is refused anyway (``check_prediction``): x0 = (x_t - sigma e) / signal divides by 0.
"""

from __future__ import annotations

import torch

from ..process import PREDICTIONS

WEIGHTINGS = ("uniform", "min_snr")


def check_prediction(prediction: str, schedule) -> None:
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if prediction == "epsilon" and schedule.has_zero_terminal_snr:
        raise ValueError(
            "prediction 'epsilon' is ill-posed on a zero-terminal-SNR schedule: at the last "
            "step signal_T = 0 and x0 = (x_t - sigma_T e) / signal_T divides by zero "
            "(Lin et al. 2023); use --prediction v"
        )


def target(process, x0, noise, t, prediction: str) -> torch.Tensor:
    """The regression target of ``prediction`` for (x0, noise, t)."""
    if prediction == "epsilon":
        return noise
    if prediction == "v":
        return process.v_target(x0, noise, t)
    return x0


def min_snr_weight(snr: torch.Tensor, gamma: float, prediction: str) -> torch.Tensor:
    """Min-SNR-gamma weight of each snr (float64 in, float64 out); never NaN, snr >= 0."""
    clipped = torch.clamp(snr, max=gamma)  # min(snr, gamma)
    if prediction == "epsilon":
        # min(1, gamma / snr) = min(snr, gamma) / snr, and 1 at snr = 0.
        return torch.where(snr > 0, clipped / snr.clamp(min=1e-300), torch.ones_like(snr))
    if prediction == "v":
        return clipped / (snr + 1)
    return clipped


def loss_weights(schedule, t: torch.Tensor, weighting: str, gamma: float, prediction: str):
    """Per-sample loss weights (float32, t's shape) for ``weighting`` at steps ``t``."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if weighting == "uniform":
        return torch.ones(t.shape, dtype=torch.float32)
    return min_snr_weight(schedule.snr[t.cpu()], gamma, prediction).to(torch.float32)
