"""Triton: four keyed normals per Philox call, the same stream as ``noisejump.rng``.

Imported only when a kernel runs (triton is optional). Notation as in ``noisejump.rng``.
"""

import triton
import triton.language as tl
from triton.language.extra import libdevice

# float32(2 pi) and 2^-23, as in noisejump.rng.
TWO_PI: tl.constexpr = 6.283185307179586
INV_2_23: tl.constexpr = 1.1920928955078125e-07


@triton.jit
def _uniform(bits):
    """u = (floor(x / 2^9) + 1/2) / 2^23: exact in float32, in (0, 1)."""
    return ((bits >> 9).to(tl.float32) + 0.5) * INV_2_23


@triton.jit
def _box_muller(u_radius, u_angle, LIBDEVICE: tl.constexpr):
    """(r cos theta, r sin theta), r = sqrt(-2 log u_radius), theta = 2 pi u_angle.

    LIBDEVICE: accurate CUDA libdevice functions; otherwise Triton's math functions
    (approximate on GPUs: the fast mode; numpy's float32 functions in the interpreter)."""
    theta = u_angle * TWO_PI
    if LIBDEVICE:
        radius = libdevice.sqrt_rn(-2.0 * libdevice.log(u_radius))
        return radius * libdevice.cos(theta), radius * libdevice.sin(theta)
    else:
        radius = tl.sqrt(-2.0 * tl.log(u_radius))
        return radius * tl.cos(theta), radius * tl.sin(theta)


@triton.jit
def keyed_normal4(seed, group, stream, key_a, key_b, LIBDEVICE: tl.constexpr):
    """Normals of elements 4 g .. 4 g + 3 for the groups ``group`` (a block of BLOCK int
    indices) of one sample: Philox 4x32-10 of (g, stream, key_a, key_b) under the key
    (seed mod 2^32, seed >> 32). Returns a block of 4 BLOCK float32, element order."""
    g = group.to(tl.uint32)
    zero = g * 0
    x0, x1, x2, x3 = tl.philox(
        seed, g, zero + stream.to(tl.uint32), zero + key_a.to(tl.uint32), zero + key_b.to(tl.uint32)
    )
    z0, z1 = _box_muller(_uniform(x0), _uniform(x1), LIBDEVICE)
    z2, z3 = _box_muller(_uniform(x2), _uniform(x3), LIBDEVICE)
    # interleave(interleave(z0, z2), interleave(z1, z3)) = z0, z1, z2, z3 of g, then g + 1, ...
    return tl.interleave(tl.interleave(z0, z2), tl.interleave(z1, z3))
