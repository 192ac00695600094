"""Noise levels for sequences: a step per frame or token, clean context, scheduling matrices.

Diffusion forcing (Chen et al. 2024, arXiv 2407.01392) and its descendants give every
frame (or block of tokens) of a sequence its own noise level. Training draws the levels;
sampling walks a scheduling matrix. Code steps as everywhere in noisejump: 0 .. T-1, and
-1 is the data (a clean frame: no transition, x_t = x0 and noise 0 there).

Training (keyed: the levels of sample b depend only on (seed, keys[b])), each (B, F):

    independent_steps      every frame its own step (diffusion forcing training)
    context_steps          one step per sample, the first k frames clean (continuation,
                           image-to-video)
    block_steps            one step per block of tokens (causal blocks)
    autoregressive_steps   frame i noisier by i ar_step, clipped (SkyReels-V2's
                           diffusion forcing, arXiv 2504.13074)

A level is a time u in [0, 1] drawn by a timestep sampler, mapped to step floor(u T)
(clipped to T - 1). ``sampler``: any object with ``sample(n, *, seed, keys) -> (u,
weight)``, keyed (draw b depends only on (seed, keys[b])), as the objective's samplers;
None, the default, is the keyed uniform (``noisejump.objective.samplers.keyed_uniform``,
weight 1). One draw per frame: frame f uses the seed ``frame_seed(seed, f)``, frame 0 the
seed itself, so one level per sample is the sampler's own draw. With ``num_steps=None`` the
levels are continuous times u (float32, -1.0 clean).

Sampling: ``scheduling_matrix(kind, F, S)`` gives rows of levels from the first sampling
iteration to the last, S = pure noise and 0 = clean (module section "Scheduling
matrices"); ``matrix_steps`` maps a level k to the process's step round(k T / S) - 1.

Losses: ``frame_steps`` lays (B, F) steps along a sample's frame axis for ``q_sample`` and
``keyed_mse``; ``frame_weights`` evaluates a loss weighting at each frame's step, 0 at
clean frames.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._numpy import from_numpy
from .checks import check_count
from .noise import NoiseFamily
from .objective.samplers import keyed_uniform
from .objective.weighting import loss_weights

__all__ = [
    "KINDS",
    "autoregressive_steps",
    "block_steps",
    "context_steps",
    "frame_seed",
    "frame_steps",
    "frame_weights",
    "independent_steps",
    "matrix_steps",
    "scheduling_matrix",
]

KINDS = ("full_sequence", "pyramid", "autoregressive", "trapezoid")
#: 2^64 / golden ratio, odd: frame f's seed is seed + f GOLDEN (mod 2^64), distinct per f.
GOLDEN = 0x9E3779B97F4A7C15
MASK64 = 2**64 - 1


# ---- keyed levels for training ----------------------------------------------------------------


def frame_seed(seed: int, frame: int) -> int:
    """The seed of frame (or block) f's level: seed + f GOLDEN mod 2^64 (a Weyl sequence:
    distinct for distinct f; frame 0 keeps the seed)."""
    return (seed + frame * GOLDEN) & MASK64


def _levels(
    sampler: Any, seed: int, keys: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, weight), float64 and float32 (B, count): ``count`` keyed levels per sample, level
    f drawn by ``sampler`` with ``frame_seed(seed, f)``, so sample b's levels depend on
    (seed, keys[b]) only.

    The sampler seam: every level is drawn here. None is the keyed uniform of
    ``noisejump.objective.samplers`` (weight 1); the objective's samplers
    (``get_sampler(name).sample(n, seed=, keys=) -> (t, weight)``) plug in as ``sampler``,
    and becoming the default is the one line below."""
    columns, weights = [], []
    for f in range(count):
        if sampler is None:
            u = keyed_uniform(frame_seed(seed, f), keys)
            weight = torch.ones(len(keys), dtype=torch.float32)
        else:
            u, weight = sampler.sample(len(keys), seed=frame_seed(seed, f), keys=keys)
        columns.append(torch.as_tensor(u).to(torch.float64).reshape(len(keys)))
        weights.append(torch.as_tensor(weight).to(torch.float32).reshape(len(keys)))
    u = torch.stack(columns, dim=1)
    if not bool(((u >= 0) & (u <= 1)).all()):
        raise ValueError(f"sampler {sampler!r} drew times outside [0, 1]: a level is a time u")
    return u, torch.stack(weights, dim=1)


def _to_steps(u: torch.Tensor, num_steps: int | None) -> torch.Tensor:
    """floor(u T) as int64 in [0, T - 1]; continuous time (T None): u as float32."""
    if num_steps is None:
        return u.to(torch.float32)
    return (u * num_steps).floor().to(torch.int64).clamp(0, num_steps - 1)


def independent_steps(
    num_frames: int,
    num_steps: int | None,
    *,
    seed: int,
    keys: torch.Tensor,
    sampler: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every frame its own level, independently: diffusion forcing's training noise
    (Chen et al. 2024, arXiv 2407.01392, Algorithm 1). Returns (steps (B, F), weight
    (B, F) float32), steps int64 in [0, T - 1] (float32 times in [0, 1) for ``num_steps``
    None)."""
    frames, keys = _count(num_frames, "num_frames"), _keys(keys)
    num_steps = _num_steps(num_steps)
    u, weight = _levels(sampler, _seed(seed), keys, frames)
    return _to_steps(u, num_steps), weight


def context_steps(
    num_frames: int,
    context_frames: int,
    num_steps: int | None,
    *,
    seed: int,
    keys: torch.Tensor,
    sampler: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One level per sample for every frame but the first ``context_frames``, which are
    clean (-1): continuation from a clean history, image-to-video with 1 context frame.
    The weight is 0 at clean frames (they add nothing to a loss)."""
    frames, keys = _count(num_frames, "num_frames"), _keys(keys)
    context = _count(context_frames, "context_frames", low=0)
    if context >= frames:
        raise ValueError(
            f"context_frames must be in [0, num_frames - 1] = [0, {frames - 1}] (at least one "
            f"noisy frame), got {context}"
        )
    num_steps = _num_steps(num_steps)
    u, weight = _levels(sampler, _seed(seed), keys, 1)
    steps = _to_steps(u, num_steps).expand(len(keys), frames).clone()
    weight = weight.expand(len(keys), frames).clone()
    steps[:, :context] = -1
    weight[:, :context] = 0.0
    return steps, weight


def block_steps(
    num_tokens: int,
    block_size: int,
    num_steps: int | None,
    *,
    seed: int,
    keys: torch.Tensor,
    context_blocks: int = 0,
    sampler: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One level per block of ``block_size`` consecutive tokens (the last block may be
    shorter), blocks independent: causal block diffusion's training noise. The first
    ``context_blocks`` blocks are clean (-1, weight 0). Returns (B, num_tokens) tensors."""
    tokens, keys = _count(num_tokens, "num_tokens"), _keys(keys)
    size = _count(block_size, "block_size")
    blocks = -(-tokens // size)
    context = _count(context_blocks, "context_blocks", low=0)
    if context >= blocks:
        raise ValueError(
            f"context_blocks must be in [0, {blocks - 1}] ({blocks} blocks of {size} in "
            f"{tokens} tokens; at least one noisy block), got {context}"
        )
    num_steps = _num_steps(num_steps)
    u, weight = _levels(sampler, _seed(seed), keys, blocks)
    steps = _to_steps(u, num_steps)
    steps[:, :context] = -1
    weight[:, :context] = 0.0
    spread = lambda v: v.repeat_interleave(size, dim=1)[:, :tokens]  # noqa: E731
    return spread(steps), spread(weight)


def autoregressive_steps(
    num_frames: int,
    ar_step: float,
    num_steps: int | None,
    *,
    seed: int,
    keys: torch.Tensor,
    sampler: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame i noisier than frame 0 by i ar_step, clipped to the last step: t_i =
    min(t_0 + i ar_step, T - 1) with t_0 one level per sample (SkyReels-V2's diffusion
    forcing, Chen et al. 2025, arXiv 2504.13074, section 3.4: a non-decreasing schedule
    across frames). ``ar_step`` is an int >= 0 of steps (a float >= 0 of time, at most 1,
    for ``num_steps`` None)."""
    frames, keys = _count(num_frames, "num_frames"), _keys(keys)
    num_steps = _num_steps(num_steps)
    ar_step = from_numpy(ar_step)
    if num_steps is not None:
        ar_step = _count(ar_step, "ar_step", low=0)
    elif (
        isinstance(ar_step, bool) or not isinstance(ar_step, (int, float)) or not 0 <= ar_step <= 1
    ):
        raise ValueError(f"ar_step must be a time in [0, 1] for continuous time, got {ar_step!r}")
    u, weight = _levels(sampler, _seed(seed), keys, 1)
    first = _to_steps(u, num_steps)
    offsets = torch.arange(frames, dtype=torch.float64) * ar_step
    if num_steps is None:
        steps = (first.to(torch.float64) + offsets).clamp(max=1.0).to(torch.float32)
    else:
        steps = (first + offsets.to(torch.int64)).clamp(max=num_steps - 1)
    return steps, weight.expand(len(keys), frames).clone()


# ---- scheduling matrices for sampling -------------------------------------------------------


def scheduling_matrix(
    kind: str,
    num_frames: int,
    sampling_steps: int,
    *,
    uncertainty_scale: float | None = None,
) -> torch.Tensor:
    """Levels of every frame at every sampling iteration, int64 (M, F): value S =
    ``sampling_steps`` is pure noise, 0 is clean; rows run from the first sampling
    iteration to the last (the last row is all 0). With u = ``uncertainty_scale``:

        full_sequence   rows S, S - 1, ..., 0, every frame alike (M = S + 1)
        pyramid         M[m, f] = clip(S + floor(f u) - m, 0, S), m = 0 .. S + floor((F - 1) u)
                        (u defaults to 1; Chen et al. 2024, diffusion forcing, as its
                        reference code: later frames stay noisier, farther in the future)
        autoregressive  the pyramid with u = S: frame f starts when frame f - 1 is clean
        trapezoid       M[m, f] = clip(S + floor(min(f, F - 1 - f) u) - m, 0, S),
                        m = 0 .. S + floor(((F - 1) // 2) u): both ends first, symmetric

    The trapezoid of the diffusion forcing reference code pairs column t with column -t
    for t < (F + 1) // 2: -0 is column 0 itself, so the last column takes column 1's
    levels and, for even F, the middle column F // 2 is never written (clean from the
    first iteration); its height also misses the last row. Ours gives column f the levels
    of its distance to the nearer end, min(f, F - 1 - f): symmetric in f, every column
    from S down to 0.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    frames = _count(num_frames, "num_frames")
    top = _count(sampling_steps, "sampling_steps")
    scale = _uncertainty(kind, uncertainty_scale, top)
    index = torch.arange(frames)
    if kind == "trapezoid":
        index = torch.minimum(index, frames - 1 - index)
    delay = torch.floor(index.to(torch.float64) * scale).to(torch.int64)
    rows = top + int(delay.max()) + 1
    m = torch.arange(rows)[:, None]
    return (top + delay[None, :] - m).clamp(0, top)


def matrix_steps(matrix: torch.Tensor, num_steps: int, sampling_steps: int) -> torch.Tensor:
    """A scheduling matrix's levels k in [0, S] as the process's steps round(k T / S) - 1
    (half up): S gives the last step T - 1 (pure noise), 0 gives -1 (clean), int64."""
    T, S = _count(num_steps, "num_steps"), _count(sampling_steps, "sampling_steps")
    matrix = from_numpy(matrix)
    if not isinstance(matrix, torch.Tensor) or matrix.dtype.is_floating_point:
        raise TypeError("matrix must be an integer tensor of levels in [0, sampling_steps]")
    if matrix.numel() and (int(matrix.min()) < 0 or int(matrix.max()) > S):
        raise ValueError(
            f"matrix levels must lie in [0, sampling_steps] = [0, {S}], got "
            f"[{int(matrix.min())}, {int(matrix.max())}]"
        )
    k = matrix.to(torch.int64)
    return (2 * k * T + S) // (2 * S) - 1  # round(k T / S), halves up, in integers


# ---- per-frame steps and weights for q_sample and the losses --------------------------------


def frame_steps(
    steps: torch.Tensor,
    like: torch.Tensor,
    *,
    axis: int | None = None,
    noise: NoiseFamily | None = None,
) -> torch.Tensor:
    """(B, F) steps laid along event axis ``axis`` of samples like ``like`` (batch first):
    shape (B, 1, .., F, .., 1), what ``q_sample`` and ``keyed_mse`` take per element.
    ``axis`` defaults to the frame axis of ``noise`` (a frame family), else 0; F must be
    the sample's size there."""
    steps = from_numpy(steps)
    if not isinstance(steps, torch.Tensor) or steps.dim() != 2:
        shape = tuple(steps.shape) if isinstance(steps, torch.Tensor) else type(steps).__name__
        raise ValueError(f"steps must be a (B, F) tensor, got {shape}")
    event = tuple(like.shape[1:])
    split = None if noise is None else noise.frame_split(event)
    if axis is None:
        axis = 0 if split is None else split[0]
    if not -len(event) <= axis < len(event):
        raise ValueError(f"axis {axis} does not exist for samples of event shape {event}")
    axis %= len(event)
    if split is not None and split[0] != axis:
        raise ValueError(
            f"axis {axis} is not the frame axis of {noise!r} (event axis {split[0]} for "
            f"events {event})"
        )
    if steps.shape[1] != event[axis]:
        where = "the noise family's frame axis" if split is not None else "axis"
        raise ValueError(
            f"steps has {steps.shape[1]} frames but the sample has {event[axis]} along "
            f"{where} (event axis {axis} of {event})"
        )
    view = [1] * len(like.shape)
    view[0], view[axis + 1] = steps.shape[0], steps.shape[1]
    return steps.reshape(view)


def frame_weights(
    schedule: Any,
    steps: torch.Tensor,
    weighting: str = "min_snr",
    *,
    gamma: float = 5.0,
    prediction: str = "epsilon",
) -> torch.Tensor:
    """A loss weighting (``noisejump.objective.weighting``) at each frame's step, float32
    of steps' shape (e.g. (B, F)); 0 at clean frames (step -1), where a weighting of the
    SNR would read +inf. Lay it out with ``frame_steps`` for ``keyed_mse(weights=...)``."""
    steps = from_numpy(steps)
    if not isinstance(steps, torch.Tensor) or steps.dtype.is_floating_point:
        raise TypeError("steps must be an integer tensor of discrete steps (-1 clean)")
    if steps.numel() and int(steps.min()) < -1:
        raise ValueError(f"steps must be >= -1 (-1 is clean), got {int(steps.min())}")
    clean = steps == -1
    weights = loss_weights(schedule, steps.clamp(min=0), weighting, gamma, prediction)
    return torch.where(clean.cpu(), torch.zeros_like(weights), weights).to(steps.device)


# ---- checks ------------------------------------------------------------------------------------


def _count(value: Any, name: str, low: int = 1) -> int:
    return check_count(from_numpy(value), name, low)


def _num_steps(num_steps: Any) -> int | None:
    return None if num_steps is None else _count(num_steps, "num_steps")


def _seed(seed: Any) -> int:
    seed = from_numpy(seed)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MASK64:
        raise ValueError(f"seed must be an int in [0, 2^64), got {seed!r}")
    return seed


def _keys(keys: Any) -> torch.Tensor:
    keys = from_numpy(keys)
    if not isinstance(keys, torch.Tensor) or keys.dim() not in (1, 2) or len(keys) == 0:
        raise ValueError("keys must be a non-empty integer tensor (B,) or (B, 2), one per sample")
    return keys


def _uncertainty(kind: str, scale: Any, top: int) -> float:
    """u of the kind: pyramid and trapezoid take a finite u >= 0 (default 1); the others
    have theirs (full sequence 0, autoregressive S) and refuse one."""
    if kind in ("full_sequence", "autoregressive"):
        if scale is not None:
            raise ValueError(
                f"uncertainty_scale belongs to 'pyramid' and 'trapezoid'; {kind!r} has its own "
                f"({'0' if kind == 'full_sequence' else 'sampling_steps'}), got {scale!r}"
            )
        return 0.0 if kind == "full_sequence" else float(top)
    scale = 1.0 if scale is None else from_numpy(scale)
    if (
        isinstance(scale, bool)
        or not isinstance(scale, (int, float))
        or not math.isfinite(scale)
        or scale < 0
    ):
        raise ValueError(f"uncertainty_scale must be a finite number >= 0, got {scale!r}")
    return float(scale)
