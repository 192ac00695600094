"""Training losses that regenerate the noise from its keys: training needs no e tensor.

    loss = (1 / B) sum_b w_b (1 / d) sum_n (pred_bn - target_bn)^2

target = e for epsilon prediction (Ho et al. 2020, eq. 14), v = signal_t e - sigma_t x0 for
v prediction (Salimans & Ho 2022, arXiv 2202.00512, section 4); e is the keyed noise that
``q_sample(x0, t, seed=S, keys=K)`` returned, recomputed from (S, K). Min-SNR-gamma
weights (``noisejump.objective.weighting``; Hang et al. 2023, arXiv 2303.09556, eq. 4 and
section 3.4): epsilon min(1, gamma / SNR_t), v min(SNR_t, gamma) / (SNR_t + 1),
SNR_t = abar_t / (1 - abar_t); finite at zero terminal SNR (SNR = 0 gives weight 1 and 0).

For isotropic and diagonal noise the forward pass is one fused pass (Triton on CUDA,
``noisejump.kernels``) that writes the gradient 2 w_b (pred - target) / (B d); the backward
only scales it. The target is a constant: no gradient flows into x0 through v.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..checks import check_device
from ..kernels.affine import compute_dtype
from ..kernels.mse import keyed_mse_fused, mse_and_grad
from ..kernels.q_sample import diagonal_scale, fused_noise_scale, q_sample_keyed
from ..processes.forward import _FLOATS, _check_sample
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
    schedule: Schedule, t: Any, gamma: float, prediction: str = "epsilon"
) -> torch.Tensor:
    """Min-SNR-gamma weights at steps ``t`` (an int, or an integer tensor of any shape,
    range-checked as ``q_sample`` checks it) as float32 of t's shape: epsilon min(1, gamma/SNR),
    v min(SNR, gamma) / (SNR + 1) (Hang et al. 2023, section 3.4; ``weighting``). SNR from
    float64 tables."""
    if prediction not in LOSS_PREDICTIONS:
        raise ValueError(f"prediction must be one of {LOSS_PREDICTIONS}, got {prediction!r}")
    gamma = check_gamma(gamma)
    device = t.device if isinstance(t, torch.Tensor) else torch.device("cpu")
    shape = tuple(t.shape) if isinstance(t, torch.Tensor) else ()
    t = schedule.steps(t, torch.zeros((), device=device).expand(shape))
    signal, sigma = schedule.marginal(t, device, F64)
    return min_snr_weight((signal / sigma) ** 2, gamma, prediction).to(torch.float32)


def keyed_x_t(
    process: ForwardProcess,
    x0: torch.Tensor,
    t: Any,
    *,
    seed: int,
    keys: torch.Tensor,
    fast: bool = False,
) -> torch.Tensor:
    """x_t = signal_t x0 + sigma_t e with keyed e, without keeping e: the input of a training
    step whose loss is [`keyed_mse`][noisejump.objective.loss.keyed_mse] (which regenerates
    e from the same seed and keys).

    Equals ``process.q_sample(x0, t, seed=seed, keys=keys)[0]``; where the fused kernel
    runs (``noisejump.kernels``) it writes x_t only (2 tensors of traffic instead of 3).
    ``fast``: approximate transcendentals in the GPU kernel (docs/gpu.md).
    """
    fused, scale = fused_noise_scale(process.noise, x0)
    if not fused:
        return process.q_sample(x0, t, seed=seed, keys=keys)[0]
    steps = process.schedule.steps(t, x0, validate=process.validate)
    signal, sigma = process.schedule.marginal(steps, x0.device, compute_dtype(x0.dtype))
    x_t, _ = q_sample_keyed(
        x0, signal, sigma, seed=seed, keys=keys, scale=scale, store_noise=False, fast=fast
    )
    return x_t


class _PrecomputedGradient(torch.autograd.Function):
    """The loss with the gradient its forward pass already wrote: backward only scales it
    (the fused kernel's case: only the model output needs a gradient)."""

    @staticmethod
    def forward(ctx: Any, pred: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor) -> Any:
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None


class _LossAgainstNoise(torch.autograd.Function):
    """loss = sum w (pred - T)^2 with T = e, or T = signal e - sigma x0 (``mse_and_grad``;
    w already divided by the element count), differentiable in every input but e:

        d/d pred = 2 w (pred - T) = g     (written by the forward pass)
        d/d x0 = sigma g,   d/d signal = -g e,   d/d sigma = g x0,   d/d w = (pred - T)^2

    each summed to its input's shape, so x0 from an encoder being trained, learned loss
    weights (EDM2) and a learned schedule get their gradients."""

    @staticmethod
    def forward(
        ctx: Any,
        pred: torch.Tensor,
        noise: torch.Tensor,
        x0: torch.Tensor | None,
        signal: torch.Tensor,
        sigma: torch.Tensor,
        weight: torch.Tensor,
    ) -> Any:
        loss, grad = mse_and_grad(pred, noise, x0, signal, sigma, weight)
        ctx.v_target = x0 is not None
        ctx.save_for_backward(grad, pred, noise, pred if x0 is None else x0, signal, sigma, weight)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad, pred, noise, x0, signal, sigma, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad_pred = grad * grad_loss.to(grad.dtype) if needs[0] else None
        grad_x0 = grad_signal = grad_sigma = grad_weight = None
        cd = compute_dtype(noise.dtype)
        batch = pred.shape[0]

        def flat(value: torch.Tensor) -> torch.Tensor:
            return value.reshape(batch, -1).to(cd)

        def to_shape(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return value.sum_to_size(flat(like).shape).reshape(like.shape).to(like.dtype)

        g = flat(grad) * grad_loss.to(cd)
        e = flat(noise)
        if ctx.v_target:
            grad_x0 = to_shape(g * flat(sigma), x0) if needs[2] else None
            grad_signal = to_shape(-g * e, signal) if needs[3] else None
            grad_sigma = to_shape(g * flat(x0), sigma) if needs[4] else None
        if needs[5]:
            target = flat(signal) * e - flat(sigma) * flat(x0) if ctx.v_target else e
            error = flat(pred) - target
            grad_weight = to_shape(error * error * grad_loss.to(cd), weight)
        return grad_pred, None, grad_x0, grad_signal, grad_sigma, grad_weight


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
) -> torch.Tensor:
    """The (weighted) MSE of ``model_output`` against the target of keyed noise.

    Args:
        process: the ForwardProcess that noised the batch with ``q_sample(x0, t, seed=seed,
            keys=keys)``, with any noise family.
        model_output: (B, ...) the model's prediction, x0's shape.
        t: the steps of the batch, as ``q_sample`` takes them: an int, one per sample
            ((B,) integer tensor) or one per element.
        seed, keys: the same as for ``q_sample`` (``noisejump.rng``); ``stream`` moves the
            draw to another keyed stream (the closed-form path only).
        prediction: "epsilon" (target e) or "v" (target signal_t e - sigma_t x0).
        x0: the clean batch: required for "v"; for "epsilon" only its dtype is used (e is
            rounded to it, as q_sample returns it). Default dtype: model_output's.
        weights: optional per-sample weights (B,); multiplied by the min-SNR weights when
            ``min_snr_gamma`` is given too (per element for per-element steps).
        min_snr_gamma: gamma of min-SNR-gamma weighting, or None.
        fast: approximate transcendentals in the GPU kernel (docs/gpu.md).
    Returns:
        A float32 scalar: mean over all elements of w (model_output - target)^2; with all
        weights 1 it equals F.mse_loss(model_output, target), target from ``q_sample``.
        Differentiable in the model output, the weights (learned weightings), and for v
        in x0 and the schedule's coefficients (an encoder, a learned schedule). Isotropic
        and diagonal noise where only the model output needs a gradient take the fused
        pass (the kernel on CUDA, an opaque op under torch.compile); otherwise e is drawn
        exactly as ``q_sample`` draws it and the loss taken against it.
    """
    if prediction not in LOSS_PREDICTIONS:
        raise ValueError(f"prediction must be one of {LOSS_PREDICTIONS}, got {prediction!r}")
    _check_sample(model_output, "model_output")
    if model_output.dim() == 0:
        raise ValueError("model_output must have a batch dimension (B, ...), got a 0-d tensor")
    process.noise.check_shape(tuple(model_output.shape[1:]))
    if prediction == "v" and x0 is None:
        raise ValueError("prediction='v' needs x0: its target is signal_t e - sigma_t x0")
    if x0 is not None and not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be {_FLOATS} or None, got {type(x0).__name__}")
    if x0 is not None:
        _check_sample(x0, "x0")
    if x0 is not None and (x0.shape != model_output.shape or x0.device != model_output.device):
        raise ValueError(
            f"x0 must match model_output's shape {tuple(model_output.shape)} and device "
            f"{model_output.device}, got {tuple(x0.shape)} on {x0.device}"
        )
    batch, device = model_output.shape[0], model_output.device
    noise_dtype = model_output.dtype if x0 is None else x0.dtype
    cd = compute_dtype(noise_dtype)
    steps = process.schedule.steps(t, model_output, validate=process.validate)
    if not isinstance(steps, torch.Tensor) or steps.dim() == 0:
        steps = torch.as_tensor(steps, device=device).reshape(1).expand(batch)
    signal, sigma = process.schedule.marginal(steps, device, cd)
    weight = _weights(process, steps, weights, min_snr_gamma, prediction, batch, device)
    v_x0 = x0 if prediction == "v" else None
    diagonal, scale = diagonal_scale(process.noise, tuple(model_output.shape))
    # One value per sample (B,), the kernel's case, or one per element (pred's shape).
    per_element = is_per_element(steps) or weight.numel() > batch

    def flat(value: torch.Tensor) -> torch.Tensor:
        value = value.to(cd)
        shape = model_output.shape
        return (value.expand(shape) if per_element else value.reshape(batch)).contiguous()

    coefficients = (flat(signal), flat(sigma), flat(weight) / model_output.numel())
    # Beyond the model output, a gradient reaches the weights (learned weightings) and, for
    # v, x0 and the schedule's coefficients: then the loss is taken against materialised e.
    others = [weight] + ([v_x0, signal, sigma] if v_x0 is not None else [])
    fused = diagonal and not (torch.is_grad_enabled() and any(v.requires_grad for v in others))
    if fused:
        (seed_lo, seed_hi), key_a, key_b = key_words(seed, keys, batch, stream, device)
        words = torch.stack([key_a, key_b]).to(device)
        if scale is not None:
            scale = scale.to(device, cd).reshape(-1).contiguous()
        signal_b, sigma_b, weight_b = (c.detach() for c in coefficients)
        loss, grad = keyed_mse_fused(
            model_output.detach(),
            v_x0,
            signal_b,
            sigma_b,
            scale,
            weight_b,
            words,
            seed_lo | seed_hi << 32,
            stream,
            noise_dtype,
            fast,
        )
        return _PrecomputedGradient.apply(model_output, loss, grad)
    # L e from the family, exactly as q_sample draws it; the same loss against it.
    like = model_output.new_zeros(model_output.shape, dtype=noise_dtype) if x0 is None else x0
    noise = process._keyed_epsilon(like.detach(), steps, seed, keys, stream)
    return _LossAgainstNoise.apply(model_output, noise, v_x0, *coefficients)


def _weights(
    process: ForwardProcess,
    steps: torch.Tensor,
    weights: torch.Tensor | None,
    min_snr_gamma: float | None,
    prediction: str,
    batch: int,
    device: torch.device | str | None,
) -> torch.Tensor:
    """Per-sample weights (B,), or per element (steps' shape, broadcasting to the sample)
    when min-SNR weights meet per-element steps; float32."""
    weight = torch.ones(batch, device=device, dtype=torch.float32)
    if weights is not None:
        if not isinstance(weights, torch.Tensor) or not weights.dtype.is_floating_point:
            raise TypeError(f"weights must be a floating tensor (B,), got {weights!r:.80}")
        if weights.shape != (batch,):
            raise ValueError(f"weights must have shape ({batch},), got {tuple(weights.shape)}")
        check_device(weights, weight.device, "weights", "model_output")
        weight = weight * weights.to(device, torch.float32)
    weight = weight.reshape((batch,) + (1,) * (steps.dim() - 1))
    if min_snr_gamma is not None:
        weight = weight * min_snr_weights(process.schedule, steps, min_snr_gamma, prediction)
    return weight
