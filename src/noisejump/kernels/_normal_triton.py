"""Triton: four keyed normals per Philox call, the same stream as ``noisejump.rng``.

Imported only when a kernel runs (triton is optional). Notation as in ``noisejump.rng``.
"""

import triton
import triton.language as tl
from triton.language.extra import libdevice

# float32(2 pi) and 2^-23, as in noisejump.rng (globals of a kernel must be constexpr).
TWO_PI = tl.constexpr(6.283185307179586)
INV_2_23 = tl.constexpr(1.1920928955078125e-07)
LN_2 = tl.constexpr(0.6931471805599453)

# How the transcendentals are evaluated (the kernels' MATH argument).
ACCURATE = 0  # CUDA libdevice: logf, cosf, sinf, correctly rounded sqrt
FAST = 1  # PTX approximations: lg2.approx, cos.approx, sin.approx, sqrt.approx
PORTABLE = 2  # Triton's math functions (what Triton's CPU interpreter can run)


@triton.jit
def _uniform(bits):
    """u = (floor(x / 2^9) + 1/2) / 2^23: exact in float32, in (0, 1)."""
    return ((bits >> 9).to(tl.float32) + 0.5) * INV_2_23


@triton.jit
def _approx(x, instruction: tl.constexpr):
    """One PTX approximate instruction, e.g. "sin.approx.f32", elementwise on float32."""
    return tl.inline_asm_elementwise(
        instruction + " $0, $1;", "=r,r", [x], dtype=tl.float32, is_pure=True, pack=1
    )


@triton.jit
def _box_muller(u_radius, u_angle, MATH: tl.constexpr):
    """(r cos theta, r sin theta), r = sqrt(-2 log u_radius), theta = 2 pi u_angle, with
    the transcendentals chosen by MATH (ACCURATE, FAST or PORTABLE)."""
    theta = u_angle * TWO_PI
    if MATH == 0:  # ACCURATE
        radius = libdevice.sqrt_rn(-2.0 * libdevice.log(u_radius))
        cos_theta, sin_theta = libdevice.cos(theta), libdevice.sin(theta)
    elif MATH == 1:  # FAST: log u = log2(u) ln 2
        log_u = _approx(u_radius, "lg2.approx.f32") * LN_2
        radius = _approx(-2.0 * log_u, "sqrt.approx.f32")
        cos_theta, sin_theta = _approx(theta, "cos.approx.f32"), _approx(theta, "sin.approx.f32")
    else:  # PORTABLE
        radius = tl.sqrt_rn(-2.0 * tl.log(u_radius))
        cos_theta, sin_theta = tl.cos(theta), tl.sin(theta)
    return radius * cos_theta, radius * sin_theta


@triton.jit
def keyed_normal4(seed, group, stream, key_a, key_b, MATH: tl.constexpr):
    """Normals of elements 4 g .. 4 g + 3 for the groups ``group`` (a block of BLOCK int
    indices) of one sample: Philox 4x32-10 of (g, stream, key_a, key_b) under the key
    (seed mod 2^32, seed >> 32). Returns a block of 4 BLOCK float32, element order."""
    g = group.to(tl.uint32)
    zero = g * 0
    x0, x1, x2, x3 = tl.philox(
        seed, g, zero + stream.to(tl.uint32), zero + key_a.to(tl.uint32), zero + key_b.to(tl.uint32)
    )
    z0, z1 = _box_muller(_uniform(x0), _uniform(x1), MATH)
    z2, z3 = _box_muller(_uniform(x2), _uniform(x3), MATH)
    # interleave(interleave(z0, z2), interleave(z1, z3)) = z0, z1, z2, z3 of g, then g + 1, ...
    return tl.interleave(tl.interleave(z0, z2), tl.interleave(z1, z3))
