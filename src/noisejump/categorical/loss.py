"""Losses of token diffusion: MDLM's continuous-time absorbing ELBO and D3PM's hybrid bound.

Both take the model's x0 logits (*x_t.shape, K) over the data classes and return one value
per sequence (B,), the mean over its d tokens, in float32.

    mdlm_loss   w(t) [x_t = mask] (-log p(x0 | x_t)),  w(t) = -keep'(t) / (1 - keep_t)
                (Sahoo et al. 2024, MDLM, arXiv 2406.07524, eq. 10-11: the negative ELBO
                of the absorbing process in continuous time; unmasked tokens add nothing,
                SUBS's carry-over). For the log-linear keep_t = 1 - (1 - eps) t, w = 1/t;
                w diverges as t -> 0, so t is refused below t_min (1e-3, as MDLM). The
                mean over t ~ U[t_min, 1] times (1 - t_min) is the bound on [t_min, 1] in
                nats per token.
    d3pm_loss   L_vb + lambda L_ce (Austin et al. 2021, D3PM, arXiv 2107.03006, eq. 5):
                L_vb = KL(q(x_(t-1) | x_t, x0) || p(x_(t-1) | x_t)) for t >= 1, and at t = 0
                the same KL with x_(-1) = x0, i.e. -log p(x0 | x_0) (D3PM's L_0);
                L_ce = -log p~(x0 | x_t), the auxiliary cross-entropy of the x0 prediction;
                lambda = 0.001, D3PM's value for its image models (section 5, table 2). The
                prior term L_T has no parameters and is left out. Every term is finite at
                both ends of the schedule, zero terminal keep included.
"""

from __future__ import annotations

from typing import Any, cast

import torch

from .keep import MDLM_T_MIN
from .process import CategoricalProcess, _log_x0

__all__ = ["HYBRID_LAMBDA", "elbo_weight", "mdlm_loss", "d3pm_loss"]

#: D3PM's lambda for its image models (Austin et al. 2021, section 5, table 2).
HYBRID_LAMBDA = 1e-3


def elbo_weight(process: CategoricalProcess, t: Any, *, t_min: float = MDLM_T_MIN) -> torch.Tensor:
    """w(t) = -keep'(t) / (1 - keep_t), float64 of t's shape, for times in [t_min, 1] of a
    continuous schedule (MDLM eq. 10; 1/t for ``LogLinear``); ValueError below t_min."""
    if process.keeps is None or not process.is_continuous:
        raise TypeError(
            f"MDLM's weight needs a continuous-time schedule; {process!r} is discrete "
            "(use d3pm_loss)"
        )
    t = torch.as_tensor(t, dtype=torch.float64)
    if t.device.type == "cpu" and bool((t < t_min).any()):
        raise ValueError(
            f"t must be >= t_min = {t_min:g}: the weight -keep'(t) / (1 - keep_t) diverges as "
            f"t -> 0 (1/t for the log-linear schedule); got {float(t.min()):.3g}"
        )
    return process.keeps.keep_rate(t)


def mdlm_loss(
    process: CategoricalProcess,
    x0_logits: torch.Tensor,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: Any,
    *,
    t_min: float = MDLM_T_MIN,
) -> torch.Tensor:
    """MDLM's per-sequence loss (module docstring), (B,) float32, for an absorbing process
    on a continuous schedule; ``t`` one time per sequence (B,) or per token."""
    if process.kind != "absorbing":
        raise ValueError(f"mdlm_loss is the absorbing-state ELBO; this process is {process.kind!r}")
    x0 = process._tokens(x0, "x0", data=True)
    x_t = process._tokens(x_t, "x_t", data=False)
    t = process._steps(t, x_t, "t", lowest=0)
    weight = elbo_weight(process, t, t_min=t_min).to(torch.float32)
    nll = _cross_entropy(x0_logits, x0, x_t, process.num_classes)
    masked = torch.eq(x_t, cast(int, process.mask_state)).to(torch.float32)
    return (weight * masked * nll).flatten(1).mean(1)


def d3pm_loss(
    process: CategoricalProcess,
    x0_logits: torch.Tensor,
    x0: torch.Tensor,
    x_t: torch.Tensor,
    t: Any,
    *,
    hybrid_lambda: float = HYBRID_LAMBDA,
) -> torch.Tensor:
    """D3PM's L_vb + lambda L_ce per sequence (module docstring), (B,) float32, for a
    discrete-time process (any kind); ``t`` an int, one step per sequence or per token."""
    if process.is_continuous:
        raise TypeError("d3pm_loss is the discrete-time bound; use mdlm_loss in continuous time")
    if isinstance(hybrid_lambda, bool) or not isinstance(hybrid_lambda, (int, float)):
        raise TypeError(f"hybrid_lambda must be a number >= 0, got {hybrid_lambda!r}")
    if not 0 <= hybrid_lambda < float("inf"):
        raise ValueError(f"hybrid_lambda must be a finite number >= 0, got {hybrid_lambda!r}")
    x0 = process._tokens(x0, "x0", data=True)
    x_t = process._tokens(x_t, "x_t", data=False)
    q = process.q_posterior_probs(x0, x_t, t)
    log_p = process.p_posterior_log_probs(x0_logits, x_t, t)
    # KL(q || p) = sum q (log q - log p) over the states q reaches (0 log 0 = 0).
    # Elsewhere q = 0 and log p may be -inf: both are replaced by 0 before the product.
    reached = q > 0
    log_q = torch.where(reached, q, torch.ones_like(q)).log()
    kl = (q * (log_q - torch.where(reached, log_p, torch.zeros_like(log_p)))).sum(-1)
    loss = kl + hybrid_lambda * _cross_entropy(x0_logits, x0, x_t, process.num_classes)
    return loss.flatten(1).mean(1)


def _cross_entropy(
    x0_logits: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """-log softmax(x0_logits)[x0] per token, float32."""
    log_p = _log_x0(x0_logits, x_t, num_classes, "x0_logits")
    return -log_p.gather(-1, x0[..., None]).squeeze(-1).to(torch.float32)
