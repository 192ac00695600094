"""Training losses that regenerate the noise from its keys: training needs no e tensor.

    loss = (1 / B) sum_b (1 / d) sum_n w_bn (pred_bn - target_bn)^2

with the target of the prediction (``noisejump.objective.targets``), all of the form
a_b e - b_b x0 with e the keyed noise that ``q_sample(x0, t, seed=S, keys=K)`` returned,
recomputed from (S, K):

    epsilon        e                        a = 1, b = 0       (Ho et al. 2020, eq. 14)
    v              signal_t e - sigma_t x0  a = signal, b = sigma (Salimans & Ho 2022, sec. 4)
    sample         x0                       a = 0, b = -1
    flow_velocity  e - x0                   a = 1, b = 1       (flow matching; Lipman et al. 2022)

Weights: per-sample ``weights`` times a weighting's omega(lambda; prediction)
(``noisejump.objective.weighting``: min-SNR-gamma, P2, EDM's, ...; finite at zero
terminal SNR or refused there), or EDM2's learned uncertainty (Karras et al. 2024):
mean_b(L_b e^-u_b + u_b).

For isotropic and diagonal noise the forward pass is one fused pass (Triton on CUDA,
``noisejump.kernels``) that writes the gradient 2 w_b (pred - target) / (B d); the backward
only scales it. Every target takes that pass: the kernel's target is a e - b x0 with a
and b per sample, per frame or per element. Where x0, the weights or the schedule's
coefficients need a gradient too (an encoder, learned weights, a learned schedule), the
loss is taken against the keyed e materialised, differentiable in each.

Sequences (diffusion forcing): weights may be per element (per frame: a weighting at each
frame's step), and clean elements (step -1, context frames) get weight 0, so they add
nothing to the loss or its gradient. With ``shard`` a rank's loss is its slice's share of
the unsharded loss (the same 1 / (B d) with d the full sample's elements): the ranks'
losses sum to the unsharded loss and their gradients are the slices of its gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..checks import broadcasts_per_element, check_device, host_readable
from ..kernels.affine import compute_dtype
from ..kernels.mse import keyed_mse_fused, mse_and_grad
from ..kernels.q_sample import diagonal_scale, fused_noise_scale, q_sample_keyed
from ..processes.forward import _FLOATS, _check_sample
from ..processes.plan import is_per_element
from ..rng import key_words
from ..schedules import Schedule
from .targets import PREDICTIONS, check_target
from .weighting import LearnedUncertainty, Weighting, check_gamma, shared_weighting

if TYPE_CHECKING:
    from ..processes import ForwardProcess

__all__ = ["keyed_mse", "keyed_x_t", "min_snr_weights", "weights_at", "LOSS_PREDICTIONS"]

#: The targets ``keyed_mse`` takes: all of them (flow_velocity on flow matching only).
LOSS_PREDICTIONS = PREDICTIONS
REDUCTIONS = ("mean", "none")
F64 = torch.float64


def min_snr_weights(
    schedule: Schedule, t: Any, gamma: float, prediction: str = "epsilon"
) -> torch.Tensor:
    """Min-SNR-gamma weights at steps ``t`` (an int, or an integer tensor of any shape,
    range-checked as ``q_sample`` checks it) as float32 of t's shape: epsilon min(1,
    gamma/SNR), v min(SNR, gamma) / (SNR + 1), sample min(SNR, gamma), flow_velocity
    min(SNR, gamma) / (sqrt(SNR) + 1)^2 (Hang et al. 2023, section 3.4;
    ``weighting.MinSNR``). SNR from float64 tables."""
    weighting = shared_weighting("min_snr", gamma=check_gamma(gamma))
    device = t.device if isinstance(t, torch.Tensor) else torch.device("cpu")
    shape = tuple(t.shape) if isinstance(t, torch.Tensor) else ()
    t = schedule.steps(t, torch.zeros((), device=device).expand(shape))
    return weighting.weights(schedule, torch.as_tensor(t, device=device), prediction)


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
    """The loss with the gradient its forward pass already wrote: backward only scales it
    (by one number, or one per sample for per-sample losses): the fused kernel's case, where
    only the model output needs a gradient."""

    @staticmethod
    def forward(ctx: Any, pred: torch.Tensor, loss: torch.Tensor, grad: torch.Tensor) -> Any:
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (grad,) = ctx.saved_tensors
        if grad_loss.dim() == 1:  # per-sample losses: one factor per row
            grad_loss = grad_loss.reshape((-1,) + (1,) * (grad.dim() - 1))
        return grad * grad_loss.to(grad.dtype), None, None


class _LossAgainstNoise(torch.autograd.Function):
    """loss = sum w (pred - T)^2 with T = a e - b x0 (``mse_and_grad``; w already divided
    by the element count; (B,) sums with ``per_sample``), differentiable in every input but e:

        d/d pred = 2 w (pred - T) = g     (written by the forward pass)
        d/d x0 = b g,   d/d a = -g e,   d/d b = g x0,   d/d w = (pred - T)^2

    each summed to its input's shape, so x0 from an encoder being trained, learned loss
    weights (EDM2) and a learned schedule get their gradients."""

    @staticmethod
    def forward(
        ctx: Any,
        pred: torch.Tensor,
        noise: torch.Tensor,
        x0: torch.Tensor | None,
        a: torch.Tensor,
        b: torch.Tensor,
        weight: torch.Tensor,
        per_sample: bool,
    ) -> Any:
        loss, grad = mse_and_grad(pred, noise, x0, a, b, weight, per_sample=per_sample)
        ctx.has_x0 = x0 is not None
        ctx.save_for_backward(grad, pred, noise, pred if x0 is None else x0, a, b, weight)
        return loss

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad, pred, noise, x0, a, b, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        cd = compute_dtype(noise.dtype)
        batch = pred.shape[0]
        row = grad_loss.reshape(-1, 1).to(cd)  # one factor, or one per sample

        def flat(value: torch.Tensor) -> torch.Tensor:
            return value.reshape(batch, -1).to(cd)

        def to_shape(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
            return value.sum_to_size(flat(like).shape).reshape(like.shape).to(like.dtype)

        g = flat(grad) * row
        e = flat(noise)
        shaped = grad_loss.reshape((-1,) + (1,) * (grad.dim() - 1)).to(grad.dtype)
        grad_pred = grad * shaped if needs[0] else None
        grad_x0 = grad_a = grad_b = grad_weight = None
        if ctx.has_x0:
            grad_x0 = to_shape(g * flat(b), x0) if needs[2] else None
            grad_b = to_shape(g * flat(x0), b) if needs[4] else None
        grad_a = to_shape(-g * e, a) if needs[3] else None
        if needs[5]:
            target = flat(a) * e - flat(b) * flat(x0) if ctx.has_x0 else flat(a) * e
            error = flat(pred) - target
            grad_weight = to_shape(error * error * row, weight)
        return grad_pred, None, grad_x0, grad_a, grad_b, grad_weight, None


#: What each target needs x0 for, for the error message.
_TARGETS = {
    "v": "signal_t e - sigma_t x0",
    "sample": "x0",
    "flow_velocity": "e - x0",
}


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
    weighting: Weighting | LearnedUncertainty | str | None = None,
    reduction: str = "mean",
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
        prediction: "epsilon" (target e), "v" (signal_t e - sigma_t x0), "sample" (x0) or
            "flow_velocity" (e - x0; flow-matching schedules only).
        x0: the clean batch: required for every target but "epsilon"; for "epsilon" only
            its dtype is used (e is rounded to it, as q_sample returns it). Default dtype:
            model_output's.
        weights: optional weights, per sample (B,) or per element (as many dimensions as
            the sample, broadcasting to it: (B, F, 1, 1, 1) for one weight per frame);
            multiplied by the weighting's.
        min_snr_gamma: gamma of min-SNR-gamma weighting (the same as
            ``weighting=MinSNR(gamma)``), or None.
        weighting: a [`Weighting`][noisejump.objective.weighting.Weighting], a name of
            ``weighting_names()`` (built with its defaults) or EDM2's
            ``LearnedUncertainty`` module (then the loss is mean_b(L_b e^-u_b + u_b) with
            L_b under its base EDM weighting, and u's parameters get their gradient).
            Per element for per-element steps (not the learned one): a weighting at each
            frame's step for diffusion forcing.
        reduction: "mean" (a scalar) or "none" (one loss per sample, (B,), each the mean
            over its elements; their mean is the "mean" loss).
        fast: approximate transcendentals in the GPU kernel (docs/gpu.md).
        shard: (axis, start, stop, size) as for ``q_sample``: model_output (and x0, t,
            weights) hold that slice of every sample; returns the slice's share of the
            unsharded loss (module docstring). Not with the learned weighting (its u term
            is per sample, not per slice).
    Returns:
        A float32 scalar (or (B,) with ``reduction="none"``): mean over all elements of
        w (model_output - target)^2; with all weights 1 it equals
        F.mse_loss(model_output, target), target from ``q_sample``. Differentiable in the
        model output, the weights (learned weightings), and for targets with x0 in x0 and
        the schedule's coefficients (an encoder, a learned schedule). Isotropic and
        diagonal noise where only the model output needs a gradient take the fused pass
        (the kernel on CUDA, with coefficients per sample, per frame or per element; an
        opaque op under torch.compile);
        otherwise e is drawn exactly as ``q_sample`` draws it and the loss taken against it.
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    check_target(prediction, process.schedule)
    _check_sample(model_output, "model_output")
    if model_output.dim() == 0:
        raise ValueError("model_output must have a batch dimension (B, ...), got a 0-d tensor")
    local = process._for_shard(shard, model_output, seed, keys)  # checks the event shape
    if prediction != "epsilon" and x0 is None:
        raise ValueError(
            f"prediction={prediction!r} needs x0: its target is {_TARGETS[prediction]}"
        )
    if x0 is not None and not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be {_FLOATS} or None, got {type(x0).__name__}")
    if x0 is not None:
        _check_sample(x0, "x0")
    if x0 is not None and (x0.shape != model_output.shape or x0.device != model_output.device):
        raise ValueError(
            f"x0 must match model_output's shape {tuple(model_output.shape)} and device "
            f"{model_output.device}, got {tuple(x0.shape)} on {x0.device}"
        )
    chosen = _weighting(weighting, min_snr_gamma)
    learned: LearnedUncertainty | None
    base: Weighting | None
    if isinstance(chosen, LearnedUncertainty):  # EDM2: its base weighting, then u
        learned, base = chosen, chosen.base
    else:
        learned, base = None, chosen
    batch, device = model_output.shape[0], model_output.device
    noise_dtype = model_output.dtype if x0 is None else x0.dtype
    cd = compute_dtype(noise_dtype)
    steps = process.schedule.steps(t, model_output, lowest=-1, validate=process.validate)
    if not isinstance(steps, torch.Tensor) or steps.dim() == 0:
        steps = torch.as_tensor(steps, device=device).reshape(1).expand(batch)
    if learned is not None:
        if steps.numel() != batch:
            raise ValueError("the edm2 learned weighting needs one step or time per sample")
        if not torch.compiler.is_compiling():
            learned.check_schedule(process.schedule, prediction)
        if shard is not None:
            raise ValueError(
                "shard= cannot be used with the edm2 learned weighting: its loss "
                "L_b e^-u_b + u_b is per sample, not a sum over slices; gather the slices' "
                "reduction='none' losses and combine them once"
            )
    signal, sigma = process.schedule.marginal(steps, device, cd)
    weight = _weights(process, steps, weights, base, prediction, model_output)
    noise_coef, x0_coef = _target_coefficients(prediction, signal, sigma)
    target_x0 = None if prediction == "epsilon" else x0
    diagonal, scale = diagonal_scale(local.noise, tuple(model_output.shape))
    per_sample = reduction == "none" or learned is not None
    # every element of the unsharded sample counts in the mean: 1 / (B d), d the full size
    count, sliced = model_output.numel(), local._white_shard
    if sliced is not None:
        count = count // (sliced.stop - sliced.start) * sliced.size
    if per_sample:
        count //= batch
    # Beyond the model output, a gradient reaches the weights (learned weightings), the
    # target's coefficients (a learned schedule) and x0 (an encoder): then the loss is taken
    # against materialised e.
    others = [weight, noise_coef, x0_coef] + ([target_x0] if target_x0 is not None else [])
    fused = diagonal and not (torch.is_grad_enabled() and any(v.requires_grad for v in others))
    if fused:  # coefficients per sample, frame or element: the kernel's compact tables
        (seed_lo, seed_hi), key_a, key_b = key_words(seed, keys, batch, stream, device)
        words = torch.stack([key_a, key_b]).to(device)
        if scale is not None:
            scale = scale.to(device, cd).reshape(-1).contiguous()
        compact = (noise_coef, x0_coef, weight / count)
        noise_b, x0_b, weight_b = (c.detach().to(cd) for c in compact)
        loss, grad = keyed_mse_fused(
            model_output.detach(),
            None if target_x0 is None else target_x0.detach(),
            noise_b,
            x0_b,
            scale,
            weight_b,
            words,
            seed_lo | seed_hi << 32,
            stream,
            noise_dtype,
            fast,
            shard=sliced,
            per_sample=per_sample,
        )
        loss = _PrecomputedGradient.apply(model_output, loss, grad)
    else:  # L e from the family, exactly as q_sample draws it; the same loss against it
        like = model_output.new_zeros(model_output.shape, dtype=noise_dtype) if x0 is None else x0
        noise = local._keyed_epsilon(like.detach(), steps, seed, keys, stream)
        # One value per sample (B,), or one per element (pred's shape).
        per_element = is_per_element(steps) or weight.numel() > batch

        def flat(value: torch.Tensor) -> torch.Tensor:
            value = value.to(cd)
            shape = model_output.shape
            return (value.expand(shape) if per_element else value.reshape(batch)).contiguous()

        coefficients = (flat(noise_coef), flat(x0_coef), flat(weight) / count)
        loss = _LossAgainstNoise.apply(model_output, noise, target_x0, *coefficients, per_sample)
    if learned is None:
        return loss
    signal64, sigma64 = process.schedule.marginal(steps.reshape(batch), device, F64)
    u = learned.log_variance(2.0 * (torch.log(signal64) - torch.log(sigma64)))
    combined = learned.combine(loss, u)
    return combined.mean() if reduction == "mean" else combined


def _target_coefficients(
    prediction: str, signal: torch.Tensor, sigma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(a, b) of the target a e - b x0 (module docstring), signal's shape and dtype."""
    if prediction == "v":
        return signal, sigma
    one = torch.ones_like(signal)
    if prediction == "sample":
        return torch.zeros_like(signal), -one
    if prediction == "flow_velocity":
        return one, one
    return one, torch.zeros_like(signal)  # epsilon (the kernel reads no x0 then)


def _weighting(
    weighting: Weighting | LearnedUncertainty | str | None, min_snr_gamma: float | None
) -> Weighting | LearnedUncertainty | None:
    """The weighting of ``keyed_mse``'s arguments, checked."""
    if min_snr_gamma is not None:
        if weighting is not None:
            raise ValueError(
                "give min_snr_gamma or weighting, not both (min_snr_gamma=g is weighting=MinSNR(g))"
            )
        return shared_weighting("min_snr", gamma=check_gamma(min_snr_gamma))
    if isinstance(weighting, str):
        return shared_weighting(weighting)
    if weighting is None or isinstance(weighting, Weighting | LearnedUncertainty):
        return weighting
    raise TypeError(
        f"weighting must be a Weighting, a LearnedUncertainty, a name of weighting_names() "
        f"or None, got {type(weighting).__name__}"
    )


def _weights(
    process: ForwardProcess,
    steps: torch.Tensor,
    weights: torch.Tensor | None,
    weighting: Weighting | None,
    prediction: str,
    like: torch.Tensor,
) -> torch.Tensor:
    """Weights that broadcast to the sample ``like``: per sample (B, 1, ...), or per
    element (as many dimensions as the sample) when the user's weights, or a weighting at
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
        check_device(weights, weight.device, "weights", "model_output")
        weight = weights.to(device, torch.float32)
    if weight.dim() == 1:
        weight = weight.reshape((batch,) + (1,) * (steps.dim() - 1))
    if weighting is not None:
        return weight * weights_at(weighting, process.schedule, steps, prediction, process.validate)
    clean = steps == -1
    if not host_readable(clean) or bool(clean.any()):
        weight = torch.where(clean, torch.zeros_like(weight), weight)
    return weight


def weights_at(
    weighting: Weighting, schedule: Any, steps: torch.Tensor, prediction: str, validate: bool = True
) -> torch.Tensor:
    """``weighting.weights`` at validated steps or times of any shape, 0 at clean elements
    (-1: the data, lambda = +inf, where some weightings diverge): float32, steps' shape.
    A clean element is weighted at a noisy stand-in, then set to 0."""
    clean = steps == -1
    if host_readable(clean) and not bool(clean.any()):
        return weighting.weights(schedule, steps, prediction, validate=validate)
    noisy = torch.where(clean, _noisy_stand_in(schedule), steps)
    weight = weighting.weights(schedule, noisy, prediction, validate=validate)
    return torch.where(clean, torch.zeros_like(weight), weight)


def _noisy_stand_in(schedule: Any) -> float:
    """A noisy step or time to evaluate a weighting at in place of a clean element (whose
    weight is then set to 0; at the data, lambda = +inf, some weightings diverge): step 0
    of a discrete schedule, the time of log-SNR 0 of a continuous one."""
    if not getattr(schedule, "is_continuous", False):
        return 0
    cache = schedule.__dict__.setdefault("_noisy_stand_in", {})
    if "t" not in cache:
        cache["t"] = float(schedule.time_at_log_snr(0.0))
    return cache["t"]
