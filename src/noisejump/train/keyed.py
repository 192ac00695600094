"""Training draws keyed by (seed, global sample index, step).

A draw depends only on its key, never on the batch it sits in, the rank that computes it or
how many ranks there are (DESIGN.md, section 2). So a run of global batch 16 draws the same
noise and the same timesteps on 1 process as on 2 processes of 8, and a resumed run draws
what the uninterrupted run drew.

    keys     (B, 2) int64: (global sample index, step), the per-sample key of
             ``noisejump.rng`` (two 32-bit words)
    noise    ``process.q_sample(x0, t, seed=seed, keys=keys)``: Philox stream 0
    u        the timestep sampler's uniform (``noisejump.objective.samplers.keyed_uniform``):
             stream 1
"""

from __future__ import annotations

import torch


def sample_keys(indices: torch.Tensor, step: int) -> torch.Tensor:
    """(B, 2) int64 keys (global sample index, step) for ``indices`` (B,) at ``step``."""
    return torch.stack([indices.to(torch.int64), torch.full_like(indices, step)], dim=1)
