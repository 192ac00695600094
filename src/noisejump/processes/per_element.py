"""Per-element steps with correlated noise: the joint law of the chain, and its posterior.

In the chain where element i stops after its own t_i steps (code steps; -1 is x0), with
x_t = signal x0 + noise and noise covariance S per step (DESIGN.md, section 1):

    Cov(x_a[i], x_b[j]) = K(a_i, b_j) S_ij,
    K(a, b) = sqrt(abar_a abar_b) (1 / abar_min(a,b) - 1)
            = exp(-|l_a - l_b| / 2) (1 - abar_min(a,b))

with l = log abar and abar_min(a,b) abar at the earlier step (the larger abar); the second
form is the one computed (``-expm1``, accurate where 1 - abar ~ 1e-4). The posterior
q(x_s | x_t, x0) is Gaussian conditioning of this joint law (dense, small d only):
mean = m_s + S_st S_tt^-1 (x_t - m_t), cov = S_ss - S_st S_tt^-1 S_ts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..noise import NoiseFamily

F64 = torch.float64
MAX_DENSE_D = 2048


def kernel(log_abar_a: torch.Tensor, log_abar_b: torch.Tensor) -> torch.Tensor:
    """K(a_i, b_j) as a (len(a), len(b)) float64 matrix from log abar at each step."""
    la, lb = log_abar_a[:, None], log_abar_b[None, :]
    # equal steps give |l_a - l_b| = 0, also at zero terminal SNR where l = -inf
    gap = torch.where(la == lb, torch.zeros_like(la * lb), (la - lb).abs())
    return torch.exp(-gap / 2) * -torch.expm1(torch.maximum(la, lb))


def log_alphas_cumprod(schedule: Any, steps: torch.Tensor) -> torch.Tensor:
    """log abar at code steps (-1 is the data: 0), float64 on the CPU."""
    table = schedule.table("log_alphas_cumprod_x0", "cpu")
    return table[steps.long().cpu() + 1]


def increments(
    schedule: Any,
    noise: NoiseFamily,
    x0: torch.Tensor,
    t: torch.Tensor,
    draw: Callable[[int], torch.Tensor],
) -> torch.Tensor:
    """Per-element steps with correlated noise, sampled exactly: for the sorted distinct step
    values u_1 < ... < u_m (u_0 = -1), z_j = alpha_(u_j|u_(j-1)) z_(j-1) +
    sigma_(u_j|u_(j-1)) L e_j, and element i takes z_j[i] where t_i = u_j: x_t = signal_t x0
    + z, the law above with a = b = t. ``draw(j)`` gives white draw j. Returns the noise
    e = z / sigma_t (x_t = signal_t x0 + sigma_t e) in float32 (float64 for float64 x0)."""
    cd = F64 if x0.dtype == F64 else torch.float32
    t_full = t.expand(x0.shape)
    z = torch.zeros(x0.shape, device=x0.device, dtype=cd)
    noise_part = torch.zeros_like(z)
    previous = -1
    for j, u in enumerate(torch.unique(t_full).tolist()):
        alpha, sigma2 = schedule.transition(previous, u, "cpu")
        e = noise.apply(draw(j), x0.shape)
        z = float(alpha) * z + float(sigma2.sqrt()) * e
        noise_part = torch.where(t_full == u, z, noise_part)
        previous = u
    _, sigma = schedule.marginal(t, x0.device, cd)
    return noise_part / sigma


def posterior(
    schedule: Any, noise: NoiseFamily, x0: torch.Tensor, x_t: torch.Tensor, s: Any, t: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and dense covariance of q(x_s | x_t, x0) with per-element steps s < t.

    Returns (mean of x_t's shape and dtype, cov (B, d, d) float64, one per sample).
    """
    event = tuple(x_t.shape[1:])
    d = math.prod(event)
    if d > MAX_DENSE_D:
        raise ValueError(
            f"q_posterior with per-element steps and correlated noise is a dense {d} x {d} "
            f"solve; only d <= {MAX_DENSE_D} is supported"
        )
    cov = noise.covariance(event)
    batch = len(x_t)
    s_all = torch.as_tensor(s).expand(x_t.shape).reshape(batch, d)
    t_all = torch.as_tensor(t).expand(x_t.shape).reshape(batch, d)
    flat0, flat_t = x0.reshape(batch, d).to(F64).cpu(), x_t.reshape(batch, d).to(F64).cpu()
    means, covs = [], []
    for b in range(batch):
        ls, lt = log_alphas_cumprod(schedule, s_all[b]), log_alphas_cumprod(schedule, t_all[b])
        cov_st = kernel(ls, lt) * cov
        cov_tt = kernel(lt, lt) * cov
        gain = torch.linalg.solve(cov_tt, cov_st.T).T  # S_st S_tt^-1 (S_tt symmetric)
        residual = flat_t[b] - torch.exp(lt / 2) * flat0[b]
        means.append(torch.exp(ls / 2) * flat0[b] + gain @ residual)
        covs.append(kernel(ls, ls) * cov - gain @ cov_st.T)
    mean = torch.stack(means).reshape(x_t.shape).to(device=x_t.device, dtype=x_t.dtype)
    return mean, torch.stack(covs)
