"""Forward trajectories of one image: the O(1) closed form beside the O(t) chain.

For each process and each step t the closed form is one jump
x_t = signal_t x0 + sigma_t L e (``q_sample`` with keyed noise, key (0, t)), and the chain
walks x_k = sqrt(alpha_k) x_{k-1} + sqrt(beta_k) L e_k for k = 0..t (``q_sample_loop``).
Both have the law q(x_t | x0); the pictures differ only by the draw.
"""

from __future__ import annotations

import torch

from .. import noise as noise_families
from ..process import ForwardProcess
from ..schedules import get_schedule


def trajectory_rows(
    image: torch.Tensor,
    steps,
    *,
    schedule: str = "linear",
    diffusion_steps: int = 1000,
    colour: str = "pink",
    seed: int = 0,
):
    """({label: (len(steps), C, H, W)}, [notes on rows left out]) for ``image`` (1, C, H, W).

    Rows: isotropic; the family ``colour`` if the library has it; the first family whose
    name contains "blur" if the library has one.
    """
    table = get_schedule(schedule, diffusion_steps)
    steps = list(steps)
    if not steps or max(steps) >= diffusion_steps:
        raise ValueError(f"steps must be non-empty and in [0, {diffusion_steps - 1}], got {steps}")
    available = noise_families.available()
    families, notes = ["isotropic"], []
    if colour in available and colour != "isotropic":
        families.append(colour)
    else:
        notes.append(f"no {colour!r} noise family in this noisejump (have {available})")
    blurring = [name for name in available if "blur" in name]
    if blurring:
        families.append(blurring[0])
    else:
        notes.append("no blurring process in this noisejump: its row is left out")
    rows = {}
    for name in families:
        process = ForwardProcess(table, noise_families.get_noise(name))
        closed, chain = (
            _closed_form(process, image, steps, seed),
            _chain(process, image, steps, seed),
        )
        rows[f"{name}\nclosed form"] = closed
        rows[f"{name}\nchain"] = chain
    return rows, notes


def _closed_form(process, image, steps, seed):
    keys = torch.zeros(1, 2, dtype=torch.int64)
    out = []
    for t in steps:
        keys[0, 1] = t
        out.append(process.q_sample(image, t, seed=seed, keys=keys.clone())[0])
    return torch.cat(out)


def _chain(process, image, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([process.q_sample_loop(image, t, generator=generator) for t in steps])
