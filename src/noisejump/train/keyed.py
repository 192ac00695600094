"""Random draws keyed by (seed, global sample index, step, stream).

A draw depends only on its key, never on the batch it sits in, the rank that computes it or
how many ranks there are (DESIGN.md, section 2: "noise that changes when the batch size or
the number of GPUs changes"). So a run of global batch 16 draws the same noise and the same
timesteps on 1 process as on 2 processes of 8.

This is the CPU reference form: one ``torch.Generator`` per sample, seeded by a hash of the
key. It is the one place to swap for the library's counter-based keyed noise
(``process.q_sample(x0, t, seed=S, keys=K)``) once that lands.
"""

from __future__ import annotations

import hashlib

import torch

#: Independent streams drawn for one (sample, step).
STREAMS = ("noise", "timestep")


def key_seed(seed: int, index: int, step: int, stream: str) -> int:
    """A 63-bit generator seed from the key (BLAKE2b of the four fields)."""
    if stream not in STREAMS:
        raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
    text = f"{int(seed)}:{int(index)}:{int(step)}:{stream}".encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def keyed_generators(seed: int, indices, step: int, stream: str) -> list[torch.Generator]:
    """One CPU generator per global sample index in ``indices`` for this ``step``."""
    generators = []
    for index in _int_list(indices):
        generator = torch.Generator()
        generator.manual_seed(key_seed(seed, index, step, stream))
        generators.append(generator)
    return generators


def keyed_uniform(seed: int, indices, step: int) -> torch.Tensor:
    """u ~ U[0, 1) per sample, float64 of shape (B,), from the ``timestep`` stream."""
    generators = keyed_generators(seed, indices, step, "timestep")
    return torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in generators])


def keyed_noise(noise_family, seed: int, indices, step: int, event_shape) -> torch.Tensor:
    """Structured noise L e of shape (B, *event_shape), float32 on the CPU.

    Each sample's white noise comes from its own generator, so ``noise_family`` (any
    :class:`~noisejump.noise.NoiseFamily`) sees a batch of one per draw.
    """
    generators = keyed_generators(seed, indices, step, "noise")
    shape = (1, *event_shape)
    return torch.cat([noise_family.sample(shape, generator=g) for g in generators])


def _int_list(indices) -> list[int]:
    if isinstance(indices, torch.Tensor):
        return indices.tolist()
    return [int(i) for i in indices]
