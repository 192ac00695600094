"""Closed form vs chain for correlated noise and blurring, and pink vs isotropic closed form.

    python benchmarks/correlated.py [--batch 16] [--shape 3 64 64] [--t 500] [--repeats 7]

Times are medians (``noisejump.bench.timing.median_time``) measured in one run, so the ratios
compare like with like. Targets (issue 3, 16 x 3 x 64 x 64 float32, t = 500): pink closed
form >= 100x faster than its chain and <= 4x the isotropic closed form; blurring closed
form >= 100x faster than its chain.
"""

from __future__ import annotations

import argparse
import json

import torch

import noisejump as nj
from noisejump.bench.timing import median_time
from noisejump.processes import BlurringProcess


def run(batch=16, shape=(3, 64, 64), t=500, repeats=7, chain_repeats=3, seed=0) -> dict:
    schedule = nj.get_schedule("linear", 1000)
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, *shape, generator=generator)
    isotropic = nj.ForwardProcess(schedule)
    pink = nj.ForwardProcess(schedule, "pink")
    blurring = BlurringProcess(schedule)

    def time_ms(fn, n):
        return 1e3 * median_time(fn, "cpu", n)

    ms = {
        "isotropic closed": time_ms(
            lambda: isotropic.q_sample(x0, t, generator=generator), repeats
        ),
        "pink closed": time_ms(lambda: pink.q_sample(x0, t, generator=generator), repeats),
        "pink chain": time_ms(
            lambda: pink.q_sample_loop(x0, t, generator=generator), chain_repeats
        ),
        "blurring closed": time_ms(lambda: blurring.q_sample(x0, t, generator=generator), repeats),
        "blurring chain": time_ms(
            lambda: blurring.q_sample_loop(x0, t, generator=generator), chain_repeats
        ),
    }
    ratios = {
        "pink chain / pink closed (target >= 100)": ms["pink chain"] / ms["pink closed"],
        "pink closed / isotropic closed (target <= 4)": ms["pink closed"] / ms["isotropic closed"],
        "blurring chain / blurring closed (target >= 100)": ms["blurring chain"]
        / ms["blurring closed"],
    }
    return {
        "shape": [batch, *shape],
        "dtype": "float32",
        "t": t,
        "threads": torch.get_num_threads(),
        "median_ms": ms,
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--shape", type=int, nargs="+", default=[3, 64, 64])
    parser.add_argument("--t", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--chain-repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.batch, tuple(args.shape), args.t, args.repeats, args.chain_repeats)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"shape {report['shape']} float32, t = {args.t}, {report['threads']} threads (medians)")
    for name, value in report["median_ms"].items():
        print(f"  {name:<20} {value:10.3f} ms")
    for name, value in report["ratios"].items():
        print(f"  {name:<50} {value:8.1f}x")


if __name__ == "__main__":
    main()
