"""Keyed MSE, fused: the loss regenerates e from (seed, keys) instead of reading it.

    loss = sum_bn w_bn / (B d) (pred_bn - target_bn)^2
    grad = 2 w_bn (pred - target) / (B d)             (written by the forward pass)

target = e (epsilon prediction, no x0) or a e - b x0 with coefficients passed as
``signal`` and ``sigma``: v = signal e - sigma x0 (Salimans & Ho 2022, arXiv 2202.00512,
section 4), and the sample (a = 0, b = -1) and flow velocity (a = b = 1) the same way, so
the kernel serves every target unchanged. Weights and coefficients are one per sample, per
frame (diffusion forcing: each frame its own step and weight) or per element. e = s * z
keyed (``noisejump.rng``) and rounded to ``noise_dtype`` as ``q_sample`` returns it;
arithmetic in float32. ``per_sample``: the loss is the (B,) sums per sample instead of
their total (the weight then divided by d, not B d). ``keyed_mse_fused`` runs the Triton
kernel (``_mse_triton``) or ``keyed_mse_reference`` (plain torch) as ``dispatch`` decides;
``mse_and_grad`` is the same loss against a given e (families the kernel does not serve).
All return (loss, grad) with the loss a float32 scalar and grad in pred's dtype.
"""

# No "from __future__ import annotations": torch.library reads the op's annotations as types.
import torch

from ..rng import normal_from_words
from ..shards import Shard, check_shard
from .affine import compute_dtype
from .dispatch import math_mode, use_triton
from .q_sample import (
    BLOCK,
    KERNEL_DTYPES,
    _grid,
    coefficient_tables,
    launch_geometry,
    structured_noise,
)

__all__ = ["keyed_mse_fused", "keyed_mse_reference", "mse_and_grad"]


def keyed_mse_reference(
    pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype, shard=None,
    per_sample=False,
):  # fmt: skip
    """Plain torch, the same keyed stream and arithmetic as the kernel (float64 throughout
    for float64 noise); arguments as ``keyed_mse_fused``'s."""
    frames, inner, tables = coefficient_tables(tuple(pred.shape), signal, sigma, weight)
    shard_ints = [] if shard is None else list(check_shard(shard, tuple(pred.shape[1:])))
    return _reference(
        pred, x0, *tables, scale, words, seed, stream, noise_dtype, frames, inner, shard_ints,
        per_sample,
    )  # fmt: skip


def _reference(
    pred, x0, signal, sigma, weight, scale, words, seed, stream, noise_dtype, frames, inner,
    shard, per_sample,
):  # fmt: skip
    """The reference on coefficient tables (B, frames) (``coefficient_tables``)."""
    batch = pred.shape[0]
    seed_words = (seed & 0xFFFFFFFF, seed >> 32)
    checked = Shard(*shard) if shard else None
    z = normal_from_words(tuple(pred.shape), seed_words, words, stream, checked)
    elements, table = _grid(batch, frames, inner)
    s = None if scale is None else scale.reshape(1, -1, frames, inner)
    noise = structured_noise(z.reshape(elements), s, noise_dtype)
    return _mse_and_grad(
        pred.reshape(elements),
        noise,
        None if x0 is None else x0.reshape(elements),
        signal.reshape(table),
        sigma.reshape(table),
        weight.reshape(table),
        pred.shape,
        per_sample,
    )


def mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample=False):
    """(loss, grad) of pred against the target of ``noise`` (e, or signal e - sigma x0
    when x0 is given): loss = sum w (pred - target)^2 as a float32 scalar ((B,) sums per
    sample with ``per_sample``), grad = 2 w (pred - target) in pred's dtype; arithmetic in
    noise's compute dtype. Coefficients and weights (B,) or pred's shape. An opaque op
    while torch.compile traces (the compiler would drop the rounding of e to its dtype and
    reorder the sum), so compiled = eager."""
    if torch.compiler.is_compiling():
        return _mse_and_grad_op(pred, noise, x0, signal, sigma, weight, per_sample)
    return _flat_mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample)


def _flat_mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample):
    batch = pred.shape[0]
    flat = (batch, -1)
    return _mse_and_grad(
        pred.reshape(flat),
        noise.reshape(flat),
        None if x0 is None else x0.reshape(flat),
        signal.reshape(flat),
        sigma.reshape(flat),
        weight.reshape(flat),
        pred.shape,
        per_sample,
    )


def _mse_and_grad(pred, noise, x0, signal, sigma, weight, shape, per_sample):
    """The loss on views that broadcast (elements against their coefficients)."""
    cd = compute_dtype(noise.dtype)
    target = noise.to(cd)
    if x0 is not None:  # a e - b x0: v, and the sample and flow velocity as well
        target = signal * target - sigma * x0.to(cd)
    error = pred.to(cd) - target
    squares = weight * error * error
    loss = squares.reshape(len(squares), -1).sum(1) if per_sample else squares.sum()
    return loss.to(torch.float32), (2 * weight * error).to(pred.dtype).reshape(shape)


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
    return _flat_mse_and_grad(pred, noise, x0, signal, sigma, weight, per_sample)


def _loss_shape(pred: torch.Tensor, per_sample: bool) -> tuple[int, ...]:
    return (pred.shape[0],) if per_sample else ()


@_mse_and_grad_op.register_fake
def _(pred, noise, x0, signal, sigma, weight, per_sample):
    loss = pred.new_empty(_loss_shape(pred, per_sample), dtype=torch.float32)
    return loss, pred.new_empty(pred.shape)


def _launch(
    pred, x0, signal, sigma, weight, scale, words, seed, stream, noise_dtype, frames, inner,
    shard, fast, per_sample,
):  # fmt: skip
    import triton.language as tl

    from ._mse_triton import _keyed_mse_kernel  # triton is imported only here

    pred = pred.contiguous()
    programs, layout = launch_geometry(pred.shape, shard, frames, inner)
    grad = torch.empty_like(pred)
    partial = torch.empty(programs, device=pred.device, dtype=torch.float32)
    tl_dtypes = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}
    _keyed_mse_kernel[(programs,)](
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
        *layout,
        HAS_SCALE=scale is not None,
        V_TARGET=x0 is not None,
        PER_FRAME=frames > 1,
        NOISE_DTYPE=tl_dtypes[noise_dtype],
        MATH=math_mode(_keyed_mse_kernel, fast),
        BLOCK=BLOCK,
    )
    # programs run sample by sample (``run_elements``): a sample's partial sums lie together
    return (partial.reshape(len(pred), -1).sum(1) if per_sample else partial.sum()), grad


def keyed_mse_fused(
    pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype, fast=False,
    shard=None, per_sample=False,
):  # fmt: skip
    """(loss, grad). Shapes: pred (B, ...); x0 like pred or None (epsilon target);
    signal, sigma, weight in the compute dtype, one per sample ((B,)), per frame (varying
    along one event axis) or per element, broadcasting to pred's shape (compact tables,
    ``coefficient_tables``), weight already divided by the element count; scale (d,) or
    None; words int64 (2, B) (key_a, key_b rows); seed an int in [0, 2^64); shard (axis,
    start, stop, size) or None (pred is that slice; ``noisejump.shards``); ``per_sample``
    as in the module docstring.

    The kernel where ``dispatch`` says so; else the torch reference, directly when eager and
    through the opaque op ``noisejump::keyed_mse`` while torch.compile traces (so the
    compiled loss and gradient are bitwise the eager ones)."""
    frames, inner, tables = coefficient_tables(tuple(pred.shape), signal, sigma, weight)
    shard_ints = [] if shard is None else list(check_shard(shard, tuple(pred.shape[1:])))
    arguments = (pred, x0, *tables, scale, words)
    if use_triton(pred.device) or torch.compiler.is_compiling():
        seed_words = (seed & 0xFFFFFFFF, seed >> 32)  # an op's ints are signed 64-bit
        return _keyed_mse_op(
            *arguments, *seed_words, stream, _DTYPE_NAMES[noise_dtype], frames, inner,
            shard_ints, fast, per_sample,
        )  # fmt: skip
    return _reference(*arguments, seed, stream, noise_dtype, frames, inner, shard_ints, per_sample)


_DTYPE_NAMES = {
    dtype: str(dtype).removeprefix("torch.") for dtype in (*KERNEL_DTYPES, torch.float64)
}


@torch.library.custom_op("noisejump::keyed_mse", mutates_args=())
def _keyed_mse_op(
    pred: torch.Tensor,
    x0: torch.Tensor | None,
    signal: torch.Tensor,
    sigma: torch.Tensor,
    weight: torch.Tensor,
    scale: torch.Tensor | None,
    words: torch.Tensor,
    seed_lo: int,
    seed_hi: int,
    stream: int,
    noise_dtype: str,
    frames: int,
    inner: int,
    shard: list[int],
    fast: bool,
    per_sample: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = getattr(torch, noise_dtype)
    seed = seed_lo | seed_hi << 32
    arguments = (pred, x0, signal, sigma, weight, scale, words, seed, stream, dtype, frames, inner)
    if use_triton(pred.device) and {pred.dtype, dtype} <= set(KERNEL_DTYPES):
        return _launch(*arguments, shard, fast, per_sample)
    return _reference(*arguments, shard, per_sample)


@_keyed_mse_op.register_fake
def _(pred, x0, signal, sigma, weight, scale, words, seed_lo, seed_hi, stream, noise_dtype,
      frames, inner, shard, fast, per_sample):  # fmt: skip
    loss = pred.new_empty(_loss_shape(pred, per_sample), dtype=torch.float32)
    return loss, pred.new_empty(pred.shape)
