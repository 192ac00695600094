"""Train a tiny diffusers UNet2DModel for a few steps with noisejump's diffusers adapter.

The loop is the one of diffusers' train_unconditional.py with one line changed:
``noise_scheduler.add_noise(x0, noise, t)`` became ``adapter.add_noise(x0, noise, t)``
(or, with --keyed, ``adapter.add_fresh_noise(x0, t, seed=, keys=)``, which draws the noise
from (seed, data set index, step) so that it does not depend on the batch layout).

    python examples/train_diffusers_unet.py --steps 50
    python examples/train_diffusers_unet.py --steps 50 --keyed --prediction v_prediction
    python examples/train_diffusers_unet.py --steps 50 --keyed --batch 8 --accumulate 4

Keys name samples by their data set index, not their position in the micro-batch: with
gradient accumulation (or several GPUs) positions 0..B-1 recur in every micro-batch of a
step, and keys built from them would give different images the same noise. Each step here
takes batch x accumulate distinct images, so (index, step) is unique within the step, and a
sample's noise is the same for --batch 32 --accumulate 1 as for --batch 8 --accumulate 4.

Data: a fixed set of 8 x 8 single-channel images of axis-aligned bars, made here (no
download), visited in a fresh random order every epoch.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from noisejump.integrations.diffusers import DiffusersAdapter
from noisejump.rng import check_distinct_keys, training_keys

DATA_SET_SIZE = 256


def bars(n: int, generator: torch.Generator) -> torch.Tensor:
    """Images in [-1, 1] of shape (n, 1, 8, 8), each with one horizontal or vertical bar."""
    images = -torch.ones(n, 1, 8, 8)
    index = torch.randint(0, 8, (n,), generator=generator)
    vertical = torch.rand(n, generator=generator) < 0.5
    for b in range(n):
        if vertical[b]:
            images[b, 0, :, index[b]] = 1.0
        else:
            images[b, 0, index[b], :] = 1.0
    return images


def step_indices(step: int, per_step: int, seed: int) -> torch.Tensor:
    """The data set indices of optimiser step ``step``: ``per_step`` distinct ones.

    Epochs hold whole steps (the remainder of each epoch's permutation is dropped), so no
    step sees an image twice and (index, step) is a distinct key for every sample of it.
    """
    steps_per_epoch = DATA_SET_SIZE // per_step
    epoch, position = divmod(step, steps_per_epoch)
    order = torch.randperm(DATA_SET_SIZE, generator=torch.Generator().manual_seed(seed + epoch))
    return order[position * per_step : (position + 1) * per_step]


def micro_batch_keys(step: int, batch: int, accumulate: int, seed: int) -> list[torch.Tensor]:
    """The keys (data set index, step) of each micro-batch of ``step``, checked distinct."""
    indices = step_indices(step, batch * accumulate, seed).split(batch)
    keys = [training_keys(part, step) for part in indices]
    check_distinct_keys(torch.cat(keys))  # every sample of the step has its own noise
    return keys


def train(
    steps: int, batch: int, prediction: str, keyed: bool, seed: int, accumulate: int = 1
) -> list[float]:
    """Train for ``steps`` optimiser steps of ``accumulate`` micro-batches of ``batch``
    images; returns the loss of each step (the mean over its micro-batches)."""
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
    images = bars(DATA_SET_SIZE, generator)
    losses = []
    for step in range(steps):
        step_loss = 0.0
        for keys in micro_batch_keys(step, batch, accumulate, seed):
            x0 = images[keys[:, 0]]  # key word a is the data set index
            t = torch.randint(
                0, noise_scheduler.config.num_train_timesteps, (len(x0),), generator=generator
            )
            if keyed:
                noisy, noise = adapter.add_fresh_noise(x0, t, seed=seed, keys=keys)
            else:
                noise = torch.randn(x0.shape, generator=generator)
                noisy = adapter.add_noise(x0, noise, t)  # was: noise_scheduler.add_noise(...)
            if prediction == "v_prediction":
                target = adapter.get_velocity(x0, noise, t)
            else:
                target = noise
            loss = F.mse_loss(model(noisy, t).sample, target) / accumulate
            loss.backward()
            step_loss += loss.item()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(step_loss)
    return losses


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50, help="optimiser steps (default: 50)")
    parser.add_argument(
        "--batch", type=int, default=32, help="images per micro-batch (default: 32)"
    )
    parser.add_argument(
        "--accumulate",
        type=int,
        default=1,
        help="micro-batches per optimiser step, gradient accumulation (default: 1)",
    )
    parser.add_argument(
        "--prediction",
        choices=("epsilon", "v_prediction"),
        default="epsilon",
        help="the model's target (default: epsilon)",
    )
    parser.add_argument("--keyed", action="store_true", help="use add_fresh_noise (keyed)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.accumulate < 1:
        parser.error("--steps, --batch and --accumulate must be positive")
    if args.batch * args.accumulate > DATA_SET_SIZE:
        parser.error(f"--batch x --accumulate must be at most the {DATA_SET_SIZE} images")
    losses = train(args.steps, args.batch, args.prediction, args.keyed, args.seed, args.accumulate)
    window = max(1, len(losses) // 5)
    first, last = sum(losses[:window]) / window, sum(losses[-window:]) / window
    print(
        f"{len(losses)} steps: mean loss of the first {window} {first:.4f}, "
        f"of the last {window} {last:.4f}"
    )
    return losses


if __name__ == "__main__":
    main()
