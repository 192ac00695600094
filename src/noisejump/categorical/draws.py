"""Random draws for tokens: keyed uniforms from the Philox stream, and categorical draws.

Keyed layout (the contract; ``docs/keyed-noise.md`` gives the Gaussian one). Token n of
sample b (its C-order index within the sample) uses one Philox 4x32-10 counter group,

    counter (n, stream, key_a[b], key_b[b]) under key (seed mod 2^32, seed >> 32)

the counter words of ``noisejump.rng.keyed_normal`` with the group index n, and its four
output words x0..x3 make two uniforms of 52 bits each:

    u_keep = (2 k + 1) 2^-53,  k = (x0 >> 12) 2^32 + x1
    u_draw = (2 k + 1) 2^-53,  k = (x2 >> 12) 2^32 + x3

float64 in (0, 1), exact (2 k + 1 < 2^53). Draws of tokens use ``TOKEN_STREAM`` (2^30),
and step k of a forced chain ``TOKEN_STREAM + 1 + k``: apart from the Gaussian noise
(stream 0, and 2^31 on) and the training loop's timestep uniforms (stream 1), so an image
and its tokens drawn with the same seed and keys share no Philox output. A sample's draws
depend only on (seed, its key): any sub-batch gets exactly its rows of the full batch.

52 bits, not the 23 of a float32 uniform: a class drawn as floor(u K) from a float32 u
would be off by up to K / 2^23 of its probability (0.6 % for a 50 257-token vocabulary).

``categorical_draw(probs, u)`` is the inverse CDF: the first state whose cumulative
probability exceeds u times the total, never a state of probability 0.
"""

from __future__ import annotations

import math

import torch

from ..rng import MASK32, key_words, philox4x32

__all__ = ["TOKEN_STREAM", "keyed_token_uniforms", "categorical_draw"]

TOKEN_STREAM = 2**30
F64 = torch.float64


def keyed_token_uniforms(
    shape: tuple[int, ...],
    *,
    seed: int,
    keys: torch.Tensor,
    stream: int = TOKEN_STREAM,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(u_keep, u_draw), float64 uniforms of ``shape`` (batch first) on ``device``, keyed
    per sample (module docstring)."""
    batch, n_tokens = shape[0], math.prod(shape[1:])
    device = torch.device("cpu") if device is None else device
    (k0, k1), key_a, key_b = key_words(seed, keys, batch, stream, device)
    if n_tokens > MASK32 + 1:
        raise ValueError(f"a sample of {n_tokens} tokens exceeds the 2^32 one key can address")
    group = torch.arange(n_tokens, dtype=torch.int64, device=device)
    key_a, key_b = key_a.to(device).reshape(batch, 1), key_b.to(device).reshape(batch, 1)
    x0, x1, x2, x3 = philox4x32(group, stream, key_a, key_b, k0, k1)
    return _uniform52(x0, x1).reshape(shape), _uniform52(x2, x3).reshape(shape)


def _uniform52(high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """(2 k + 1) 2^-53 with k = (high >> 12) 2^32 + low < 2^52: exact in float64."""
    k = ((high >> 12) << 32) | low
    return k.to(F64).mul_(2.0**-52).add_(2.0**-53)


def categorical_draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The state of each row of ``probs`` (..., S) (non-negative, any positive total) at
    the uniform ``u`` (...) in [0, 1): the first j with cdf_j > u cdf_S, int64.

    A state of probability 0 is never returned: it would need cdf_(j-1) <= v < cdf_j with
    cdf_j = cdf_(j-1); a v rounded up to the total falls back to the last state that has
    probability."""
    cdf = probs.cumsum(-1)
    v = (u.to(cdf.dtype) * cdf[..., -1])[..., None]
    index = (cdf <= v).sum(-1)
    positive = probs > 0
    last = probs.shape[-1] - 1 - positive.flip(-1).to(torch.int8).argmax(-1)
    return torch.minimum(index, last)
