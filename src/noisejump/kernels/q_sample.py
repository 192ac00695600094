"""The keyed closed form in one pass: x_t = signal x0 + sigma e, e = s * z (keyed).

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
``noisejump.rng``. Coefficients come one per sample (the kernel's case) or one per element
(per-element steps, the reference), gathered from float64 tables in the compute dtype
(float32; float64 for float64 samples); e is rounded to x0's dtype and x_t computed from e
as stored.
"""

# No "from __future__ import annotations": torch.library reads the op's annotations as
# types (older torch releases do not evaluate string annotations).
import torch

from ..rng import key_words, normal_from_words
from .affine import _affine, compute_dtype
from .dispatch import math_mode, use_triton

__all__ = ["q_sample_keyed", "q_sample_reference", "KERNEL_DTYPES", "structured_noise"]

KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BLOCK = 256  # Philox groups per program (4 BLOCK elements); the noise never depends on it


def structured_noise(z: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype):
    """e = s * z in the compute dtype of ``dtype``, rounded to ``dtype`` (z, s broadcast)."""
    cd = compute_dtype(dtype)
    z = z.to(cd)
    return (z if scale is None else z * scale.to(cd)).to(dtype)


def q_sample_reference(x0, signal, sigma, scale, words, seed_lo, seed_hi, stream):
    """Plain torch: (x_t, e) with e = s * z rounded to x0's dtype, x_t from e as stored."""
    batch = x0.shape[0]
    z = normal_from_words(tuple(x0.shape), (seed_lo, seed_hi), words, stream).reshape(batch, -1)
    noise = structured_noise(z, None if scale is None else scale.reshape(1, -1), x0.dtype)
    a, b = signal.reshape(batch, -1), sigma.reshape(batch, -1)  # (B, 1) or (B, d)
    x_t = _affine(a, x0.reshape(batch, -1), b, noise)
    return x_t.reshape(x0.shape), noise.reshape(x0.shape)


def _launch(x0, signal, sigma, scale, words, seed_lo, seed_hi, stream, store_noise, fast):
    from ._q_sample_triton import _q_sample_kernel  # triton is imported only here

    x0 = x0.contiguous()
    batch = x0.shape[0]
    n_elements = x0.numel() // batch
    x_t = torch.empty_like(x0)
    noise = torch.empty_like(x0) if store_noise else x_t  # not written when not stored
    blocks_per_sample = -(-n_elements // (4 * BLOCK))
    _q_sample_kernel[(batch * blocks_per_sample,)](
        x0,
        x_t,
        noise,
        signal,
        sigma,
        x_t if scale is None else scale,
        words[0],
        words[1],
        seed_lo | seed_hi << 32,
        stream,
        n_elements,
        blocks_per_sample,
        HAS_SCALE=scale is not None,
        STORE_NOISE=store_noise,
        MATH=math_mode(_q_sample_kernel, fast),
        BLOCK=BLOCK,
    )
    return x_t, noise


def _fusable(x0: torch.Tensor, signal: torch.Tensor) -> bool:
    """The kernel serves x0's dtype with one coefficient per sample."""
    return x0.dtype in KERNEL_DTYPES and signal.dim() == 1


@torch.library.custom_op("noisejump::q_sample_keyed", mutates_args=())
def _q_sample_op(
    x0: torch.Tensor,
    signal: torch.Tensor,
    sigma: torch.Tensor,
    scale: torch.Tensor | None,
    words: torch.Tensor,
    seed_lo: int,
    seed_hi: int,
    stream: int,
    store_noise: bool,
    fast: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    if use_triton(x0.device) and _fusable(x0, signal):
        x_t, noise = _launch(
            x0, signal, sigma, scale, words, seed_lo, seed_hi, stream, store_noise, fast
        )
    else:
        x_t, noise = q_sample_reference(x0, signal, sigma, scale, words, seed_lo, seed_hi, stream)
    # A custom op's outputs may not alias each other: an empty noise when not stored.
    return x_t, noise if store_noise else x0.new_empty(0)


@_q_sample_op.register_fake
def _(x0, signal, sigma, scale, words, seed_lo, seed_hi, stream, store_noise, fast):
    x_t = x0.new_empty(x0.shape)  # contiguous, as both implementations return
    return x_t, x0.new_empty(x0.shape) if store_noise else x0.new_empty(0)


def _setup_context(ctx, inputs, output):
    x0, signal, sigma = inputs[0], inputs[1], inputs[2]
    ctx.coefficient_grads = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
    # d x_t / d signal = x0 and d x_t / d sigma = e: kept only for a learned schedule.
    keep = (x0, output[1]) if ctx.coefficient_grads else ()
    ctx.save_for_backward(signal, sigma, *keep)
    ctx.x0_shape = x0.shape


def _backward(ctx, grad_x_t, grad_noise):
    """d x_t / d x0 = signal (the gradient reaches x0, e.g. latents of a trained encoder);
    d x_t / d signal = x0 and d x_t / d sigma = e, summed to each coefficient's shape."""
    signal, sigma, *kept = ctx.saved_tensors
    batch = ctx.x0_shape[0]
    flat = grad_x_t.reshape(batch, -1).to(signal.dtype)
    grad_x0 = (flat * signal.reshape(batch, -1)).to(grad_x_t.dtype).reshape(ctx.x0_shape)
    grad_signal = grad_sigma = None
    if ctx.coefficient_grads:
        x0, noise = (v.reshape(batch, -1).to(signal.dtype) for v in kept)
        reduce = lambda g, like: g.sum_to_size(like.reshape(batch, -1).shape).reshape(like.shape)  # noqa: E731
        grad_signal = reduce(flat * x0, signal)
        grad_sigma = reduce(flat * noise, sigma)
    return grad_x0, grad_signal, grad_sigma, None, None, None, None, None, None, None


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
    store_noise: bool = True,
    fast: bool = False,
):
    """x_t = signal x0 + sigma s e in one pass, with keyed noise (``noisejump.rng``).

    Args:
        x0: (B, ...) float16, bfloat16 or float32 for the kernel (float64: torch reference).
        signal, sigma: sqrt(abar_t), sqrt(1 - abar_t) at each sample's step: tensors with
            1 or B entries (one per sample), or broadcasting to x0's shape (one per element,
            the torch reference).
        seed, keys, stream: the keyed noise (``noisejump.rng.keyed_normal``).
        scale: per-element noise scale s of one sample (event-shaped), or None (s = 1).
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
    signal, sigma = (
        _coefficient(value, name, x0) for name, value in (("signal", signal), ("sigma", sigma))
    )
    if scale is not None:
        if tuple(scale.shape) != tuple(x0.shape[1:]):
            raise ValueError(
                f"scale must have one sample's shape {tuple(x0.shape[1:])}, "
                f"got {tuple(scale.shape)}"
            )
        scale = scale.to(device=x0.device, dtype=compute_dtype(x0.dtype)).reshape(-1)
    arguments = (x0, signal, sigma, scale, words, *seed_words, stream)
    if use_triton(x0.device) or torch.compiler.is_compiling():
        x_t, noise = _q_sample_op(*arguments, store_noise, fast)
    else:
        x_t, noise = q_sample_reference(*arguments)
    return x_t, noise if store_noise else None


def _coefficient(value, name: str, x0: torch.Tensor) -> torch.Tensor:
    """A coefficient in the compute dtype on x0's device: (B,) for one value per sample,
    else expanded to x0's shape (one per element)."""
    batch = x0.shape[0]
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a tensor with 1 or {batch} entries, got {value!r:.80}")
    value = value.to(device=x0.device, dtype=compute_dtype(x0.dtype))
    if value.numel() in (1, batch) and (value.dim() <= 1 or value.shape[0] == value.numel()):
        return value.reshape(-1).expand(batch).contiguous()
    try:
        return value.expand(x0.shape).contiguous()
    except RuntimeError:
        raise ValueError(
            f"{name} must have 1 or {batch} entries or broadcast to x0's shape "
            f"{tuple(x0.shape)}, got shape {tuple(value.shape)}"
        ) from None


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
