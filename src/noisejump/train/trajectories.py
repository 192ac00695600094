"""Forward trajectories of one image: the O(1) closed form beside the O(t) chain.

For each process and each step t the closed form is one jump, x_t = signal_t x0 +
sigma_t L e for a noise family (``q_sample``), and the chain walks
x_k = sqrt(alpha_k) x_{k-1} + sqrt(beta_k) L e_k for k = 0..t (``q_sample_loop``). Both
have the law q(x_t | x0); the pictures differ only by the draw. Blurring diffusion
(Hoogeboom & Salimans 2022) is shown the same way through the same two methods.

The blurring rows use the blur radius

    sigma_B(t) = sigma_B,max (1 - alpha_bar_t),   sigma_B,max = 20 px x side / 64

(20 px at 64 x 64, the paper's value), growing with the noise variance 1 - alpha_bar_t of
the schedule shown. ``BlurringProcess``'s default, sigma_B,max sin^2(pi t / 2T), stays
under a pixel for the first tenth of the steps; under the linear schedule the white noise
hides an image's fine detail from about t = 50 on (for the bundled photo at 64 x 64, above
half the Nyquist frequency, the noise has 2.9 times the detail's energy at t = 50), so that
blur would happen where nobody can see it, and the blurring rows would look like the
isotropic ones.
"""

from __future__ import annotations

import torch

from ..noise import get_noise, without_arguments
from ..processes import BlurringProcess, ForwardProcess
from ..schedules import Schedule, get_schedule

#: sigma_B,max in pixels for a 64 x 64 image (Hoogeboom & Salimans 2022, section 4).
BLUR_SIGMA_MAX_64 = 20.0


def colours() -> list[str]:
    """The noise families that can be the coloured row pair (built without arguments)."""
    return [name for name in without_arguments() if name != "isotropic"]


def shown_blurring(schedule: Schedule, side: int) -> BlurringProcess:
    """The blurring process of the pictures: sigma_B(t) = 20 px x side / 64 x (1 - abar_t)."""
    sigma_max = BLUR_SIGMA_MAX_64 * side / 64
    return BlurringProcess(schedule, blur_sigmas=sigma_max * (1 - schedule.alphas_cumprod))


def trajectory_processes(
    schedule: Schedule, colour: str, side: int
) -> dict[str, ForwardProcess | BlurringProcess]:
    """{name: process} of the row pairs: isotropic, the family ``colour``, blurring."""
    if colour not in colours():
        raise ValueError(f"colour must be one of {colours()}, got {colour!r}")
    return {
        "isotropic": ForwardProcess(schedule),
        colour: ForwardProcess(schedule, get_noise(colour)),
        "blurring": shown_blurring(schedule, side),
    }


def trajectory_rows(
    image: torch.Tensor,
    steps,
    *,
    schedule: str = "linear",
    diffusion_steps: int = 1000,
    colour: str = "pink",
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """{label: (len(steps), C, H, W)} for ``image`` (1, C, H, W): for each process of
    ``trajectory_processes`` a pair of rows, closed form and chain."""
    table = get_schedule(schedule, diffusion_steps)
    steps = list(steps)
    if not steps or max(steps) >= diffusion_steps:
        raise ValueError(f"steps must be non-empty and in [0, {diffusion_steps - 1}], got {steps}")
    processes = trajectory_processes(table, colour, max(image.shape[-2:]))
    rows = {}
    for name, process in processes.items():
        generator = torch.Generator().manual_seed(seed)
        closed = [process.q_sample(image, t, generator=generator)[0] for t in steps]
        chain = [process.q_sample_loop(image, t, generator=generator) for t in steps]
        rows[f"{name}\nclosed form"] = torch.cat(closed)
        rows[f"{name}\nchain"] = torch.cat(chain)
    return rows
