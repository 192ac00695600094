"""Forward trajectories of one image: the O(1) closed form beside the O(t) chain.

For each process and each step t the closed form is one jump, x_t = signal_t x0 +
sigma_t L e for a noise family (``q_sample``), and the chain walks
x_k = sqrt(alpha_k) x_{k-1} + sqrt(beta_k) L e_k for k = 0..t (``q_sample_loop``). Both
have the law q(x_t | x0); the pictures differ only by the draw. A process with another
chain (blurring, Hoogeboom & Salimans 2022) is shown the same way through the same two
methods.
"""

from __future__ import annotations

import importlib

import torch

from .. import noise as noise_families
from ..processes import ForwardProcess
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

    Rows, each as a pair (closed form, chain): isotropic; the noise family ``colour`` if
    the library has it; ``noisejump.BlurringProcess`` if the library has it.
    """
    table = get_schedule(schedule, diffusion_steps)
    steps = list(steps)
    if not steps or max(steps) >= diffusion_steps:
        raise ValueError(f"steps must be non-empty and in [0, {diffusion_steps - 1}], got {steps}")
    processes, notes = {"isotropic": ForwardProcess(table)}, []
    available = noise_families.without_arguments()
    if colour in available and colour != "isotropic":
        processes[colour] = ForwardProcess(table, noise_families.get_noise(colour))
    else:
        notes.append(f"no {colour!r} noise family in this noisejump (have {available})")
    blurring = getattr(importlib.import_module("noisejump"), "BlurringProcess", None)
    if blurring is not None:
        processes["blurring"] = blurring(table)
    else:
        notes.append("no blurring process in this noisejump: its row is left out")
    rows = {}
    for name, process in processes.items():
        generator = torch.Generator().manual_seed(seed)
        closed = [process.q_sample(image, t, generator=generator)[0] for t in steps]
        chain = [process.q_sample_loop(image, t, generator=generator) for t in steps]
        rows[f"{name}\nclosed form"] = torch.cat(closed)
        rows[f"{name}\nchain"] = torch.cat(chain)
    return rows, notes
