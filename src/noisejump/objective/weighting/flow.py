"""Stable Diffusion 3's loss weightings "sigma_sqrt" and "cosmap" (Esser et al. 2024, arXiv
2403.03206; diffusers' ``compute_loss_weighting_for_sd3``, examples/dreambooth/
train_dreambooth_sd3.py).

They are written in rectified flow's time sigma = t of x_t = (1 - t) x0 + t e. At log-SNR
lambda that time is t(lambda) = 1 / (1 + e^(lambda/2)) (sqrt(SNR) = (1 - t) / t), which is
how they are read on any schedule:

    sigma_sqrt   sigma^-2                             = (1 + e^(lambda/2))^2
    cosmap       2 / (pi (1 - 2 sigma + 2 sigma^2))   = 2 / (pi ((1 - t)^2 + t^2))

Their native target is the sample: diffusers' scripts multiply the x0-MSE of the
preconditioned output x0_hat = x_t - sigma u_hat by them (``--precondition_outputs 1``,
the default). So sigma_sqrt is exactly the plain flow-velocity MSE (weight 1 on u), SD3's
rectified-flow loss; cosmap is the density of SD3's CosMap timestep sampler (section 3.1)
used as a weight. With ``--precondition_outputs 0`` diffusers multiplies the velocity MSE by
the same numbers instead: a different objective (the x0-MSE weight w / sigma^2); give
those as ``weights=`` to ``keyed_mse``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Weighting

__all__ = ["CosMap", "SigmaSqrt"]

Asymptotes = tuple[tuple[float, float], tuple[float, float]]


class SigmaSqrt(Weighting):
    """diffusers' "sigma_sqrt": the x0-MSE weight sigma^-2 = (1 + e^(lambda/2))^2 (module
    docstring), in each target

        sample (1 + e^(lambda/2))^2     epsilon (1 + e^(-lambda/2))^2
        flow_velocity 1                 v (1 + e^(-lambda/2))^2 / (1 + e^-lambda) (VP)

    Limits (lambda = +inf, -inf): sample (inf, 1): diverges without noise (t = 0);
    epsilon (1, inf): diverges at zero SNR; v (1, 1); flow_velocity (1, 1). A schedule
    that reaches a divergent end (flow matching reaches both) is refused unless
    max_weight is given.

    Args:
        max_weight: caps omega, in (0, inf].
    """

    name = "sigma_sqrt"
    native = "sample"

    def _log_native(self, lam: torch.Tensor) -> torch.Tensor:
        return 2.0 * F.softplus(0.5 * lam)  # -2 log t, t = 1 / (1 + e^(lambda/2))

    def asymptotes(self) -> Asymptotes:
        return (1.0, 1.0), (1.0, 0.0)


class CosMap(Weighting):
    """diffusers' "cosmap": the x0-MSE weight 2 / (pi (1 - 2 sigma + 2 sigma^2)), the
    density pi(t) of SD3's CosMap sampler t = 1 - 1 / (tan(pi u / 2) + 1) (Esser et al.
    2024, section 3.1), at rectified flow's t(lambda) (module docstring).

    Limits (lambda = +inf, -inf): sample (2/pi, 2/pi); epsilon (0, inf): diverges at zero
    SNR; v (0, 2/pi); flow_velocity (0, 2/pi). A schedule that reaches a divergent end
    is refused unless max_weight is given.

    Args:
        max_weight: caps omega, in (0, inf].
    """

    name = "cosmap"
    native = "sample"

    def _log_native(self, lam: torch.Tensor) -> torch.Tensor:
        # 1 - 2 t + 2 t^2 = (1 - t)^2 + t^2 with 1 - t = sigmoid(lambda/2), t = sigmoid(-lambda/2)
        squares = torch.logaddexp(2.0 * F.logsigmoid(0.5 * lam), 2.0 * F.logsigmoid(-0.5 * lam))
        return math.log(2.0 / math.pi) - squares

    def asymptotes(self) -> Asymptotes:
        return (2.0 / math.pi, 0.0), (2.0 / math.pi, 0.0)
