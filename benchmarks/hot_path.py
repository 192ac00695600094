"""The fixed cost of one noising call on the CPU, side by side in one run (issue 9, item 5).

For each shape: diffusers' ``DDPMScheduler.add_noise`` (the peer, with the caller's noise),
noisejump's unkeyed ``q_sample(x0, t, noise=e)``, and keyed ``q_sample(x0, t, seed=, keys=)``
(noise drawn from counters). Times are medians over rounds in which the variants run in
turn, so a noisy machine slows them alike; the ratios are what to read.

    OMP_NUM_THREADS=2 python benchmarks/hot_path.py [--rounds 200]
"""

import argparse

import torch

import noisejump as nj
from noisejump.bench.timing import interleaved_median_times

SHAPES = [(1, 4, 8, 8), (8, 4, 32, 32), (64, 4, 64, 64)]


def _median_us(fns: dict, rounds: int, calls: int) -> dict[str, float]:
    """Per-call medians in microseconds, the functions timed in turn (one run, so ratios hold)."""
    seconds = interleaved_median_times(list(fns.values()), "cpu", rounds, calls=calls)
    return {name: 1e6 * value for name, value in zip(fns, seconds, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(num_train_timesteps=1000)
    process = nj.ForwardProcess(nj.get_schedule("linear", 1000))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), medians in us")
    print(f"{'shape':>16} {'diffusers':>10} {'q_sample':>10} {'ratio':>6} {'keyed':>10}")
    for shape in SHAPES:
        generator = torch.Generator().manual_seed(0)
        x0 = torch.randn(shape, generator=generator)
        noise = torch.randn(shape, generator=generator)
        t = torch.randint(0, 1000, (shape[0],), generator=generator)
        keys = torch.arange(shape[0])
        big = x0.numel() > 100_000
        rounds, calls = (max(args.rounds // 10, 5), 1) if big else (args.rounds, 10)
        us = _median_us(
            {
                "diffusers": lambda x0=x0, e=noise, t=t: scheduler.add_noise(x0, e, t),
                "q_sample": lambda x0=x0, e=noise, t=t: process.q_sample(x0, t, noise=e),
                "keyed": lambda x0=x0, t=t, k=keys: process.q_sample(x0, t, seed=7, keys=k),
            },
            rounds,
            calls,
        )
        ratio = us["q_sample"] / us["diffusers"]
        print(
            f"{'x'.join(map(str, shape)):>16} {us['diffusers']:10.1f} {us['q_sample']:10.1f} "
            f"{ratio:6.2f} {us['keyed']:10.1f}"
        )


if __name__ == "__main__":
    main()
