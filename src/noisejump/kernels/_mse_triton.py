"""Triton kernel of the keyed MSE: e regenerated from its keys, never read from memory."""

import triton
import triton.language as tl

from ._normal_triton import keyed_normal4
from ._q_sample_triton import coefficient_index, load_coefficient, run_elements


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
    runs,
    run,
    stride,
    offset,
    blocks_per_run,
    frames,
    inner,
    HAS_SCALE: tl.constexpr,
    V_TARGET: tl.constexpr,
    PER_FRAME: tl.constexpr,
    NOISE_DTYPE: tl.constexpr,
    MATH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One program: 4 BLOCK elements of one run of sample b (``run_elements``). Target e
    (or v = signal e - sigma x0), e rounded to NOISE_DTYPE as q_sample stores it; writes
    the gradient 2 w (pred - target) (w already divided by the element count) and the
    block's sum of w (pred - target)^2. Coefficients and weights one per sample, frame or
    element (``coefficient_index``)."""
    pid = tl.program_id(0)
    b, group, n, mask = run_elements(pid, runs, blocks_per_run, run, stride, offset, BLOCK)
    z = keyed_normal4(seed, group, stream, tl.load(key_a_ptr + b), tl.load(key_b_ptr + b), MATH)
    offsets = b.to(tl.int64) * n_elements + n
    c = coefficient_index(b, n, frames, inner, PER_FRAME)
    if HAS_SCALE:
        z = z * tl.load(scale_ptr + n, mask=mask, other=0.0)
    target = z.to(NOISE_DTYPE).to(tl.float32)
    if V_TARGET:
        x0 = tl.load(x0_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        signal = load_coefficient(signal_ptr, c, mask, PER_FRAME)
        sigma = load_coefficient(sigma_ptr, c, mask, PER_FRAME)
        target = signal * target - sigma * x0
    pred = tl.load(pred_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    error = tl.where(mask, pred - target, 0.0)
    weight = load_coefficient(weight_ptr, c, mask, PER_FRAME)
    tl.store(grad_ptr + offsets, (2.0 * weight * error).to(grad_ptr.dtype.element_ty), mask=mask)
    tl.store(partial_ptr + pid, tl.sum(weight * error * error, axis=0))
