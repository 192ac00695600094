"""Train a tiny diffusers UNet2DModel for a few steps with noisejump's diffusers adapter.

The loop is the one of diffusers' train_unconditional.py with one line changed:
``noise_scheduler.add_noise(x0, noise, t)`` became ``adapter.add_noise(x0, noise, t)``
(or, with --keyed, ``adapter.add_fresh_noise(x0, t, seed=, keys=)``, which draws the noise
from (seed, sample index, step) so that it does not depend on the batch layout).

    python examples/train_diffusers_unet.py --steps 50
    python examples/train_diffusers_unet.py --steps 50 --keyed --prediction v_prediction

Data: 8 x 8 single-channel images of random axis-aligned bars, made here (no download).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from noisejump.integrations.diffusers import DiffusersAdapter


def bars(batch: int, generator: torch.Generator) -> torch.Tensor:
    """Images in [-1, 1] of shape (batch, 1, 8, 8), each with one horizontal or vertical bar."""
    images = -torch.ones(batch, 1, 8, 8)
    index = torch.randint(0, 8, (batch,), generator=generator)
    vertical = torch.rand(batch, generator=generator) < 0.5
    for b in range(batch):
        if vertical[b]:
            images[b, 0, :, index[b]] = 1.0
        else:
            images[b, 0, index[b], :] = 1.0
    return images


def train(steps: int, batch: int, prediction: str, keyed: bool, seed: int) -> list[float]:
    """Train for ``steps`` optimiser steps; returns the loss of each step."""
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        layers_per_block=1,
        block_out_channels=(16, 32),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )
    noise_scheduler = DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction)
    adapter = DiffusersAdapter(noise_scheduler)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for step in range(steps):
        x0 = bars(batch, generator)
        t = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (batch,), generator=generator
        )
        if keyed:
            keys = torch.stack([torch.arange(batch), torch.full((batch,), step)], dim=1)
            noisy, noise = adapter.add_fresh_noise(x0, t, seed=seed, keys=keys)
        else:
            noise = torch.randn(x0.shape, generator=generator)
            noisy = adapter.add_noise(x0, noise, t)  # was: noise_scheduler.add_noise(...)
        if prediction == "v_prediction":
            target = adapter.get_velocity(x0, noise, t)
        else:
            target = noise
        loss = F.mse_loss(model(noisy, t).sample, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="optimiser steps (default: 50)")
    parser.add_argument("--batch", type=int, default=32, help="batch size (default: 32)")
    parser.add_argument(
        "--prediction",
        choices=("epsilon", "v_prediction"),
        default="epsilon",
        help="the model's target (default: epsilon)",
    )
    parser.add_argument("--keyed", action="store_true", help="use add_fresh_noise (keyed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1:
        parser.error("--steps and --batch must be positive")
    losses = train(args.steps, args.batch, args.prediction, args.keyed, args.seed)
    window = max(1, len(losses) // 5)
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    print(
        f"{len(losses)} steps: mean loss of the first {window} {first:.4f}, "
        f"of the last {window} {last:.4f}"
    )
    return losses


if __name__ == "__main__":
    main()
