"""The keyed closed form in one pass: x_t = signal_b x0 + sigma_b e, e = s * z (keyed).

``q_sample_keyed`` is the public launcher (a torch custom op, ``noisejump::q_sample_keyed``,
with its backward for x0, so it works under ``torch.compile`` and in CUDA graphs); it runs
the Triton kernel (``_q_sample_triton``) or ``q_sample_reference`` (plain torch, the same
keyed stream) as ``dispatch`` decides. Notation as in ``noisejump.processes.forward``: signal_t =
sqrt(abar_t), sigma_t = sqrt(1 - abar_t) (Ho et al. 2020, eq. 4); s is the per-element
noise scale of a diagonal family (sqrt of its variance; 1 for isotropic noise); z is the
keyed white noise of ``noisejump.rng``.

Coefficients arrive as float32 (B,) tables gathered from the float64 schedule; the pass
computes in float32, rounds e to x0's dtype and computes x_t from e as stored.
"""

# No "from __future__ import annotations": torch.library reads the op's annotations as
# types (older torch releases do not evaluate string annotations).
import torch

from ..rng import key_words, keyed_normal
from .dispatch import math_mode, use_triton

__all__ = ["q_sample_keyed", "q_sample_reference", "KERNEL_DTYPES"]

KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BLOCK = 256  # Philox groups per program (4 BLOCK elements); the noise never depends on it


def q_sample_reference(x0, signal, sigma, scale, words, seed_lo, seed_hi, stream):
    """Plain torch: (x_t, e) with e = s * z rounded to x0's dtype, x_t from e as stored."""
    batch = x0.shape[0]
    z = keyed_normal(x0.shape, seed=seed_lo | seed_hi << 32, keys=words.T, stream=stream)
    z = z.reshape(batch, -1)
    if scale is not None:
        z = z * scale.reshape(1, -1)
    noise = z.to(x0.dtype)
    flat = x0.reshape(batch, -1).float()
    x_t = torch.addcmul(signal.reshape(-1, 1) * flat, sigma.reshape(-1, 1), noise.float())
    return x_t.to(x0.dtype).reshape(x0.shape), noise.reshape(x0.shape)


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
    if use_triton(x0.device) and x0.dtype in KERNEL_DTYPES:
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
    ctx.save_for_backward(inputs[1])
    ctx.x0_dim = inputs[0].dim()


def _backward(ctx, grad_x_t, grad_noise):
    """d x_t / d x0 = signal_b: the gradient reaches x0 (e.g. latents of a trained encoder)."""
    (signal,) = ctx.saved_tensors
    shape = (-1,) + (1,) * (ctx.x0_dim - 1)
    grad_x0 = (grad_x_t.float() * signal.reshape(shape)).to(grad_x_t.dtype)
    return grad_x0, None, None, None, None, None, None, None, None, None


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
    """x_t = signal_b x0 + sigma_b s e in one pass, with keyed noise (``noisejump.rng``).

    Args:
        x0: (B, ...) float16, bfloat16 or float32 for the kernel (float64: torch reference).
        signal, sigma: float32 tensors with B entries (or one entry): sqrt(abar_t),
            sqrt(1 - abar_t) gathered at each sample's step.
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
    (seed_lo, seed_hi), key_a, key_b = key_words(seed, keys, batch, stream)
    words = torch.stack([key_a, key_b]).to(x0.device)  # (2, B): contiguous rows
    coefficients = []
    for name, value in (("signal", signal), ("sigma", sigma)):
        if not isinstance(value, torch.Tensor) or value.numel() not in (1, batch):
            raise ValueError(
                f"{name} must be a tensor with 1 or {batch} entries, got {value!r:.80}"
            )
        value = value.to(device=x0.device, dtype=torch.float32).reshape(-1)
        coefficients.append(value.expand(batch).contiguous())
    if scale is not None:
        if tuple(scale.shape) != tuple(x0.shape[1:]):
            raise ValueError(
                f"scale must have one sample's shape {tuple(x0.shape[1:])}, "
                f"got {tuple(scale.shape)}"
            )
        scale = scale.to(device=x0.device, dtype=torch.float32).reshape(-1).contiguous()
    x_t, noise = _q_sample_op(
        x0, *coefficients, scale, words, seed_lo, seed_hi, stream, store_noise, fast
    )
    return x_t, noise if store_noise else None


def diagonal_scale(family, shape: tuple[int, ...]):
    """(True, s) when ``family`` draws L e = s * e for a batch of ``shape``: (True, None)
    for isotropic noise, (True, sqrt(variance)) for a diagonal family (eigenbasis
    "identity", white shape = sample shape); (False, None) otherwise."""
    shape = tuple(shape)
    if family.is_isotropic:
        return True, None
    if family.eigenbasis == "identity" and tuple(family.white_shape(shape)) == shape:
        return True, family.variance(shape[1:]).sqrt()
    return False, None


def fused_noise_scale(family, x0: torch.Tensor):
    """(True, s) when the fused pass serves ``family`` for ``x0`` (backend, dtype, a
    diagonal family: ``diagonal_scale``), else (False, None)."""
    if not use_triton(x0.device) or x0.dtype not in KERNEL_DTYPES or x0.dim() < 1:
        return False, None
    return diagonal_scale(family, tuple(x0.shape))
