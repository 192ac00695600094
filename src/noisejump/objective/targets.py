"""Prediction targets: what the model regresses onto, and what each costs in epsilon-MSE.

Notation: x_t = signal_t x0 + sigma_t e (``noisejump.schedules``), lambda = log-SNR =
2 log(signal_t / sigma_t).

    prediction "epsilon"        target e (the structured noise L e for correlated families)
    prediction "v"              target v = signal_t e - sigma_t x0 (Salimans & Ho 2022, sec. 4)
    prediction "sample"         target x0
    prediction "flow_velocity"  target u = e - x0, the derivative of flow matching's
                                x_t = (1 - t) x0 + t e (Lipman et al. 2022; Liu et al. 2022);
                                only for flow-matching schedules

Conversion factors (Kingma & Gao 2023, arXiv 2303.00848, section 2 and appendix D): an
error in a target is a fixed multiple of the error in epsilon it implies, so
||target - target_hat||^2 = c(lambda) ||e - e_hat||^2 with

    epsilon        c = 1
    sample         c = e^-lambda                (x0 = (x_t - sigma e) / signal)
    v              c = 1 + e^-lambda            (variance preserving: signal^2 + sigma^2 = 1;
                                                 any family: (signal^2 + sigma^2)^2 / signal^2)
    flow_velocity  c = (1 + e^(-lambda/2))^2    (u = e - x0; any family)

A weighting omega of the loss in one target is the weighting omega c_target / c_other in
another, and the weighted epsilon-MSE it optimises is omega c (``noisejump.objective
.weighting``). e-prediction on a zero-terminal-SNR schedule is refused
(``check_prediction``): x0 = (x_t - sigma e) / signal divides by signal_T = 0 (Lin et al.
2023, arXiv 2305.08891).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..processes.forward import PREDICTIONS

__all__ = [
    "PREDICTIONS",
    "check_prediction",
    "check_target",
    "conversion_factor",
    "log_conversion_factor",
    "target",
]

F64 = torch.float64


def check_target(prediction: Any, schedule: Any) -> None:
    """Refuse an unknown target, and flow_velocity on a schedule that is not flow matching."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    if prediction == "flow_velocity" and not getattr(schedule, "is_flow", False):
        raise ValueError(
            f"prediction 'flow_velocity' (u = e - x0) is the target of flow matching's "
            f"x_t = (1 - t) x0 + t e; {schedule!r} is not a flow-matching schedule. Use "
            "prediction 'v' (signal_t e - sigma_t x0) or FlowMatching()"
        )


def check_prediction(prediction: str, schedule: Any) -> None:
    """Refuse an unknown target, flow_velocity off flow matching, and epsilon on a
    zero-terminal-SNR schedule."""
    check_target(prediction, schedule)
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
    if prediction == "flow_velocity":
        return process.flow_velocity(x0, noise)
    return x0


def log_conversion_factor(prediction: str, lam: torch.Tensor) -> torch.Tensor:
    """log c(lambda) of the module docstring, float64, for a tensor of log-SNRs ``lam``
    (v: the variance-preserving factor). Finite for finite lambda; at lambda = +-inf the
    limits (0 or +inf), never NaN."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    lam = torch.as_tensor(lam, dtype=F64)
    if prediction == "epsilon":
        return torch.zeros_like(lam)
    if prediction == "sample":
        return -lam
    if prediction == "v":
        return F.softplus(-lam)  # log(1 + e^-lambda)
    return 2.0 * F.softplus(-0.5 * lam)  # 2 log(1 + e^(-lambda/2))


def conversion_factor(prediction: str, lam: torch.Tensor) -> torch.Tensor:
    """c(lambda) = ||target error||^2 / ||epsilon error||^2 (module docstring), float64."""
    return torch.exp(log_conversion_factor(prediction, lam))


def log_conversion_exact(
    prediction: str, log_signal: torch.Tensor, log_sigma: torch.Tensor
) -> torch.Tensor:
    """log c from a family's own (log signal, log sigma): the same as
    ``log_conversion_factor`` except for v off variance preserving, where
    c = (signal^2 + sigma^2)^2 / signal^2 (v = signal e - sigma x0, x0 = (x_t - sigma e) /
    signal). Finite entries only."""
    if prediction == "v":
        return 2.0 * torch.logaddexp(2.0 * log_signal, 2.0 * log_sigma) - 2.0 * log_signal
    return log_conversion_factor(prediction, 2.0 * (log_signal - log_sigma))
