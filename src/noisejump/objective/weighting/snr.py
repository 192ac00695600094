"""Weightings written as functions of the SNR: uniform, min-SNR-gamma, soft-min-SNR,
debiased estimation and P2.

Notation: SNR = e^lambda = signal_t^2 / sigma_t^2. Each formula is the one its source
gives for its native target (``base``); the table of docs/weightings.md has every target.

    uniform       1 in the predicted target
    min_snr       sample: min(SNR, gamma)                 Hang et al. 2023, arXiv 2303.09556
    soft_min_snr  sample: gamma SNR / (SNR + gamma)       Crowson et al. 2024, arXiv 2401.11605
    debiased      epsilon: 1 / sqrt(SNR)                  Yu et al., arXiv 2310.08442
    p2            epsilon: 1 / (k + SNR)^gamma            Choi et al. 2022, arXiv 2204.00227
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ...noise.base import check_number
from .base import Weighting

__all__ = ["Debiased", "MinSNR", "P2", "SoftMinSNR", "Uniform"]

Asymptotes = tuple[tuple[float, float], tuple[float, float]]


class Uniform(Weighting):
    """omega = 1: the plain MSE of whichever target is predicted (no weighting).

    Limits: 1 at lambda = +inf and at lambda = -inf, every target.
    """

    name = "uniform"

    def limits(self, prediction: str) -> tuple[float, float]:
        super().limits(prediction)  # checks the name
        one = min(1.0, self.max_weight)
        return one, one

    def _log_weight(self, lam: torch.Tensor, prediction: str) -> torch.Tensor:
        return torch.zeros_like(lam)

    def _log_weight_family(
        self, log_signal: torch.Tensor, log_sigma: torch.Tensor, prediction: str
    ) -> torch.Tensor:
        return self._log_weight(log_signal, prediction)

    def asymptotes(self) -> Asymptotes:
        return (1.0, 0.0), (1.0, 0.0)


class _ClipAtGamma(Weighting):
    """An x0-MSE weight that is SNR at low SNR and gamma at high SNR (min-SNR, soft-min)."""

    native = "sample"

    def __init__(self, gamma: float = 5.0, max_weight: float = math.inf) -> None:
        super().__init__(max_weight)
        self.gamma = check_number(gamma, "gamma", self.name, low=0.0, open_low=True)

    @property
    def parameters(self) -> dict[str, float]:
        return {"gamma": self.gamma, "max_weight": self.max_weight}

    def asymptotes(self) -> Asymptotes:
        return (self.gamma, 0.0), (1.0, 1.0)


class MinSNR(_ClipAtGamma):
    """Min-SNR-gamma (Hang et al. 2023, arXiv 2303.09556, section 3.4): the x0-MSE
    weight min(SNR, gamma), so in each target

        epsilon  min(1, gamma / SNR)         v  min(SNR, gamma) / (SNR + 1)
        sample   min(SNR, gamma)             flow_velocity  min(SNR, gamma) / (sqrt(SNR) + 1)^2

    Limits (lambda = +inf, -inf): epsilon (0, 1); sample (gamma, 0); v (0, 0);
    flow_velocity (0, 0). Finite everywhere, zero terminal SNR included.

    Args:
        gamma: the clip, a finite number > 0 (5 in the paper).
        max_weight: an optional cap (never needed: the weight is bounded).
    """

    name = "min_snr"

    def _log_native(self, lam: torch.Tensor) -> torch.Tensor:
        return lam.clamp(max=math.log(self.gamma))  # log min(SNR, gamma)


class SoftMinSNR(_ClipAtGamma):
    """Soft-min-SNR (Crowson et al. 2024, HDiT, arXiv 2401.11605; k-diffusion's
    "soft-min-snr" loss weighting): the harmonic soft minimum of SNR and gamma as the
    x0-MSE weight,

        sample  1 / (1 / SNR + 1 / gamma) = gamma SNR / (SNR + gamma)
        epsilon gamma / (SNR + gamma)

    k-diffusion's (sigma sigma_data)^2 / (sigma^2 + sigma_data^2)^2 on its F-target is
    this with gamma = 1 / sigma_data^2 (x0-MSE weight 1 / (sigma^2 + sigma_data^2)).

    Limits (lambda = +inf, -inf): epsilon (0, 1); sample (gamma, 0); v (0, 0);
    flow_velocity (0, 0). Finite everywhere.

    Args:
        gamma: a finite number > 0 (4 = 1 / 0.5^2 for sigma_data = 0.5).
        max_weight: an optional cap (never needed).
    """

    name = "soft_min_snr"

    def _log_native(self, lam: torch.Tensor) -> torch.Tensor:
        log_gamma = math.log(self.gamma)
        return log_gamma + lam - torch.logaddexp(lam, torch.full_like(lam, log_gamma))


class Debiased(Weighting):
    """Debiased estimation (Yu et al., "Debias the training of diffusion models", arXiv
    2310.08442; kohya-ss's ``apply_debiased_estimation``): the epsilon-MSE weight
    1 / sqrt(SNR) = e^(-lambda/2), in each target

        epsilon e^(-lambda/2)       sample e^(lambda/2)
        v 1 / (2 cosh(lambda/2))    flow_velocity 1 / (2 cosh(lambda/4))^2

    kohya-ss's ``--debiased_estimation_loss`` caps SNR at 1000 and uses 1 / (SNR + 1) for v,
    which is not this weight carried to v.

    Limits (lambda = +inf, -inf): epsilon (0, inf): diverges at zero SNR; sample (inf, 0):
    diverges without noise; v (0, 0); flow_velocity (0, 0). A schedule that reaches a
    divergent end (zero terminal SNR for epsilon) is refused unless max_weight is given.

    Args:
        max_weight: caps omega, in (0, inf] (inf: no cap).
    """

    name = "debiased"
    native = "epsilon"

    def _log_native(self, lam: torch.Tensor) -> torch.Tensor:
        return -0.5 * lam

    def asymptotes(self) -> Asymptotes:
        return (1.0, -0.5), (1.0, -0.5)


class P2(Weighting):
    """Perception-prioritized weighting (Choi et al. 2022, arXiv 2204.00227): the
    epsilon-MSE weight 1 / (k + SNR)^gamma, which down-weights the nearly clean steps.

    Limits (lambda = +inf, -inf): epsilon (0, k^-gamma) (1 at +inf for gamma = 0);
    sample: (inf, 0) for gamma < 1, (1, 0) for gamma = 1, (0, 0) for gamma > 1;
    v and flow_velocity (0, 0) (1 and 0 for gamma = 0).

    Args:
        gamma: the exponent, a finite number >= 0 (0.5 or 1 in the paper; 0 is uniform).
        k: the offset, a finite number > 0 (1 in the paper); bounds the weight at SNR = 0.
        max_weight: caps omega, in (0, inf].
    """

    name = "p2"
    native = "epsilon"

    def __init__(self, gamma: float = 1.0, k: float = 1.0, max_weight: float = math.inf) -> None:
        super().__init__(max_weight)
        self.gamma = check_number(gamma, "gamma", self.name, low=0.0)
        self.k = check_number(k, "k", self.name, low=0.0, open_low=True)

    @property
    def parameters(self) -> dict[str, Any]:
        return {"gamma": self.gamma, "k": self.k, "max_weight": self.max_weight}

    def _log_native(self, lam: torch.Tensor) -> torch.Tensor:
        return -self.gamma * torch.logaddexp(torch.full_like(lam, math.log(self.k)), lam)

    def asymptotes(self) -> Asymptotes:
        return (1.0, -self.gamma), (self.k**-self.gamma, 0.0)
