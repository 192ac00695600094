"""Prediction targets: what the model regresses onto.

Notation: x_t = signal_t x0 + sigma_t e (``noisejump.schedules``).

    prediction "epsilon"  target e (the structured noise L e for correlated families)
    prediction "v"        target v = signal_t e - sigma_t x0 (Salimans & Ho 2022, sec. 4)
    prediction "sample"   target x0

e-prediction on a zero-terminal-SNR schedule is refused (``check_prediction``): x0 =
(x_t - sigma e) / signal divides by signal_T = 0 (Lin et al. 2023, arXiv 2305.08891).
"""

from __future__ import annotations

from typing import Any

import torch

from ..processes.forward import PREDICTIONS

__all__ = ["PREDICTIONS", "check_prediction", "target"]


def check_prediction(prediction: str, schedule: Any) -> None:
    """Refuse an unknown target, and epsilon on a zero-terminal-SNR schedule."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if prediction == "epsilon" and getattr(schedule, "has_zero_terminal_snr", False):
        raise ValueError(
            "prediction 'epsilon' is ill-posed on a zero-terminal-SNR schedule: at the last "
            "step signal_T = 0 and x0 = (x_t - sigma_T e) / signal_T divides by zero "
            "(Lin et al. 2023); use --prediction v"
        )


def target(
    process: Any, x0: torch.Tensor, noise: torch.Tensor, t: Any, prediction: str
) -> torch.Tensor:
    """The regression target of ``prediction`` for (x0, noise, t)."""
    if prediction == "epsilon":
        return noise
    if prediction == "v":
        return process.v_target(x0, noise, t)
    return x0
