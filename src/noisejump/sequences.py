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

Every level is one draw of a timestep sampler of ``noisejump.objective`` (``get_sampler``;
None: the schedule's default, uniform u for a discrete schedule) made the schedule's time
by ``sample_time``: int64 steps for a discrete schedule (u -> floor(u T)), float times for
a continuous one. One draw per frame: frame f's levels are the keyed draws of the seed
``frame_seed(seed, f)`` (frame 0: the seed itself, so one level per sample is
``sample_time``'s own draw). Clean frames are -1 (-1.0 in continuous time).

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
from .checks import check_count, check_real
from .noise import NoiseFamily
from .objective.loss import weights_at
from .objective.samplers import TimestepSampler, get_sampler, sample_time
from .objective.weighting import Weighting, shared_weighting

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
    schedule: Any, sampler: Any, seed: int, keys: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(levels, weight) (B, count): level f of every sample is ``sample_time``'s keyed
    draw with ``frame_seed(seed, f)`` (module docstring), int64 steps or float32 times;
    weight float32 (1 but for importance sampling)."""
    schedule = getattr(schedule, "schedule", schedule)  # a ForwardProcess's schedule
    if not hasattr(schedule, "time_of"):
        raise TypeError(
            f"schedule must be a schedule or a ForwardProcess, got {type(schedule).__name__}"
        )
    chosen = _sampler(schedule, sampler)
    draws = [
        sample_time(schedule, chosen, len(keys), seed=frame_seed(seed, f), keys=keys)
        for f in range(count)
    ]
    levels = torch.stack([t.reshape(len(keys)) for t, _ in draws], dim=1)
    return levels, torch.stack([w.reshape(len(keys)) for _, w in draws], dim=1)


def _sampler(schedule: Any, sampler: Any) -> TimestepSampler:
    """The sampler to draw with: a TimestepSampler, a name of ``get_sampler`` (built with
    its defaults), or None for the schedule's default (uniform u without one)."""
    if sampler is None:
        default = getattr(schedule, "default_sampler", None)
        return default() if default is not None else get_sampler("uniform")
    if isinstance(sampler, str):
        return get_sampler(sampler)
    if not isinstance(sampler, TimestepSampler):
        raise TypeError(
            f"sampler must be a TimestepSampler (get_sampler), a sampler name or None, got "
            f"{sampler!r:.80}"
        )
    return sampler


def _clean(levels: torch.Tensor) -> float | int:
    """The clean marker of levels' kind: -1 (steps) or -1.0 (continuous times)."""
    return -1.0 if levels.dtype.is_floating_point else -1


def independent_steps(
    schedule: Any,
    num_frames: int,
    *,
    seed: int,
    keys: torch.Tensor,
    sampler: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every frame its own level, independently: diffusion forcing's training noise
    (Chen et al. 2024, arXiv 2407.01392, Algorithm 1).

    Args:
        schedule: a schedule (discrete or continuous) or a ForwardProcess.
        num_frames: F, an int >= 1.
        seed, keys: keyed draws: an int seed, one key per sample ((B,) or (B, 2)).
        sampler: a ``TimestepSampler``, a sampler name, or None (the schedule's default).
    Returns:
        (steps (B, F): int64 in [0, T - 1], or float32 times; weight (B, F) float32).
    """
    frames, keys = _count(num_frames, "num_frames"), _keys(keys)
    return _levels(schedule, sampler, _seed(seed), keys, frames)


def context_steps(
    schedule: Any,
    num_frames: int,
    context_frames: int,
    *,
    seed: int,
    keys: torch.Tensor,
    sampler: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One level per sample for every frame but the first ``context_frames``, which are
    clean (-1; -1.0 in continuous time): continuation from a clean history,
    image-to-video with 1 context frame. The weight is 0 at clean frames (they add
    nothing to a loss). Arguments as ``independent_steps``'s."""
    frames, keys = _count(num_frames, "num_frames"), _keys(keys)
    context = _count(context_frames, "context_frames", low=0)
    if context >= frames:
        raise ValueError(
            f"context_frames must be in [0, num_frames - 1] = [0, {frames - 1}] (at least one "
            f"noisy frame), got {context}"
        )
    levels, weight = _levels(schedule, sampler, _seed(seed), keys, 1)
    steps = levels.expand(len(keys), frames).clone()
    weight = weight.expand(len(keys), frames).clone()
    steps[:, :context] = _clean(steps)
    weight[:, :context] = 0.0
    return steps, weight


def block_steps(
    schedule: Any,
    num_tokens: int,
    block_size: int,
    *,
    seed: int,
    keys: torch.Tensor,
    context_blocks: int = 0,
    sampler: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One level per block of ``block_size`` consecutive tokens (the last block may be
    shorter), blocks independent: causal block diffusion's training noise. The first
    ``context_blocks`` blocks are clean (-1, weight 0). Returns (B, num_tokens) tensors;
    block j's level is frame j's of ``independent_steps``."""
    tokens, keys = _count(num_tokens, "num_tokens"), _keys(keys)
    size = _count(block_size, "block_size")
    blocks = -(-tokens // size)
    context = _count(context_blocks, "context_blocks", low=0)
    if context >= blocks:
        raise ValueError(
            f"context_blocks must be in [0, {blocks - 1}] ({blocks} blocks of {size} in "
            f"{tokens} tokens; at least one noisy block), got {context}"
        )
    steps, weight = _levels(schedule, sampler, _seed(seed), keys, blocks)
    steps[:, :context] = _clean(steps)
    weight[:, :context] = 0.0
    spread = lambda v: v.repeat_interleave(size, dim=1)[:, :tokens]  # noqa: E731
    return spread(steps), spread(weight)


def autoregressive_steps(
    schedule: Any,
    num_frames: int,
    ar_step: float,
    *,
    seed: int,
    keys: torch.Tensor,
    sampler: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame i noisier than frame 0 by i ar_step, clipped to the noisiest time: t_i =
    min(t_0 + i ar_step, T - 1) with t_0 one level per sample (SkyReels-V2's diffusion
    forcing, Chen et al. 2025, arXiv 2504.13074, section 3.4: a non-decreasing schedule
    across frames). ``ar_step``: an int >= 0 of steps for a discrete schedule; for a
    continuous one a finite float >= 0 of its time, t_i clipped to its ``t_max``."""
    frames, keys = _count(num_frames, "num_frames"), _keys(keys)
    base = getattr(schedule, "schedule", schedule)
    continuous = getattr(base, "is_continuous", False)
    if continuous:
        offset = check_real(from_numpy(ar_step), "ar_step", low=0.0)
    else:
        offset = _count(ar_step, "ar_step", low=0)
    first, weight = _levels(schedule, sampler, _seed(seed), keys, 1)
    if continuous:
        offsets = torch.arange(frames, dtype=torch.float64) * offset
        steps = (first.to(torch.float64) + offsets).clamp(max=base.t_max).to(first.dtype)
    else:
        offsets = torch.arange(frames, dtype=torch.int64) * offset
        steps = (first + offsets).clamp(max=base.num_steps - 1)
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
    weighting: Weighting | str = "min_snr",
    *,
    prediction: str = "epsilon",
) -> torch.Tensor:
    """A loss weighting (``noisejump.objective.weighting``: a ``Weighting`` or a name of
    ``weighting_names()`` built with its defaults) at each frame's step or time, float32 of
    steps' shape (e.g. (B, F)); 0 at clean frames (-1), where a weighting of the SNR would
    read +inf. ``keyed_mse(weighting=...)`` does the same at per-frame steps; this gives
    the weights themselves (to log them, or to combine them with others as
    ``keyed_mse(weights=frame_steps(w, clips))``)."""
    steps = from_numpy(steps)
    if not isinstance(steps, torch.Tensor):
        raise TypeError(f"steps must be a tensor of steps or times, got {type(steps).__name__}")
    if isinstance(weighting, str):
        weighting = shared_weighting(weighting)
    if not isinstance(weighting, Weighting):
        raise TypeError(
            f"weighting must be a Weighting or a name of weighting_names(), got {weighting!r:.80}"
        )
    base = getattr(schedule, "schedule", schedule)
    like = torch.zeros((), device=steps.device).expand(steps.shape)
    checked = base.steps(steps, like, name="steps", lowest=-1)
    return weights_at(weighting, base, checked, prediction)


# ---- checks ------------------------------------------------------------------------------------


def _count(value: Any, name: str, low: int = 1) -> int:
    return check_count(from_numpy(value), name, low)


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
