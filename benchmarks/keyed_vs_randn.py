"""Keyed CPU noise against torch.randn for the same tensor, interleaved (issue 4's CPU
target: at most 4 x). Prints the best and the median of the interleaved runs.

    OMP_NUM_THREADS=1 python benchmarks/keyed_vs_randn.py [--shape 64 3 64 64] [--runs 20]
"""

import argparse
import statistics
import time

import torch

from noisejump.rng import keyed_normal


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[64, 3, 64, 64])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    shape, keys = tuple(args.shape), torch.arange(args.shape[0])
    variants = {
        "keyed_normal": lambda: keyed_normal(shape, seed=1, keys=keys),
        "torch.randn": lambda: torch.randn(shape),
    }
    times = {name: [] for name in variants}
    for _ in range(args.runs + 1):  # the first round warms up
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    best = {name: 1e3 * min(t[1:]) for name, t in times.items()}
    median = {name: 1e3 * statistics.median(t[1:]) for name, t in times.items()}
    print(f"shape {shape} float32, {torch.get_num_threads()} thread(s), {args.runs} runs")
    for name in variants:
        print(f"  {name:14} best {best[name]:8.3f} ms   median {median[name]:8.3f} ms")
    ratio_best = best["keyed_normal"] / best["torch.randn"]
    ratio_median = median["keyed_normal"] / median["torch.randn"]
    print(f"  keyed / randn: best {ratio_best:.2f} x, median {ratio_median:.2f} x")


if __name__ == "__main__":
    main()
