"""Counter-based keyed Gaussian noise: Philox 4x32-10 and Box-Muller, in torch integer ops.

The value of every noise element is a pure function of (seed, the sample's key, the
element's index within the sample, stream): it does not change with the batch size, the
batch order, the number of GPUs or the device. This module is the CPU reference; the Triton
kernel (``noisejump.kernels``) produces the same integer stream. The layout below is the
contract (``docs/keyed-noise.md`` spells it out for other implementations).

Notation:

    seed         a 64-bit integer, the Philox key: k0 = seed mod 2^32, k1 = seed >> 32
    keys         one per sample, (B,) int64 or (B, 2) 32-bit words: key_a, key_b; a (B,)
                 key K is the pair (K mod 2^32, K >> 32)
    n            an element's logical C-order index within its sample (white shape)
    g, j         n = 4 g + j: the Philox counter group and which of its 4 outputs
    counter      (g, stream, key_a, key_b), four 32-bit words
    x0..x3       the four 32-bit outputs of Philox 4x32-10 (Salmon et al. 2011, SC11,
                 "Parallel random numbers: as easy as 1, 2, 3", section 4.2)
    u            (floor(x / 2^9) + 1/2) / 2^23: a float32 in (0, 1), exact
    z            Box-Muller (Box & Muller 1958): from (x0, x1) and from (x2, x3),
                 r = sqrt(-2 log u_a), theta = 2 pi u_b, z_a = r cos theta, z_b = r sin theta

Element n = 4 g + j takes z_j of counter group g. Philox is a bijection of the counter for
a fixed key, so distinct (g, stream, key_a, key_b) never share a draw.

The 32 x 32 -> 64-bit products never overflow int64: with M_s = M - 2^32 (each Philox
multiplier is >= 2^31), |c M_s| < 2^63 and c M = c M_s + c 2^32, so
lo = (c M_s) mod 2^32 and hi = ((c M_s) >> 32) + c (mod 2^32).
"""

from __future__ import annotations

import math

import torch

__all__ = ["philox4x32", "uniform_from_bits", "box_muller", "keyed_normal", "key_words"]

MASK32 = 0xFFFFFFFF
# Philox 4x32 round multipliers and Weyl key increments (Salmon et al. 2011, table 2).
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUNDS = 10
# float32(2 pi): the angle is u_b * TWO_PI rounded to float32, the same on every device.
TWO_PI = 6.283185307179586
MAX_GROUPS = 2**32
I64 = torch.int64


def philox4x32(c0, c1, c2, c3, k0: int, k1: int, rounds: int = PHILOX_ROUNDS):
    """Philox 4x32-``rounds`` of the counter (c0, c1, c2, c3) under the key (k0, k1).

    Counter words are int64 tensors (broadcastable) holding values in [0, 2^32); the key
    words are Python ints. Returns the four output words as int64 tensors in [0, 2^32).

    One round (Salmon et al. 2011, section 4.2), hi/lo the halves of 64-bit products:
        hi0, lo0 = M0 c0;  hi1, lo1 = M1 c2
        (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
    followed by the key bump k0 += W0, k1 += W1 (mod 2^32).
    """
    words = torch.broadcast_tensors(*(torch.as_tensor(c, dtype=I64) for c in (c0, c1, c2, c3)))
    device, lanes = words[0].device, (2,) + (1,) * words[0].dim()
    # Two stacked lanes: the multiplied words and, aligned with them, the words xored into
    # their hi. Their order alternates every round: (c0, c2) with (c3, c1), then (c2, c0)
    # with (c1, c3); so only the lo pair is reordered (one flip per round).
    multiplied = torch.stack([words[0], words[2]])
    xored = torch.stack([words[3], words[1]])
    # M_s = M - 2^32 keeps c M_s inside int64; c M = c M_s + c 2^32 (module docstring).
    multipliers = [PHILOX_M0 - 2**32, PHILOX_M1 - 2**32]
    round_keys = []
    for r in range(rounds):
        k = [(k0 + r * PHILOX_W0) & MASK32, (k1 + r * PHILOX_W1) & MASK32]
        round_keys.append(k[::-1] if r % 2 == 0 else k)
    round_keys = torch.tensor(round_keys, dtype=I64, device=device)
    multipliers = torch.tensor([multipliers, multipliers[::-1]], dtype=I64, device=device)
    for r in range(rounds):
        products = multiplied * multipliers[r % 2].reshape(lanes)
        hi = (products >> 32).add_(multiplied)
        hi ^= xored
        hi ^= round_keys[r].reshape(lanes)
        multiplied = hi.bitwise_and_(MASK32)
        xored = products.flip(0).bitwise_and_(MASK32)
    if rounds % 2:
        multiplied, xored = multiplied.flip(0), xored.flip(0)
    return multiplied[0], xored[1], multiplied[1], xored[0]


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """u = (floor(x / 2^9) + 1/2) / 2^23, a float32 in (0, 1), computed exactly.

    The top 23 bits of the 32-bit word x; the half offset keeps u away from 0 (log u is
    finite: |z| <= sqrt(-2 log 2^-24) = 5.77) and from 1, and every step is exact in float32.
    """
    return ((bits >> 9).to(torch.float32) + 0.5) * 2.0**-23


def box_muller(u_radius: torch.Tensor, u_angle: torch.Tensor):
    """Two independent N(0, 1) from two uniforms (Box & Muller 1958):
    r = sqrt(-2 log u_radius), theta = 2 pi u_angle; returns (r cos theta, r sin theta)."""
    radius = torch.log(u_radius).mul_(-2.0).sqrt_()
    theta = u_angle * TWO_PI
    return radius * torch.cos(theta), radius.mul_(torch.sin(theta))


def key_words(seed: int, keys: torch.Tensor, batch: int, stream: int = 0):
    """Check ``seed``, ``keys`` (one per sample) and ``stream``; return the Philox key
    (k0, k1) and the per-sample counter words (key_a, key_b) as int64 tensors (B,)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64:
        raise TypeError(f"seed must be an int in [0, 2^64), got {seed!r}")
    if isinstance(stream, bool) or not isinstance(stream, int) or not 0 <= stream <= MASK32:
        raise TypeError(f"stream must be an int in [0, 2^32), got {stream!r}")
    if (
        not isinstance(keys, torch.Tensor)
        or keys.dtype.is_floating_point
        or keys.dtype
        in (
            torch.bool,
            torch.complex64,
            torch.complex128,
        )
    ):
        kind = keys.dtype if isinstance(keys, torch.Tensor) else type(keys).__name__
        raise TypeError(f"keys must be an integer tensor of shape (B,) or (B, 2), got {kind}")
    if keys.dim() not in (1, 2) or (keys.dim() == 2 and keys.shape[1] != 2):
        raise ValueError(f"keys must have shape (B,) or (B, 2), got {tuple(keys.shape)}")
    if keys.shape[0] != batch:
        raise ValueError(
            f"keys has {keys.shape[0]} rows but the batch (first dimension) is {batch}; "
            "give one key per sample"
        )
    keys = keys.to(I64)
    largest = 2**63 - 1 if keys.dim() == 1 else MASK32
    in_range = (keys >= 0) & (keys <= largest)
    if keys.device.type == "cpu":
        if not bool(in_range.all()):
            raise ValueError(
                f"keys must be integers in [0, {largest}], got values in "
                f"[{int(keys.min())}, {int(keys.max())}]"
            )
    else:
        torch._assert_async(in_range.all(), "keys out of range")
    if keys.dim() == 1:
        key_a, key_b = keys & MASK32, keys >> 32
    else:
        key_a, key_b = keys[:, 0], keys[:, 1]
    return (seed & MASK32, seed >> 32), key_a, key_b


def keyed_normal(shape, *, seed: int, keys: torch.Tensor, stream: int = 0, device=None):
    """Standard normal noise of ``shape`` (batch first), keyed per sample: float32.

    Sample b, element n (C-order index within the sample) = z_{n mod 4} of Philox 4x32-10
    at counter (n // 4, stream, key_a[b], key_b[b]) under key (seed mod 2^32, seed >> 32),
    through ``uniform_from_bits`` and ``box_muller`` (module docstring).

    Args:
        shape: (B, ...) the shape of the noise.
        seed: int in [0, 2^64).
        keys: integer tensor (B,) (values in [0, 2^63)) or (B, 2) (32-bit words).
        stream: int in [0, 2^32): independent streams for the same (seed, keys).
        device: where to build it (default: keys' device).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) < 1:
        raise ValueError("shape must have a batch dimension, got ()")
    batch, n_elements = shape[0], math.prod(shape[1:])
    (k0, k1), key_a, key_b = key_words(seed, keys, batch, stream)
    device = keys.device if device is None else torch.device(device)
    n_groups = -(-n_elements // 4)
    if n_groups > MAX_GROUPS:
        raise ValueError(
            f"a sample of {n_elements} elements exceeds the 2^34 elements one key can address"
        )
    key_a = key_a.to(device).reshape(batch, 1)
    key_b = key_b.to(device).reshape(batch, 1)
    group = torch.arange(n_groups, dtype=I64, device=device).reshape(1, n_groups)
    x0, x1, x2, x3 = philox4x32(group, stream, key_a, key_b, k0, k1)
    z0, z1 = box_muller(uniform_from_bits(x0), uniform_from_bits(x1))
    z2, z3 = box_muller(uniform_from_bits(x2), uniform_from_bits(x3))
    z = torch.stack([z0, z1, z2, z3], dim=-1).reshape(batch, 4 * n_groups)
    return z[:, :n_elements].reshape(shape)
