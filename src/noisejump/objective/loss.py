"""Training losses that regenerate the noise from its keys: training needs no e tensor.

    loss = (1 / B) sum_b w_b (1 / d) sum_n (pred_bn - target_bn)^2

target = e for epsilon prediction (Ho et al. 2020, eq. 14), v = signal_t e - sigma_t x0 for
v prediction (Salimans & Ho 2022, arXiv 2202.00512, section 4); e is the keyed noise that
``q_sample(x0, t, seed=S, keys=K)`` returned, recomputed from (S, K). Min-SNR-gamma
weights (``noisejump.objective.weighting``; Hang et al. 2023, arXiv 2303.09556, eq. 4 and
section 3.4): epsilon min(1, gamma / SNR_t), v min(SNR_t, gamma) / (SNR_t + 1),
SNR_t = abar_t / (1 - abar_t); finite at zero terminal SNR (SNR = 0 gives weight 1 and 0).

For isotropic and diagonal noise the forward pass is one fused pass (Triton on CUDA,
``noisejump.kernels``) that writes the gradient 2 w (pred - target) / (B d); the backward
only scales it. The target is a constant: no gradient flows into x0 through v.

Sequences (diffusion forcing): weights may be per element (per frame), and clean elements
(step -1, context frames) get weight 0, so they add nothing to the loss or its gradient.
With ``shard`` a rank's loss is its slice's share of the unsharded loss (the same 1 / (B d)
with d the full sample's elements): the ranks' losses sum to the unsharded loss and their
gradients are the slices of its gradient, bitwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..checks import broadcasts_per_element, host_readable
from ..kernels.affine import compute_dtype
from ..kernels.mse import keyed_mse_fused, mse_and_grad
from ..kernels.q_sample import diagonal_scale, fused_noise_scale, q_sample_keyed
from ..processes.forward import _FLOATS, SAMPLE_DTYPES
from ..processes.plan import is_per_element
from ..rng import key_words
from ..schedules import Schedule
from .weighting import check_gamma, min_snr_weight

if TYPE_CHECKING:
    from ..processes import ForwardProcess

__all__ = ["keyed_mse", "keyed_x_t", "min_snr_weights", "LOSS_PREDICTIONS"]

LOSS_PREDICTIONS = ("epsilon", "v")
F64 = torch.float64


def min_snr_weights(
    schedule: Schedule, t: torch.Tensor, gamma: float, prediction: str = "epsilon"
) -> torch.Tensor:
    """Min-SNR-gamma weights at steps ``t`` (B,) as float32 (B,): epsilon min(1, gamma/SNR),
    v min(SNR, gamma) / (SNR + 1) (Hang et al. 2023, section 3.4; ``weighting``). SNR from
    float64 tables."""
    if prediction not in LOSS_PREDICTIONS:
        raise ValueError(f"prediction must be one of {LOSS_PREDICTIONS}, got {prediction!r}")
    gamma = check_gamma(gamma)
    signal, sigma = schedule.marginal(t, t.device, F64)
    return min_snr_weight((signal / sigma) ** 2, gamma, prediction).to(torch.float32)


def keyed_x_t(
    process: ForwardProcess,
    x0: torch.Tensor,
    t: Any,
    *,
    seed: int,
    keys: torch.Tensor,
    fast: bool = False,
    shard: Any = None,
) -> torch.Tensor:
    """x_t = signal_t x0 + sigma_t e with keyed e, without keeping e: the input of a training
    step whose loss is [`keyed_mse`][noisejump.objective.loss.keyed_mse] (which regenerates
    e from the same seed and keys).

    Equals ``process.q_sample(x0, t, seed=seed, keys=keys, shard=shard)[0]`` (x0 at clean
    elements, step -1); where the fused kernel runs (``noisejump.kernels``) it writes x_t
    only (2 tensors of traffic instead of 3). ``fast``: approximate transcendentals in the
    GPU kernel (docs/gpu.md).
    """
    fused, _ = fused_noise_scale(process.noise, x0)
    if not fused:
        return process.q_sample(x0, t, seed=seed, keys=keys, shard=shard)[0]
    local = process._for_shard(shard, x0, seed, keys)
    _, scale = diagonal_scale(local.noise, tuple(x0.shape))
    steps = process.schedule.steps(t, x0, lowest=-1, validate=process.validate)
    signal, sigma = process.schedule.marginal(steps, x0.device, compute_dtype(x0.dtype))
    x_t, _ = q_sample_keyed(
        x0,
        signal,
        sigma,
        seed=seed,
        keys=keys,
        scale=scale,
        shard=local._white_shard,
        store_noise=False,
        fast=fast,
    )
    return x_t


class _PrecomputedGradient(torch.autograd.Function):
    """The loss with the gradient its forward pass already wrote: backward only scales it."""

    @staticmethod
    def forward(ctx: Any, pred: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor) -> Any:
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None


def keyed_mse(
    process: ForwardProcess,
    model_output: torch.Tensor,
    t: Any,
    *,
    seed: int,
    keys: torch.Tensor,
    prediction: str = "epsilon",
    x0: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
    min_snr_gamma: float | None = None,
    stream: int = 0,
    fast: bool = False,
    shard: Any = None,
) -> torch.Tensor:
    """The (weighted) MSE of ``model_output`` against the target of keyed noise.

    Args:
        process: the ForwardProcess that noised the batch with ``q_sample(x0, t, seed=seed,
            keys=keys)``, with any noise family.
        model_output: (B, ...) the model's prediction, x0's shape.
        t: the steps of the batch, as ``q_sample`` takes them: an int, one per sample
            ((B,) integer tensor) or one per element; clean elements (step -1) get
            weight 0.
        seed, keys: the same as for ``q_sample`` (``noisejump.rng``); ``stream`` moves the
            draw to another keyed stream (the closed-form path only).
        prediction: "epsilon" (target e) or "v" (target signal_t e - sigma_t x0).
        x0: the clean batch: required for "v"; for "epsilon" only its dtype is used (e is
            rounded to it, as q_sample returns it). Default dtype: model_output's.
        weights: optional weights, per sample (B,) or per element (as many dimensions as
            the sample, broadcasting to it: (B, F, 1, 1, 1) for one weight per frame, e.g.
            a weighting evaluated at each frame's step, ``noisejump.sequences``);
            multiplied by the min-SNR weights when ``min_snr_gamma`` is given too (per
            element for per-element steps).
        min_snr_gamma: gamma of min-SNR-gamma weighting, or None.
        fast: approximate transcendentals in the GPU kernel (docs/gpu.md).
        shard: (axis, start, stop, size) as for ``q_sample``: model_output (and x0, t,
            weights) hold that slice of every sample; returns the slice's share of the
            unsharded loss (module docstring).
    Returns:
        A float32 scalar: mean over all elements of w (model_output - target)^2; with all
        weights 1 it equals F.mse_loss(model_output, target), target from ``q_sample``.
        Isotropic and diagonal noise take the fused pass (the kernel on CUDA, with one
        coefficient per sample, per frame or per element; an opaque op under
        torch.compile); the rest plain torch autograd.
    """
    if prediction not in LOSS_PREDICTIONS:
        raise ValueError(f"prediction must be one of {LOSS_PREDICTIONS}, got {prediction!r}")
    if not isinstance(model_output, torch.Tensor) or model_output.dtype not in SAMPLE_DTYPES:
        kind = model_output.dtype if isinstance(model_output, torch.Tensor) else type(model_output)
        raise TypeError(f"model_output must be {_FLOATS}, got {kind}")
    if prediction == "v" and x0 is None:
        raise ValueError("prediction='v' needs x0: its target is signal_t e - sigma_t x0")
    if x0 is not None and (not isinstance(x0, torch.Tensor) or x0.dtype not in SAMPLE_DTYPES):
        kind = x0.dtype if isinstance(x0, torch.Tensor) else type(x0).__name__
        raise TypeError(f"x0 must be {_FLOATS} or None, got {kind}")
    if x0 is not None and (x0.shape != model_output.shape or x0.device != model_output.device):
        raise ValueError(
            f"x0 must match model_output's shape {tuple(model_output.shape)} and device "
            f"{model_output.device}, got {tuple(x0.shape)} on {x0.device}"
        )
    batch, device = model_output.shape[0], model_output.device
    noise_dtype = model_output.dtype if x0 is None else x0.dtype
    cd = compute_dtype(noise_dtype)
    local = process._for_shard(shard, model_output, seed, keys)
    steps = process.schedule.steps(t, model_output, lowest=-1, validate=process.validate)
    if not isinstance(steps, torch.Tensor) or steps.dim() == 0:
        steps = torch.as_tensor(steps, device=device).reshape(1).expand(batch)
    signal, sigma = process.schedule.marginal(steps, device, cd)
    weight = _weights(process, steps, weights, min_snr_gamma, prediction, model_output)
    # every element of the unsharded sample counts in the mean: 1 / (B d), d the full size
    n_elements, sliced = model_output.numel(), local._white_shard
    if sliced is not None:
        n_elements = n_elements // (sliced.stop - sliced.start) * sliced.size
    weight = (weight / n_elements).to(cd)
    v_x0 = x0 if prediction == "v" else None
    diagonal, scale = diagonal_scale(local.noise, tuple(model_output.shape))
    pred = model_output.detach()  # the loss and its gradient come from the passes below
    if diagonal:  # coefficients per sample, frame or element: the kernel's compact tables
        (seed_lo, seed_hi), key_a, key_b = key_words(seed, keys, batch, stream, device)
        words = torch.stack([key_a, key_b]).to(device)
        if scale is not None:
            scale = scale.to(device, cd).reshape(-1).contiguous()
        seed_value = seed_lo | seed_hi << 32
        loss, grad = keyed_mse_fused(
            pred, v_x0, signal, sigma, scale, weight, words, seed_value, stream, noise_dtype,
            fast, local._white_shard,
        )  # fmt: skip
    else:  # L e from the family, as q_sample draws it; the same loss against it
        like = model_output.new_zeros(model_output.shape, dtype=noise_dtype) if x0 is None else x0
        noise = local._keyed_epsilon(like, steps, seed, keys, stream)
        per_element = is_per_element(steps) or weight.numel() > batch

        def flat(value: torch.Tensor) -> torch.Tensor:
            shape = model_output.shape
            return (value.expand(shape) if per_element else value.reshape(batch)).contiguous()

        loss, grad = mse_and_grad(pred, noise, v_x0, flat(signal), flat(sigma), flat(weight))
    return _PrecomputedGradient.apply(model_output, loss, grad)


def _weights(
    process: ForwardProcess,
    steps: torch.Tensor,
    weights: torch.Tensor | None,
    min_snr_gamma: float | None,
    prediction: str,
    like: torch.Tensor,
) -> torch.Tensor:
    """Weights that broadcast to the sample ``like``: per sample (B,), or per element
    (as many dimensions as the sample) when the user's weights, or min-SNR weights at
    per-element steps, are; 0 at clean elements (step -1); float32."""
    batch, device = like.shape[0], like.device
    weight = torch.ones(batch, device=device, dtype=torch.float32)
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or not weights.dtype.is_floating_point:
            raise TypeError(
                f"weights must be a floating tensor, (B,) or broadcasting to the sample, got "
                f"{weights!r:.80}"
            )
        if weights.shape != (batch,) and not broadcasts_per_element(
            tuple(weights.shape), tuple(like.shape)
        ):
            raise ValueError(
                f"weights must have shape ({batch},) (one per sample) or as many dimensions "
                f"as the sample and broadcast to its shape {tuple(like.shape)} (e.g. one per "
                f"frame), got {tuple(weights.shape)}"
            )
        weight = weights.to(device, torch.float32)
    if weight.dim() == 1:
        weight = weight.reshape((batch,) + (1,) * (steps.dim() - 1))
    if min_snr_gamma is not None:
        weight = weight * min_snr_weights(process.schedule, steps, min_snr_gamma, prediction)
    clean = steps == -1
    if not host_readable(clean) or bool(clean.any()):
        weight = torch.where(clean, torch.zeros_like(weight), weight)
    return weight
