"""Keyed MSE, fused: the loss regenerates e from (seed, keys) instead of reading it.

    loss = sum_b w_b / (B d) sum_n (pred_bn - target_bn)^2
    grad = 2 w_b (pred - target) / (B d)              (written by the forward pass)

target = e (epsilon prediction) or v = signal_b e - sigma_b x0 (Salimans & Ho 2022, arXiv
2202.00512, section 4), e = s * z keyed (``noisejump.rng``) and rounded to ``noise_dtype``
as ``q_sample`` returns it; arithmetic in float32. ``keyed_mse_fused`` runs the Triton
kernel (``_mse_triton``) or ``keyed_mse_reference`` (plain torch) as ``dispatch`` decides.
Both return (loss, grad) with the loss a float32 scalar and grad in pred's dtype.
"""

from __future__ import annotations

import torch

from ..rng import keyed_normal
from .dispatch import math_mode, use_triton
from .q_sample import BLOCK, KERNEL_DTYPES

__all__ = ["keyed_mse_fused", "keyed_mse_reference"]


def keyed_mse_reference(pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype):
    """Plain torch, the same keyed stream and arithmetic as the kernel."""
    batch = pred.shape[0]
    z = keyed_normal(pred.shape, seed=seed, keys=words.T, stream=stream).reshape(batch, -1)
    if scale is not None:
        z = z * scale.reshape(1, -1)
    target = z.to(noise_dtype).float()
    if x0 is not None:  # v = signal e - sigma x0
        target = signal.reshape(-1, 1) * target - sigma.reshape(-1, 1) * x0.reshape(batch, -1)
    error = pred.reshape(batch, -1).float() - target
    weight = weight.reshape(-1, 1)
    loss = (weight * error * error).sum()
    return loss, (2 * weight * error).to(pred.dtype).reshape(pred.shape)


def _launch(pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype, fast):
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
    return partial.sum(), grad


def keyed_mse_fused(
    pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype, fast=False
):
    """(loss, grad). Shapes: pred (B, ...); x0 like pred or None (epsilon target);
    signal, sigma, weight float32 (B,) with weight already divided by B d; scale float32
    (d,) or None; words int64 (2, B) (key_a, key_b rows); seed an int in [0, 2^64)."""
    fusable = pred.dtype in KERNEL_DTYPES and noise_dtype in KERNEL_DTYPES
    if use_triton(pred.device) and fusable:
        return _launch(
            pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype, fast
        )
    return keyed_mse_reference(
        pred, x0, signal, sigma, scale, weight, words, seed, stream, noise_dtype
    )
