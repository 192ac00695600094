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

# No "from __future__ import annotations": torch.library reads the op's annotations as types.
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ._numpy import from_numpy
from .checks import as_device, as_int64, check_count, check_device, check_range
from .shards import Shard, check_shard, full_event, shard_runs

__all__ = [
    "philox4x32",
    "philox_round",
    "uniform_from_bits",
    "box_muller",
    "keyed_normal",
    "key_words",
    "normal_from_words",
    "training_keys",
    "check_distinct_keys",
]

MASK32 = 0xFFFFFFFF
# Philox 4x32 round multipliers and Weyl key increments (Salmon et al. 2011, table 2).
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
PHILOX_ROUNDS = 10
# float32(2 pi): the angle is u_b * TWO_PI rounded to float32, the same on every device.
TWO_PI = 6.283185307179586
MAX_GROUPS = 2**32
CHUNK_WORDS = 2**16  # counters per block on the CPU (keyed_normal)
NUMPY_WORDS = 2**12  # up to this many counters a CPU draw takes NumPy's integers
I64 = torch.int64


def philox4x32(
    c0: torch.Tensor | int,
    c1: torch.Tensor | int,
    c2: torch.Tensor | int,
    c3: torch.Tensor | int,
    k0: int,
    k1: int,
    rounds: int = PHILOX_ROUNDS,
) -> tuple[torch.Tensor, ...]:
    """Philox 4x32-``rounds`` of the counter (c0, c1, c2, c3) under the key (k0, k1).

    Counter words are int64 tensors (broadcastable) holding values in [0, 2^32); the key
    words are Python ints. Returns the four output words as int64 tensors in [0, 2^32).
    One round is ``philox_round``; the key is bumped by (W0, W1) mod 2^32 after each.
    """
    words = torch.broadcast_tensors(*(torch.as_tensor(c, dtype=I64) for c in (c0, c1, c2, c3)))
    shape = words[0].shape
    w0, w1, w2, w3 = (w.reshape(1, -1) for w in words)
    (x0, x2), (x1, x3) = _philox_pairs(w0, w1, w2, w3, k0, k1, rounds)
    return tuple(x.reshape(shape) for x in (x0, x1, x2, x3))


def philox_round(
    c0: torch.Tensor | int,
    c1: torch.Tensor | int,
    c2: torch.Tensor | int,
    c3: torch.Tensor | int,
    k0: int,
    k1: int,
) -> tuple[torch.Tensor | int, torch.Tensor | int, torch.Tensor | int, torch.Tensor | int]:
    """One Philox 4x32 round (Salmon et al. 2011, section 4.2), hi:lo the 64-bit products:

        hi0:lo0 = M0 c0,  hi1:lo1 = M1 c2
        (c0, c1, c2, c3) <- (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)

    on broadcastable int64 tensors (work follows the broadcast shapes)."""
    # c M_s with M_s = M - 2^32 stays inside int64; c M = c M_s + c 2^32 (module docstring).
    products0, products1 = c0 * (PHILOX_M0 - 2**32), c2 * (PHILOX_M1 - 2**32)
    hi0 = ((products0 >> 32) + c0) & MASK32
    hi1 = ((products1 >> 32) + c2) & MASK32
    return hi1 ^ (c1 ^ k0), products1 & MASK32, hi0 ^ (c3 ^ k1), products0 & MASK32


def _round_key(k0: int, k1: int, r: int) -> tuple[int, int]:
    """The key of round r: (k0 + r W0, k1 + r W1) mod 2^32."""
    return (k0 + r * PHILOX_W0) & MASK32, (k1 + r * PHILOX_W1) & MASK32


def _philox_pairs(
    c0: torch.Tensor | int,
    c1: torch.Tensor | int,
    c2: torch.Tensor | int,
    c3: torch.Tensor | int,
    k0: int,
    k1: int,
    rounds: int = PHILOX_ROUNDS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Philox on broadcastable counter words, the outputs as stacked pairs of shape
    (2, *broadcast shape): ((x0, x2), (x1, x3)), the Box-Muller radius and angle words.

    The first two rounds follow the broadcast shapes (``keyed_normal``'s counters vary
    along the groups or along the samples only, so they are cheap); the rest run in place.
    """
    for r in range(min(2, rounds)):
        c0, c1, c2, c3 = philox_round(c0, c1, c2, c3, *_round_key(k0, k1, r))
    # Stacked lanes, all arithmetic in place in four buffers (a fresh multi-megabyte tensor
    # per operation would cost page faults). The multiplied pair alternates between
    # (c0, c2) on even rounds and (c2, c0) on odd ones, so its products are always the
    # previous round's lo words crossed over: c1 and c3 are never copied or masked (their
    # high bits only meet xors, and the mask of the new words clears them).
    words = torch.broadcast_tensors(*(torch.as_tensor(c, dtype=I64) for c in (c0, c1, c2, c3)))
    multiplied = torch.stack([words[0], words[2]]).reshape(2, -1)
    lo_words = torch.stack([words[1], words[3]]).reshape(2, -1)
    products, hi = torch.empty_like(multiplied), torch.empty_like(multiplied)
    m0, m1 = PHILOX_M0 - 2**32, PHILOX_M1 - 2**32
    device = multiplied.device
    multipliers = torch.tensor([[m0, m1], [m1, m0]], dtype=I64, device=device).reshape(2, 2, 1)
    key_pairs = [_round_key(k0, k1, r) for r in range(rounds)]
    key_pairs = [k[::-1] if r % 2 == 0 else k for r, k in enumerate(key_pairs)]
    round_keys = torch.tensor(key_pairs, dtype=I64, device=device).reshape(-1, 2, 1)
    for r in range(2, rounds):  # even rounds start with (c0, c2) and (c1, c3), as here
        torch.mul(multiplied, multipliers[r % 2], out=products)
        torch.bitwise_right_shift(products, 32, out=hi)
        hi.add_(multiplied)  # hi of the 64-bit products
        hi[0].bitwise_xor_(lo_words[1])
        hi[1].bitwise_xor_(lo_words[0])
        hi.bitwise_xor_(round_keys[r]).bitwise_and_(MASK32)
        multiplied, hi = hi, multiplied
        lo_words, products = products, lo_words
    # After an odd last round: multiplied = (c0, c2) and the products (M1 c2, M0 c0), whose
    # lo words are (c1, c3); after an even last round both pairs are reversed.
    lo_words.bitwise_and_(MASK32)
    if rounds > 2 and rounds % 2:
        multiplied, lo_words = multiplied.flip(0), lo_words.flip(0)
    shape = (2, *words[0].shape)
    return multiplied.reshape(shape), lo_words.reshape(shape)


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """u = (floor(x / 2^9) + 1/2) / 2^23 = floor(x / 2^9) 2^-23 + 2^-24, a float32 in (0, 1).

    The top 23 bits of the 32-bit word x; the half offset keeps u away from 0 (log u is
    finite: |z| <= sqrt(-2 log 2^-24) = 5.77) and from 1, and every step is exact in float32.
    """
    # floor(x / 2^9) 2^9 has at most 23 significant bits: exact in float32.
    return (bits & 0xFFFFFE00).to(torch.float32).mul_(2.0**-32).add_(2.0**-24)


def box_muller(u_radius: torch.Tensor, u_angle: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two independent N(0, 1) from two uniforms (Box & Muller 1958):
    r = sqrt(-2 log u_radius), theta = 2 pi u_angle; returns (r cos theta, r sin theta)."""
    radius = torch.log(u_radius).mul_(-2.0).sqrt_()
    theta = u_angle * TWO_PI
    return radius * torch.cos(theta), radius.mul_(theta.sin_())


def key_words(
    seed: int,
    keys: torch.Tensor,
    batch: int,
    stream: int = 0,
    device: torch.device | None = None,
) -> tuple[tuple[int, int], torch.Tensor, torch.Tensor]:
    """Check ``seed``, ``keys`` (one per sample) and ``stream``; return the Philox key
    (k0, k1) and the per-sample counter words (key_a, key_b) as int64 tensors (B,).

    Keys of any integer dtype: a (B,) key is one 64-bit value in [0, 2^63) (uint64: in
    [0, 2^64)), a (B, 2) key two 32-bit words. ``device``: the sample's device, where
    the keys must live unless they are on the CPU (``noisejump.checks.check_device``).
    """
    seed, stream, keys = from_numpy(seed), from_numpy(stream), from_numpy(keys)
    for name, value, bound in (("seed", seed, "2^64"), ("stream", stream, "2^32")):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int in [0, {bound}), got {value!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an int in [0, 2^64), got {seed!r}")
    if not 0 <= stream <= MASK32:
        raise ValueError(f"stream must be an int in [0, 2^32), got {stream!r}")
    if (
        not isinstance(keys, torch.Tensor)
        or keys.dtype.is_floating_point
        or keys.dtype.is_complex
        or keys.dtype == torch.bool
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
    if device is not None:
        check_device(keys, device, "keys", "the sample")
    if keys.dtype == torch.uint64 and keys.dim() == 1:
        # Every uint64 is a key: its bits, read as int64, split into the same two words.
        words = keys.view(torch.int64)
    elif keys.dtype == torch.uint64:  # 32-bit words: values >= 2^63 are named as given
        allowed = f"integers in [0, {MASK32}]"
        words = as_int64(keys, "keys", allowed)
        check_range(words, 0, MASK32, name="keys", allowed=allowed)
    else:
        words = keys.to(I64)
        largest = 2**63 - 1 if keys.dim() == 1 else MASK32
        check_range(words, 0, largest, name="keys", allowed=f"integers in [0, {largest}]")
    if keys.dim() == 1 and keys.dtype == torch.uint64:  # bits of int64 < 0: mask the sign
        key_a, key_b = words & MASK32, (words >> 32) & MASK32
    elif keys.dim() == 1:  # in [0, 2^63): the high word needs no mask
        key_a, key_b = words & MASK32, words >> 32
    else:
        key_a, key_b = words[:, 0], words[:, 1]
    return (seed & MASK32, seed >> 32), key_a, key_b


def keyed_normal(
    shape: Sequence[int],
    *,
    seed: int,
    keys: torch.Tensor,
    stream: int = 0,
    device: torch.device | str | None = None,
    shard: Any = None,
) -> torch.Tensor:
    """Standard normal noise of ``shape`` (batch first), keyed per sample: float32.

    Sample b, element n (C-order index within the sample) = z_{n mod 4} of Philox 4x32-10
    at counter (n // 4, stream, key_a[b], key_b[b]) under key (seed mod 2^32, seed >> 32),
    through ``uniform_from_bits`` and ``box_muller`` (module docstring).

    Args:
        shape: (B, ...) the shape of the noise.
        seed: int in [0, 2^64).
        keys: integer tensor (B,) (values in [0, 2^63); uint64: [0, 2^64)) or (B, 2)
            (32-bit words), on the CPU or on ``device``.
        stream: int in [0, 2^32): independent streams for the same (seed, keys).
        device: where to build it (default: keys' device).
        shard: (axis, start, stop, size): ``shape`` holds elements [start, stop) along
            event axis ``axis`` of samples whose full length there is ``size``; each element
            gets the value it has in the full sample (``noisejump.shards``), so the shards
            put together are the unsharded noise, bitwise.
    """
    shape = tuple(check_count(n, "shape entries") for n in shape)
    if len(shape) < 1:
        raise ValueError("shape must have a batch dimension, got ()")
    keys = from_numpy(keys)
    if device is None:
        device = keys.device if isinstance(keys, torch.Tensor) else torch.device("cpu")
    device = as_device(device)
    seed_words, key_a, key_b = key_words(seed, keys, shape[0], stream, device)
    checked = None if shard is None else check_shard(shard, shape[1:])
    n_elements = math.prod(full_event(checked, shape[1:]) if checked else shape[1:])
    if n_elements > 4 * MAX_GROUPS:
        raise ValueError(
            f"a sample of {n_elements} elements exceeds the 2^34 elements one key can address"
        )
    words = torch.stack([key_a, key_b]).to(device)
    return normal_from_words(shape, seed_words, words, stream, checked)


def normal_from_words(
    shape: tuple[int, ...],
    seed_words: tuple[int, int],
    words: torch.Tensor,
    stream: int,
    shard: Shard | None = None,
) -> torch.Tensor:
    """``keyed_normal`` from checked words: the Philox key (k0, k1) and the per-sample
    counter words ``words`` (2, B) int64 (key_a and key_b rows), on the noise's device;
    ``shard`` (checked, ``noisejump.shards``): ``shape`` is the slice's, and its elements
    take the counters they have in the full sample.

    Eagerly this runs the integer code directly; while torch.compile traces it is the
    custom op ``noisejump::keyed_normal``, opaque to the compiler, so compiled noise is
    bitwise the eager noise (an inductor-fused Philox once multiplied arange-derived
    counters in 32-bit index arithmetic and overflowed, and fused Box-Muller rounds its
    transcendentals differently).
    """
    if torch.compiler.is_compiling():
        shard_ints = [] if shard is None else list(shard)
        return _keyed_normal_op(
            words, seed_words[0], seed_words[1], stream, list(shape), shard_ints
        )
    return _normal(shape, seed_words, words, stream, shard)


def _normal(
    shape: tuple[int, ...],
    seed_words: tuple[int, int],
    words: torch.Tensor,
    stream: int,
    shard: Shard | None = None,
) -> torch.Tensor:
    batch, event = shape[0], tuple(shape[1:])
    outer, run, stride, offset = shard_runs(shard, event)
    device = words.device
    if outer == 1 and offset % 4 == 0:  # one run from a group boundary (unsharded: all)
        first, n_groups = offset // 4, -(-run // 4)
        groups = torch.arange(first, first + n_groups, dtype=I64, device=device)
        z = _normal_groups(groups, seed_words, words, stream).reshape(batch, 4 * n_groups)
        if 4 * n_groups != run:
            z = z[:, :run].contiguous()
        return z.reshape(shape)
    # Run o covers elements lo_o .. lo_o + run - 1: the groups from lo_o // 4 on, of which
    # it takes the normals from lane lo_o % 4 on. lo_o % 4 repeats with period <= 4 in o.
    starts = torch.arange(outer, dtype=I64, device=device) * stride + offset
    lead = max((o * stride + offset) % 4 for o in range(min(outer, 4)))
    n_groups = -(-(lead + run) // 4)
    groups = (starts // 4)[:, None] + torch.arange(n_groups, dtype=I64, device=device)
    z = _normal_groups(groups.flatten(), seed_words, words, stream)
    z = z.reshape(batch, outer, 4 * n_groups)
    lanes = (starts % 4)[:, None] + torch.arange(run, dtype=I64, device=device)
    return z.gather(2, lanes.expand(batch, outer, run)).reshape(shape)


def _normal_groups(
    groups: torch.Tensor, seed_words: tuple[int, int], words: torch.Tensor, stream: int
) -> torch.Tensor:
    """(B, G, 4) normals of the counter groups ``groups`` (G,) int64 of every sample:
    element 4 g + j of sample b is [b, i, j] where groups[i] = g."""
    batch, n_groups = words.shape[1], len(groups)
    k0, k1 = seed_words
    device = words.device
    if device.type == "cpu" and batch * n_groups <= NUMPY_WORDS:
        # Small batches: the same integers, and the uniforms (exact), from NumPy, whose
        # per-operation cost is a fraction of torch's; Box-Muller stays in torch.
        u = _uniforms_numpy(groups.numpy().astype(np.uint64), stream, words.numpy(), k0, k1)
        return _normals(torch.from_numpy(u[0]), torch.from_numpy(u[1]))
    key_a, key_b = words[0].reshape(batch, 1), words[1].reshape(batch, 1)
    z = torch.empty(batch, n_groups, 4, device=device)  # element 4 g + j of each sample
    # Blocks of about CHUNK_WORDS counters: the temporaries stay small and cache-resident
    # and their memory is reused from block to block (fresh large buffers cost page
    # faults).
    width = n_groups if device.type != "cpu" else max(1, CHUNK_WORDS // batch)
    for start in range(0, n_groups, width):
        group = groups[start : start + width]
        radius_words, angle_words = _philox_pairs(group, stream, key_a, key_b, k0, k1)
        z[:, start : start + width] = _normals(
            uniform_from_bits(radius_words), uniform_from_bits(angle_words)
        )
    return z


def _normals(u_radius: torch.Tensor, u_angle: torch.Tensor) -> torch.Tensor:
    """(B, G, 4) normals from the uniforms of the stacked output words ((x0, x2) and
    (x1, x3), each (2, B, G)): (x0, x1) give z0 = r cos theta and z1 = r sin theta, (x2, x3)
    give z2 and z3."""
    z_cos, z_sin = box_muller(u_radius, u_angle)
    return torch.stack((z_cos[0], z_sin[0], z_cos[1], z_sin[1]), dim=-1)


def _uniforms_numpy(
    group: np.ndarray, stream: int, words: np.ndarray, k0: int, k1: int
) -> np.ndarray:
    """``uniform_from_bits`` of ``_philox_pairs`` for counters (group, stream, key_a, key_b),
    groups (G,) and per-sample words (2, B), in NumPy: float32 (2, 2, B, G), the radius
    uniforms (of x0, x2) then the angle uniforms (of x1, x3). Bitwise the torch values: the
    integers are exact in uint64 (a 32 x 32-bit product fits, so hi = p >> 32 and
    lo = p & MASK32 directly), and so is every step of the uniform.

    One round on the multiplied pair m = (c0, c2) and the other l = (c1, c3):
    m <- (hi(M1 c2) ^ c1 ^ k0, hi(M0 c0) ^ c3 ^ k1), l <- (lo(M1 c2), lo(M0 c0)).
    """
    batch, n_groups = words.shape[1], len(group)
    u64 = words.astype(np.uint64)
    out = np.empty((2, 2, batch, n_groups), dtype=np.uint64)
    m, low = out[0], out[1]
    m[0], m[1] = group[None, :], u64[0][:, None]
    low[0], low[1] = np.uint64(stream), u64[1][:, None]
    multipliers, round_keys = _NUMPY_MULTIPLIERS, _numpy_round_keys(k0, k1)
    mask, shift = np.uint64(MASK32), np.uint64(32)
    for r in range(PHILOX_ROUNDS):
        products = m * multipliers
        m = (products >> shift)[::-1] ^ low ^ round_keys[r]
        low = (products & mask)[::-1]
    out[0], out[1] = m, low
    # (floor(x / 2^9) + 1/2) / 2^23, as uniform_from_bits: exact in float32.
    u = (out & np.uint64(0xFFFFFE00)).astype(np.float32)
    u *= np.float32(2.0**-32)
    u += np.float32(2.0**-24)
    return u


_NUMPY_MULTIPLIERS = np.array([PHILOX_M0, PHILOX_M1], dtype=np.uint64).reshape(2, 1, 1)


@functools.lru_cache(maxsize=64)
def _numpy_round_keys(k0: int, k1: int) -> np.ndarray:
    """The ten round keys of the Philox key (k0, k1), (rounds, 2, 1, 1) uint64 (read-only)."""
    keys = [_round_key(k0, k1, r) for r in range(PHILOX_ROUNDS)]
    table = np.array(keys, dtype=np.uint64).reshape(PHILOX_ROUNDS, 2, 1, 1)
    table.flags.writeable = False
    return table


@torch.library.custom_op("noisejump::keyed_normal", mutates_args=())
def _keyed_normal_op(
    words: torch.Tensor, seed_lo: int, seed_hi: int, stream: int, shape: list[int], shard: list[int]
) -> torch.Tensor:
    checked = Shard(*shard) if shard else None
    return _normal(tuple(shape), (seed_lo, seed_hi), words, stream, checked)


@_keyed_normal_op.register_fake
def _(words, seed_lo, seed_hi, stream, shape, shard):  # type: ignore[no-untyped-def]
    return words.new_empty(shape, dtype=torch.float32)


# ---- keys for a training loop ----------------------------------------------------------------


def training_keys(
    indices: torch.Tensor, step: int, *, micro_step: int = 0, micro_steps: int = 1
) -> torch.Tensor:
    """(B, 2) int64 keys (key_a, key_b) = (index, step * micro_steps + micro_step).

    The contract (docs/keyed-noise.md, "Keys in a training loop"): within one optimiser
    step every sample, over all micro-batches and all ranks, needs its own key, or two
    samples get the same noise. ``indices`` names the sample: its data set index (or a
    global sample counter), never its position in the batch, which repeats in every
    micro-batch and on every rank. With the defaults the key is (index, step): the noise
    of a sample then does not depend on how the step is split into micro-batches or
    ranks. Pass ``micro_step`` (0 .. ``micro_steps`` - 1, the micro-batch within the step)
    only where one index can occur in several micro-batches of a step (sampling with
    replacement, a data set smaller than the step); the noise then depends on the split.
    ``check_distinct_keys`` catches a reused key.

    Args:
        indices: (B,) integer tensor, values in [0, 2^32).
        step: the optimiser step, an int >= 0.
        micro_step, micro_steps: the micro-batch within the step and their number.
    Returns:
        (B, 2) int64 on ``indices``' device, the per-sample ``keys`` of ``keyed_normal``
        and ``ForwardProcess.q_sample``.
    """
    indices = from_numpy(indices)
    if not isinstance(indices, torch.Tensor) or indices.dtype.is_floating_point:
        kind = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise TypeError(f"indices must be an integer tensor of shape (B,), got {kind}")
    if indices.dtype in (torch.bool, torch.complex64, torch.complex128) or indices.dim() != 1:
        raise TypeError(
            f"indices must be an integer tensor of shape (B,), got {indices.dtype} of shape "
            f"{tuple(indices.shape)}"
        )
    step, micro_step, micro_steps = (
        check_count(v, n)
        for v, n in ((step, "step"), (micro_step, "micro_step"), (micro_steps, "micro_steps"))
    )
    if micro_steps < 1 or not 0 <= micro_step < micro_steps:
        raise ValueError(
            f"need 0 <= micro_step < micro_steps, got micro_step={micro_step}, "
            f"micro_steps={micro_steps}"
        )
    word_b = step * micro_steps + micro_step
    if word_b > MASK32:
        raise ValueError(
            f"step * micro_steps + micro_step = {word_b} exceeds the 32-bit key word "
            f"(step={step}, micro_steps={micro_steps})"
        )
    indices = as_int64(indices, "indices", "integers in [0, 2^32)")
    check_range(indices, 0, MASK32, name="indices", allowed="integers in [0, 2^32)")
    return torch.stack([indices, torch.full_like(indices, word_b)], dim=1)


def check_distinct_keys(keys: torch.Tensor) -> None:
    """Raise ValueError if two rows of ``keys`` are equal: they would get the same noise.

    Give it every key of one step: ``torch.cat`` of the micro-batches' keys, and with
    several ranks the keys gathered from all of them (``torch.distributed.all_gather``).
    A (B,) key K equals the pair (K mod 2^32, K >> 32), so both forms may be mixed by
    converting first. Costs a sort and, on a GPU, one host sync: a check for the first
    steps of a run or for tests, not for every step.
    """
    keys = from_numpy(keys)
    integer = isinstance(keys, torch.Tensor) and not (
        keys.dtype.is_floating_point or keys.dtype.is_complex or keys.dtype == torch.bool
    )
    if not integer or keys.dim() not in (1, 2) or keys.dim() == 2 and keys.shape[1] != 2:
        what = (
            f"{keys.dtype} of shape {tuple(keys.shape)}"
            if isinstance(keys, torch.Tensor)
            else type(keys).__name__
        )
        raise TypeError(f"keys must be an integer tensor of shape (B,) or (B, 2), got {what}")
    if keys.device.type == "meta":
        raise ValueError("keys are on meta: their values are needed to compare them")
    if len(keys) < 2:
        return
    rows = keys.reshape(len(keys), -1)
    unique, inverse, counts = torch.unique(rows, dim=0, return_inverse=True, return_counts=True)
    if len(unique) == len(rows):
        return
    repeated = int(torch.nonzero(counts > 1)[0])
    where = torch.nonzero(inverse == repeated).flatten().tolist()
    raise ValueError(
        f"key {unique[repeated].tolist()} is used by rows {where[:8]} of {len(rows)}: "
        f"those samples would get the same noise. Key each sample by its data set index "
        f"and the step (training_keys), not by its position in the batch"
    )
