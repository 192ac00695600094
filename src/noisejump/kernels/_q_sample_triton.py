"""Triton kernel of the keyed closed form: x_t = signal x0 + sigma e, e = keep * s * z."""

import triton
import triton.language as tl

from ._normal_triton import keyed_normal4


@triton.jit
def run_elements(pid, runs, blocks_per_run, run, stride, offset, BLOCK: tl.constexpr):
    """The elements of one program: 4 BLOCK consecutive counters of run o of sample b.

    A sample's local elements are ``runs`` runs of ``run`` elements; run o begins at element
    o stride + offset of the full sample (``noisejump.shards``; unsharded: one run, all
    elements). Returns (b, the Philox groups, the local element index n of each of the 4
    BLOCK outputs, and the mask of those that belong to the run)."""
    b = pid // (runs * blocks_per_run)
    rest = pid % (runs * blocks_per_run)
    o = rest // blocks_per_run
    block = rest % blocks_per_run
    start = o.to(tl.int64) * stride + offset  # the run's first element in the full sample
    first = (start // 4) * 4 + block * (4 * BLOCK)
    group = first // 4 + tl.arange(0, BLOCK)
    r = first + tl.arange(0, 4 * BLOCK) - start  # position within the run
    mask = (r >= 0) & (r < run)
    return b, group, o.to(tl.int64) * run + r, mask


@triton.jit
def coefficient_index(b, n, frames, inner, PER_FRAME: tl.constexpr):
    """Where element n of sample b reads its coefficients: b (one per sample) or
    b frames + (n // inner) mod frames (one per frame of an axis; per element: inner 1)."""
    if PER_FRAME:
        c = b.to(tl.int64) * frames + (n // inner) % frames
    else:
        c = b
    return c


@triton.jit
def load_coefficient(ptr, c, mask, PER_FRAME: tl.constexpr):
    """A coefficient at ``coefficient_index`` c: one scalar per sample, else per element."""
    if PER_FRAME:
        value = tl.load(ptr + c, mask=mask, other=0.0)
    else:
        value = tl.load(ptr + c)
    return value


@triton.jit(do_not_specialize=["seed", "stream"])
def _q_sample_kernel(
    x0_ptr,
    x_t_ptr,
    noise_ptr,
    signal_ptr,
    sigma_ptr,
    keep_ptr,
    scale_ptr,
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
    HAS_KEEP: tl.constexpr,
    PER_FRAME: tl.constexpr,
    STORE_NOISE: tl.constexpr,
    MATH: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One program: BLOCK Philox groups (4 BLOCK elements) of one run of sample b. The noise
    depends on (b, element index in the full sample) only, never on BLOCK or the shard.
    e is rounded to the output dtype first and x_t is computed from e as stored."""
    pid = tl.program_id(0)
    b, group, n, mask = run_elements(pid, runs, blocks_per_run, run, stride, offset, BLOCK)
    z = keyed_normal4(seed, group, stream, tl.load(key_a_ptr + b), tl.load(key_b_ptr + b), MATH)
    offsets = b.to(tl.int64) * n_elements + n
    c = coefficient_index(b, n, frames, inner, PER_FRAME)
    if HAS_SCALE:
        z = z * tl.load(scale_ptr + n, mask=mask, other=0.0)
    if HAS_KEEP:  # 0 at clean elements (step -1), 1 elsewhere
        z = z * load_coefficient(keep_ptr, c, mask, PER_FRAME)
    noise = z.to(x_t_ptr.dtype.element_ty)
    if STORE_NOISE:
        tl.store(noise_ptr + offsets, noise, mask=mask)
    x0 = tl.load(x0_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    signal = load_coefficient(signal_ptr, c, mask, PER_FRAME)
    sigma = load_coefficient(sigma_ptr, c, mask, PER_FRAME)
    x_t = signal * x0 + sigma * noise.to(tl.float32)
    tl.store(x_t_ptr + offsets, x_t.to(x_t_ptr.dtype.element_ty), mask=mask)
