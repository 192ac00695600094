"""Where a training step's time goes: noising (closed form or chain) beside the network.

For the default ``noisejump train`` configuration (digits, batch 128, U-Net width 32), one
run times, with medians over repeats:

    keyed jump   keyed timesteps + process.q_sample(x0, t, seed=, keys=) (what train does)
    chain        process.q_sample_loop(x0, t): the O(t) walk the jump replaces
    network      forward + backward + AdamW step of the U-Net

and prints each beside the network step. Run: ``OMP_NUM_THREADS=1 python
benchmarks/train_step.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from noisejump.objective import sample_time
from noisejump.rng import training_keys
from noisejump.train import data
from noisejump.train.config import TrainConfig


def median_seconds(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    config = TrainConfig()
    images = data.load_images(config.data)
    process = config.build_process()
    model = config.build_model(tuple(images.shape[1:]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    sampler = config.build_timestep_sampler()
    indices = data.global_indices(0, config.batch_size, 0, 1)
    x0 = images[indices % len(images)]
    keys = training_keys(indices, 0)

    def timesteps():
        return sample_time(
            process,
            sampler,
            len(keys),
            seed=config.seed,
            keys=keys,
            positions=indices,
            global_batch=config.batch_size,
        )[0]

    def keyed_jump():
        return process.q_sample(x0, timesteps(), seed=config.seed, keys=keys)

    t_fixed = timesteps()

    def chain():
        return process.q_sample_loop(x0, t_fixed)

    x_t, noise = keyed_jump()

    def network():
        loss = (model(x_t, t_fixed) - noise).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    net = median_seconds(network, args.repeats)
    print(
        f"threads {torch.get_num_threads()}, batch {config.batch_size}, "
        f"T {process.num_steps}, median of {args.repeats}"
    )
    print(f"{'part':<12}{'ms':>10}{'vs network':>12}{'share of step':>15}")
    for name, function in (("keyed jump", keyed_jump), ("chain", chain)):
        seconds = median_seconds(function, args.repeats)
        print(
            f"{name:<12}{1e3 * seconds:10.2f}{seconds / net:12.3f}{seconds / (seconds + net):15.1%}"
        )
    print(f"{'network':<12}{1e3 * net:10.2f}{1.0:12.3f}")


if __name__ == "__main__":
    main()
