"""The keyed closed form in one pass: x_t = signal x0 + sigma e, e = keep * s * z (keyed).

``q_sample_keyed`` is the public launcher. It runs the Triton kernel (``_q_sample_triton``)
through a torch custom op (``noisejump::q_sample_keyed``, with its backward, so it works
under ``torch.compile`` and in CUDA graphs) where ``dispatch`` says so, and
``q_sample_reference`` (plain torch, the same keyed stream) otherwise: directly when eager
(a custom op's dispatch costs more than the small-batch work itself), through the op while
torch.compile traces, so that the compiled values are bitwise the eager ones (the compiler
would otherwise contract a x + b e into fused multiply-adds that round differently).

Notation as in ``noisejump.processes.forward``: signal_t = sqrt(abar_t), sigma_t =
sqrt(1 - abar_t) (Ho et al. 2020, eq. 4); s is the per-element noise scale of a diagonal
family (sqrt of its variance; 1 for isotropic noise); z is the keyed white noise of
``noisejump.rng``; keep is 0 at clean elements (step -1: x_t = x0, e = 0) and 1 elsewhere.
Coefficients come one per sample, one per frame (varying along one event axis: diffusion
forcing's per-frame steps) or one per element, as compact (B, frames) tables
(``coefficient_tables``) that kernel and reference index alike, gathered from float64
tables in the compute dtype (float32; float64 for float64 samples); e is rounded to x0's
dtype and x_t computed from e as stored. A shard (``noisejump.shards``) makes the kernel
draw the slice's counters of the full sample: shards put together are the unsharded call.
"""

# No "from __future__ import annotations": torch.library reads the op's annotations as
# types (older torch releases do not evaluate string annotations).
import math

import torch

from ..rng import key_words, normal_from_words
from ..shards import Shard, check_shard, shard_runs
from .affine import _affine, compute_dtype
from .dispatch import math_mode, use_triton

__all__ = [
    "q_sample_keyed",
    "q_sample_reference",
    "KERNEL_DTYPES",
    "structured_noise",
    "coefficient_tables",
    "launch_geometry",
]

KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BLOCK = 256  # Philox groups per program (4 BLOCK elements); the noise never depends on it


def coefficient_tables(shape, *values):
    """(frames, inner, tables): coefficients that broadcast to a batch of ``shape`` as
    compact (B, frames) tables, element n of a sample reading column (n // inner) mod
    frames. One per sample: frames 1, inner d; varying along one event axis a (one per
    frame): frames = shape[1 + a], inner = the elements after it; along several: frames
    d, inner 1 (one per element). A value has 1 or B entries, or broadcasts to ``shape``.
    """
    batch, d = shape[0], math.prod(shape[1:])
    full = []
    for value in values:
        if value.numel() in (1, batch) and (value.dim() <= 1 or value.shape[0] == value.numel()):
            value = value.reshape((-1,) + (1,) * (len(shape) - 1))
        full.append(value)
    varying = sorted({i for v in full for i in range(1, len(shape)) if v.shape[i] > 1})
    if not varying:
        frames, inner = 1, d
        view = (batch,) + (1,) * (len(shape) - 1)
    elif len(varying) == 1:
        axis = varying[0]
        frames, inner = shape[axis], math.prod(shape[axis + 1 :])
        view = tuple(n if i in (0, axis) else 1 for i, n in enumerate(shape))
    else:
        frames, inner, view = d, 1, tuple(shape)
    tables = [v.expand(view).reshape(batch, frames).contiguous() for v in full]
    return frames, inner, tables


def launch_geometry(shape, shard, frames, inner):
    """(programs, the kernels' layout arguments): for a batch of ``shape``, shard ints (or
    []) and the coefficient layout, the grid size B runs blocks_per_run and the arguments
    (n_elements, runs, run, stride, offset, blocks_per_run, frames, inner) every kernel
    takes after its pointers and keys (``_q_sample_triton.run_elements``)."""
    batch, n_elements = shape[0], math.prod(shape[1:])
    runs, run, stride, offset = shard_runs(Shard(*shard) if shard else None, tuple(shape[1:]))
    lead = max((o * stride + offset) % 4 for o in range(min(runs, 4)))
    blocks = -(-(lead + run) // (4 * BLOCK))
    layout = (n_elements, runs, run, stride, offset, blocks, frames, inner)
    return batch * runs * blocks, layout


def structured_noise(z: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype):
    """e = s * z in the compute dtype of ``dtype``, rounded to ``dtype`` (z, s broadcast)."""
    cd = compute_dtype(dtype)
    z = z.to(cd)
    return (z if scale is None else z * scale.to(cd)).to(dtype)


def _grid(batch, frames, inner):
    """Views that line elements (B, outer, frames, inner) up with tables (B, 1, frames, 1)."""
    return (batch, -1, frames, inner), (batch, 1, frames, 1)


def q_sample_reference(
    x0, signal, sigma, keep, scale, words, seed_lo, seed_hi, stream, frames, inner, shard
):
    """Plain torch: (x_t, e) with e = keep * s * z rounded to x0's dtype, x_t from e as
    stored; coefficient tables (B, frames) (``coefficient_tables``), shard ints or []."""
    batch = x0.shape[0]
    checked = Shard(*shard) if shard else None
    z = normal_from_words(tuple(x0.shape), (seed_lo, seed_hi), words, stream, checked)
    elements, table = _grid(batch, frames, inner)
    s = None if scale is None else scale.reshape(1, -1, frames, inner)
    noise = structured_noise(z.reshape(elements), s, x0.dtype)
    if keep is not None:  # 0 or 1: exact in every dtype
        noise = noise * keep.reshape(table).to(noise.dtype)
    a, b = signal.reshape(table), sigma.reshape(table)
    x_t = _affine(a, x0.reshape(elements), b, noise)
    return x_t.reshape(x0.shape), noise.reshape(x0.shape)


def _launch(
    x0, signal, sigma, keep, scale, words, seed_lo, seed_hi, stream, frames, inner, shard,
    store_noise, fast,
):  # fmt: skip
    from ._q_sample_triton import _q_sample_kernel  # triton is imported only here

    x0 = x0.contiguous()
    programs, layout = launch_geometry(x0.shape, shard, frames, inner)
    x_t = torch.empty_like(x0)
    noise = torch.empty_like(x0) if store_noise else x_t  # not written when not stored
    _q_sample_kernel[(programs,)](
        x0,
        x_t,
        noise,
        signal,
        sigma,
        x_t if keep is None else keep,
        x_t if scale is None else scale,
        words[0],
        words[1],
        seed_lo | seed_hi << 32,
        stream,
        *layout,
        HAS_SCALE=scale is not None,
        HAS_KEEP=keep is not None,
        PER_FRAME=frames > 1,
        STORE_NOISE=store_noise,
        MATH=math_mode(_q_sample_kernel, fast),
        BLOCK=BLOCK,
    )
    return x_t, noise


@torch.library.custom_op("noisejump::q_sample_keyed", mutates_args=())
def _q_sample_op(
    x0: torch.Tensor,
    signal: torch.Tensor,
    sigma: torch.Tensor,
    keep: torch.Tensor | None,
    scale: torch.Tensor | None,
    words: torch.Tensor,
    seed_lo: int,
    seed_hi: int,
    stream: int,
    frames: int,
    inner: int,
    shard: list[int],
    store_noise: bool,
    fast: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    arguments = (x0, signal, sigma, keep, scale, words, seed_lo, seed_hi, stream, frames, inner)
    if use_triton(x0.device) and x0.dtype in KERNEL_DTYPES:
        x_t, noise = _launch(*arguments, shard, store_noise, fast)
    else:
        x_t, noise = q_sample_reference(*arguments, shard)
    # A custom op's outputs may not alias each other: an empty noise when not stored.
    return x_t, noise if store_noise else x0.new_empty(0)


@_q_sample_op.register_fake
def _(x0, signal, sigma, keep, scale, words, seed_lo, seed_hi, stream, frames, inner, shard,
      store_noise, fast):  # fmt: skip
    x_t = x0.new_empty(x0.shape)  # contiguous, as both implementations return
    return x_t, x0.new_empty(x0.shape) if store_noise else x0.new_empty(0)


def _setup_context(ctx, inputs, output):
    x0, signal, sigma = inputs[0], inputs[1], inputs[2]
    ctx.coefficient_grads = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
    # d x_t / d signal = x0 and d x_t / d sigma = e: kept only for a learned schedule.
    keep = (x0, output[1]) if ctx.coefficient_grads else ()
    ctx.save_for_backward(signal, sigma, *keep)
    ctx.x0_shape = x0.shape
    ctx.layout = (inputs[9], inputs[10])


def _backward(ctx, grad_x_t, grad_noise):
    """d x_t / d x0 = signal (the gradient reaches x0, e.g. latents of a trained encoder);
    d x_t / d signal = x0 and d x_t / d sigma = e, summed to each table entry."""
    signal, sigma, *kept = ctx.saved_tensors
    batch = ctx.x0_shape[0]
    elements, table = _grid(batch, *ctx.layout)
    flat = grad_x_t.reshape(elements).to(signal.dtype)
    grad_x0 = (flat * signal.reshape(table)).to(grad_x_t.dtype).reshape(ctx.x0_shape)
    grad_signal = grad_sigma = None
    if ctx.coefficient_grads:
        x0, noise = (v.reshape(elements).to(signal.dtype) for v in kept)
        grad_signal = (flat * x0).sum((1, 3)).reshape(signal.shape)
        grad_sigma = (flat * noise).sum((1, 3)).reshape(sigma.shape)
    return (grad_x0, grad_signal, grad_sigma) + (None,) * 11


_q_sample_op.register_autograd(_backward, setup_context=_setup_context)


def q_sample_keyed(
    x0: torch.Tensor,
    signal: torch.Tensor,
    sigma: torch.Tensor,
    *,
    seed: int,
    keys: torch.Tensor,
    stream: int = 0,
    scale: torch.Tensor | None = None,
    keep: torch.Tensor | None = None,
    shard=None,
    store_noise: bool = True,
    fast: bool = False,
):
    """x_t = signal x0 + sigma e in one pass, e = keep * s * z with keyed z
    (``noisejump.rng``).

    Args:
        x0: (B, ...) float16, bfloat16 or float32 for the kernel (float64: torch reference).
        signal, sigma: sqrt(abar_t), sqrt(1 - abar_t) at each sample's step: tensors with
            1 or B entries (one per sample), or broadcasting to x0's shape: one per frame
            (varying along one event axis, the kernel's compact table) or per element.
        seed, keys, stream: the keyed noise (``noisejump.rng.keyed_normal``).
        scale: per-element noise scale s of one sample (event-shaped), or None (s = 1).
        keep: 1 where the noise is kept, 0 at clean elements (step -1), shaped like the
            coefficients; None: 1 everywhere.
        shard: (axis, start, stop, size): x0 holds elements [start, stop) along event axis
            ``axis`` of full length ``size``; z is that slice of the unsharded noise
            (``noisejump.shards``).
        store_noise: also return e; False writes only x_t (2 tensors of traffic, not 3).
        fast: approximate transcendentals on the GPU (docs/gpu.md); no effect on the CPU.
    Returns:
        (x_t, e) in x0's dtype; e is None when ``store_noise`` is False.
    """
    if not isinstance(x0, torch.Tensor) or not x0.dtype.is_floating_point or x0.dim() < 1:
        raise TypeError(f"x0 must be a floating tensor with a batch dimension, got {x0!r:.80}")
    batch = x0.shape[0]
    seed_words, key_a, key_b = key_words(seed, keys, batch, stream, x0.device)
    words = torch.stack([key_a, key_b]).to(x0.device)  # (2, B): contiguous rows
    coefficients = [("signal", signal), ("sigma", sigma)] + ([("keep", keep)] * (keep is not None))
    checked = [_coefficient(value, name, x0) for name, value in coefficients]
    frames, inner, tables = coefficient_tables(tuple(x0.shape), *checked)
    signal, sigma = tables[0], tables[1]
    keep = tables[2] if keep is not None else None
    if scale is not None:
        if tuple(scale.shape) != tuple(x0.shape[1:]):
            raise ValueError(
                f"scale must have one sample's shape {tuple(x0.shape[1:])}, "
                f"got {tuple(scale.shape)}"
            )
        scale = scale.to(device=x0.device, dtype=compute_dtype(x0.dtype)).reshape(-1)
    shard_ints = [] if shard is None else list(check_shard(shard, tuple(x0.shape[1:])))
    arguments = (x0, signal, sigma, keep, scale, words, *seed_words, stream, frames, inner)
    if use_triton(x0.device) or torch.compiler.is_compiling():
        x_t, noise = _q_sample_op(*arguments, shard_ints, store_noise, fast)
    else:
        x_t, noise = q_sample_reference(*arguments, shard_ints)
    return x_t, noise if store_noise else None


def _coefficient(value, name: str, x0: torch.Tensor) -> torch.Tensor:
    """A coefficient in the compute dtype on x0's device, checked: 1 or B entries, or a
    shape that broadcasts to x0's."""
    batch = x0.shape[0]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a tensor with 1 or {batch} entries, got {value!r:.80}")
    value = value.to(device=x0.device, dtype=compute_dtype(x0.dtype))
    if value.numel() in (1, batch) and (value.dim() <= 1 or value.shape[0] == value.numel()):
        return value
    if value.dim() == x0.dim():
        try:
            torch.broadcast_shapes(value.shape, x0.shape)
            if torch.broadcast_shapes(value.shape, x0.shape) == x0.shape:
                return value
        except RuntimeError:
            pass
    raise ValueError(
        f"{name} must have 1 or {batch} entries or broadcast to x0's shape "
        f"{tuple(x0.shape)}, got shape {tuple(value.shape)}"
    )


def diagonal_scale(family, shape: tuple[int, ...]):
    """(True, s) when ``family`` draws L e = s * e for a batch of ``shape``: (True, None)
    for isotropic noise, (True, sqrt(variance)) for a diagonal family (eigenbasis
    "identity", white shape = sample shape; float64, cached per event shape); (False, None)
    otherwise."""
    shape = tuple(shape)
    if family.is_isotropic:
        return True, None
    if family.eigenbasis == "identity" and tuple(family.white_shape(shape)) == shape:
        cache = family.__dict__.setdefault("_diagonal_scales", {})
        event = shape[1:]
        if event not in cache:
            cache[event] = family.variance(event).sqrt()
        return True, cache[event]
    return False, None


def fused_noise_scale(family, x0: torch.Tensor):
    """(True, s) when the fused pass serves ``family`` for ``x0`` (backend, dtype, a
    diagonal family: ``diagonal_scale``), else (False, None)."""
    if not use_triton(x0.device) or x0.dtype not in KERNEL_DTYPES or x0.dim() < 1:
        return False, None
    return diagonal_scale(family, tuple(x0.shape))
