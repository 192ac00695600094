"""Keyed MSE, fused: the loss regenerates e from (seed, keys) instead of reading it.

    loss = sum_b w_b / (B d) sum_n (pred_bn - target_bn)^2
    grad = 2 w_b (pred - target) / (B d)              (written by the forward pass)

target = e (epsilon prediction, no x0) or a_b e - b_b x0 with per-sample (or per-element)
coefficients passed as ``signal`` and ``sigma``: v = signal_b e - sigma_b x0 (Salimans &
Ho 2022, arXiv 2202.00512, section 4), and the sample (a = 0, b = -1) and flow velocity
(a = b = 1) the same way, so the kernel serves every target unchanged. e = s * z keyed
(``noisejump.rng``) and rounded to ``noise_dtype`` as ``q_sample`` returns it;
arithmetic in float32. ``per_sample``: the loss is the (B,) sums per sample instead of
their total (the weight then divided by d, not B d). ``keyed_mse_fused`` runs the Triton
kernel (``_mse_triton``) or ``keyed_mse_reference`` (plain torch) as ``dispatch`` decides;
``mse_and_grad`` is the same loss against a given e (families the kernel does not serve).
All return (loss, grad) with the loss a float32 scalar and grad in pred's dtype.
"""

# No "from __future__ import annotations": torch.library reads the op's annotations as types.
import torch

from ..rng import normal_from_words
from .affine import compute_dtype
from .dispatch import math_mode, use_triton
from .q_sample import BLOCK, KERNEL_DTYPES, structured_noise

__all__ = ["keyed_mse_fused", "keyed_mse_reference", "mse_and_grad"]


def keyed_mse_reference(
    pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype, per_sample=False
):
    """Plain torch, the same keyed stream and arithmetic as the kernel (float64 throughout
    for float64 noise)."""
    batch = pred.shape[0]
    seed_words = (seed & 0xFFFFFFFF, seed >> 32)
    z = normal_from_words(tuple(pred.shape), seed_words, words, stream).reshape(batch, -1)
    noise = structured_noise(z, None if scale is None else scale.reshape(1, -1), noise_dtype)
    return _mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample)


def mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample=False):
    """(loss, grad) of pred against the target of ``noise`` (e, or signal e - sigma x0
    when x0 is given): loss = sum w (pred - target)^2 as a float32 scalar ((B,) sums per
    sample with ``per_sample``), grad = 2 w (pred - target) in pred's dtype; arithmetic in
    noise's compute dtype. Coefficients and weights (B,) or pred's shape. An opaque op
    while torch.compile traces (the compiler would drop the rounding of e to its dtype and
    reorder the sum), so compiled = eager."""
    if torch.compiler.is_compiling():
        return _mse_and_grad_op(pred, noise, x0, signal, sigma, weight, per_sample)
    return _mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample)


def _mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample=False):
    batch = pred.shape[0]
    cd = compute_dtype(noise.dtype)
    target = noise.reshape(batch, -1).to(cd)
    if x0 is not None:  # a e - b x0: v, and the sample and flow velocity as well
        signal, sigma = signal.reshape(batch, -1), sigma.reshape(batch, -1)
        target = signal * target - sigma * x0.reshape(batch, -1).to(cd)
    error = pred.reshape(batch, -1).to(cd) - target
    weight = weight.reshape(batch, -1)
    squares = weight * error * error
    loss = (squares.sum(1) if per_sample else squares.sum()).to(torch.float32)
    return loss, (2 * weight * error).to(pred.dtype).reshape(pred.shape)


@torch.library.custom_op("noisejump::mse_and_grad", mutates_args=())
def _mse_and_grad_op(
    pred: torch.Tensor,
    noise: torch.Tensor,
    x0: torch.Tensor | None,
    signal: torch.Tensor,
    sigma: torch.Tensor,
    weight: torch.Tensor,
    per_sample: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    return _mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample)


def _loss_shape(pred: torch.Tensor, per_sample: bool) -> tuple[int, ...]:
    return (pred.shape[0],) if per_sample else ()


@_mse_and_grad_op.register_fake
def _(pred, noise, x0, signal, sigma, weight, per_sample):
    loss = pred.new_empty(_loss_shape(pred, per_sample), dtype=torch.float32)
    return loss, pred.new_empty(pred.shape)


def _launch(
    pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype, fast, per_sample
):
    import triton.language as tl

    from ._mse_triton import _keyed_mse_kernel  # triton is imported only here

    pred = pred.contiguous()
    batch = pred.shape[0]
    n_elements = pred.numel() // batch
    blocks_per_sample = -(-n_elements // (4 * BLOCK))
    grad = torch.empty_like(pred)
    partial = torch.empty(batch * blocks_per_sample, device=pred.device, dtype=torch.float32)
    tl_dtypes = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}
    _keyed_mse_kernel[(batch * blocks_per_sample,)](
        pred,
        pred if x0 is None else x0.contiguous(),
        grad,
        partial,
        signal,
        sigma,
        pred if scale is None else scale,
        weight,
        words[0],
        words[1],
        seed,
        stream,
        n_elements,
        blocks_per_sample,
        HAS_SCALE=scale is not None,
        V_TARGET=x0 is not None,
        NOISE_DTYPE=tl_dtypes[noise_dtype],
        MATH=math_mode(_keyed_mse_kernel, fast),
        BLOCK=BLOCK,
    )
    return (partial.reshape(batch, -1).sum(1) if per_sample else partial.sum()), grad


def keyed_mse_fused(
    pred,
    x0,
    signal,
    sigma,
    scale,
    weight,
    words,
    seed,
    stream,
    noise_dtype,
    fast=False,
    per_sample=False,
):
    """(loss, grad). Shapes: pred (B, ...); x0 like pred or None (epsilon target);
    signal, sigma, weight in the compute dtype, (B,) (one per sample: the kernel's case) or
    pred's shape (one per element), weight already divided by B d;
    scale (d,) or None; words int64 (2, B) (key_a, key_b rows); seed an int in [0, 2^64).

    The kernel where ``dispatch`` says so; else the torch reference, directly when eager and
    through the opaque op ``noisejump::keyed_mse`` while torch.compile traces (so the
    compiled loss and gradient are bitwise the eager ones)."""
    arguments = (pred, x0, signal, sigma, scale, weight, words)
    if use_triton(pred.device) or torch.compiler.is_compiling():
        seed_words = (seed & 0xFFFFFFFF, seed >> 32)  # an op's ints are signed 64-bit
        name = _DTYPE_NAMES[noise_dtype]
        return _keyed_mse_op(*arguments, *seed_words, stream, name, fast, per_sample)
    return keyed_mse_reference(*arguments, seed, stream, noise_dtype, per_sample)


_DTYPE_NAMES = {
    dtype: str(dtype).removeprefix("torch.") for dtype in (*KERNEL_DTYPES, torch.float64)
}


@torch.library.custom_op("noisejump::keyed_mse", mutates_args=())
def _keyed_mse_op(
    pred: torch.Tensor,
    x0: torch.Tensor | None,
    signal: torch.Tensor,
    sigma: torch.Tensor,
    scale: torch.Tensor | None,
    weight: torch.Tensor,
    words: torch.Tensor,
    seed_lo: int,
    seed_hi: int,
    stream: int,
    noise_dtype: str,
    fast: bool,
    per_sample: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = getattr(torch, noise_dtype)
    seed = seed_lo | seed_hi << 32
    arguments = (pred, x0, signal, sigma, scale, weight, words, seed, stream, dtype)
    one_per_sample = signal.dim() == 1 and weight.dim() == 1
    if use_triton(pred.device) and one_per_sample and {pred.dtype, dtype} <= set(KERNEL_DTYPES):
        return _launch(*arguments, fast, per_sample)
    return keyed_mse_reference(*arguments, per_sample)


@_keyed_mse_op.register_fake
def _(pred, x0, signal, sigma, scale, weight, words, seed_lo, seed_hi, stream, name, fast, per):
    return pred.new_empty(_loss_shape(pred, per), dtype=torch.float32), pred.new_empty(pred.shape)
