"""Triton kernel of the keyed MSE: e regenerated from its keys, never read from memory."""

import triton
import triton.language as tl

from ._normal_triton import keyed_normal4


@triton.jit(do_not_specialize=["seed", "stream"])
def _keyed_mse_kernel(
    pred_ptr,
    x0_ptr,
    grad_ptr,
    partial_ptr,
    signal_ptr,
    sigma_ptr,
    scale_ptr,
    weight_ptr,
    key_a_ptr,
    key_b_ptr,
    seed,
    stream,
    n_elements,
    blocks_per_sample,
    HAS_SCALE: tl.constexpr,
    V_TARGET: tl.constexpr,
    NOISE_DTYPE: tl.constexpr,
    MATH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One program: 4 BLOCK elements of sample b. Target e (or v = signal_b e - sigma_b x0),
    e rounded to NOISE_DTYPE as q_sample stores it; writes the gradient 2 w_b (pred -
    target) (w_b already divided by the element count) and the block's sum of
    w_b (pred - target)^2."""
    pid = tl.program_id(0)
    b = pid // blocks_per_sample
    block = pid % blocks_per_sample
    group = block * BLOCK + tl.arange(0, BLOCK)
    z = keyed_normal4(seed, group, stream, tl.load(key_a_ptr + b), tl.load(key_b_ptr + b), MATH)
    n = block * (4 * BLOCK) + tl.arange(0, 4 * BLOCK)
    mask = n < n_elements
    offsets = b.to(tl.int64) * n_elements + n
    if HAS_SCALE:
        z = z * tl.load(scale_ptr + n, mask=mask, other=0.0)
    target = z.to(NOISE_DTYPE).to(tl.float32)
    if V_TARGET:
        x0 = tl.load(x0_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        target = tl.load(signal_ptr + b) * target - tl.load(sigma_ptr + b) * x0
    pred = tl.load(pred_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    error = tl.where(mask, pred - target, 0.0)
    weight = tl.load(weight_ptr + b)
    tl.store(grad_ptr + offsets, (2.0 * weight * error).to(grad_ptr.dtype.element_ty), mask=mask)
    tl.store(partial_ptr + pid, tl.sum(weight * error * error, axis=0))
