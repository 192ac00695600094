"""Triton kernel of the keyed closed form: x_t = signal_b x0 + sigma_b e, e = s * z."""

import triton
import triton.language as tl

from ._normal_triton import keyed_normal4


@triton.jit(do_not_specialize=["seed", "stream"])
def _q_sample_kernel(
    x0_ptr,
    x_t_ptr,
    noise_ptr,
    signal_ptr,
    sigma_ptr,
    scale_ptr,
    key_a_ptr,
    key_b_ptr,
    seed,
    stream,
    n_elements,
    blocks_per_sample,
    HAS_SCALE: tl.constexpr,
    STORE_NOISE: tl.constexpr,
    MATH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One program: BLOCK Philox groups (4 BLOCK elements) of sample b. The noise depends
    on (b, element index) only, never on BLOCK. e is rounded to the output dtype first and
    x_t is computed from e as stored."""
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
    noise = z.to(x_t_ptr.dtype.element_ty)
    if STORE_NOISE:
        tl.store(noise_ptr + offsets, noise, mask=mask)
    x0 = tl.load(x0_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    x_t = tl.load(signal_ptr + b) * x0 + tl.load(sigma_ptr + b) * noise.to(tl.float32)
    tl.store(x_t_ptr + offsets, x_t.to(x_t_ptr.dtype.element_ty), mask=mask)
