"""Per-frame steps with frame-correlated noise: the one-draw chain law against the isotropic
per-element path and against the chain (issue 12, item 3).

    python benchmarks/sequences.py [--batch 16] [--frames 8] [--shape 3 32 32] [--repeats 9]

A batch of B clips, F frames of C x H x W, frames-progressive noise (rho = 0.9, AR(1)
across frames), each frame its own step uniform in [0, T) (diffusion forcing's training
steps). Rows: the isotropic per-element closed form (the reference cost), frames-progressive
on its "frames" path (one draw, an F x F Cholesky factor per sample), the same before this
issue (one structured draw per distinct step, "increments"), and the chain
(``q_sample_loop``), each with a torch.Generator and, but for the chain, keyed noise. Times
are medians; the rows of one noise source are timed in turn within each round
(``interleaved_median_times``) so their ratios hold. Targets: frames path <= 2x the
isotropic per-element path, >= 50x faster than its chain.
"""

from __future__ import annotations

import argparse
import json

import torch

import noisejump as nj
from noisejump.bench.timing import interleaved_median_times, median_time
from noisejump.noise import get_noise
from noisejump.processes import per_element


def _increments(process, x0, t, generator):
    """The chain law by increments (what the frames path replaced), x_t only."""
    draw = process._random_draw(x0, generator)
    e = per_element.increments(process.schedule, process.noise, x0, t, draw)
    signal, sigma = process.schedule.marginal(t, x0.device, torch.float32)
    return signal * x0 + sigma * e


def run(batch=16, frames=8, shape=(3, 32, 32), repeats=9, chain_repeats=2, seed=0) -> dict:
    schedule = nj.get_schedule("linear", 1000)
    generator = torch.Generator().manual_seed(seed)
    x0 = torch.randn(batch, frames, *shape, generator=generator)
    t = torch.randint(0, schedule.num_steps, (batch, frames, 1, 1, 1), generator=generator)
    keys = torch.arange(batch)
    isotropic = nj.ForwardProcess(schedule)
    frames_noise = nj.ForwardProcess(schedule, get_noise("frames-progressive", rho=0.9))
    assert frames_noise.plan(t, tuple(x0.shape)).path == "frames"

    rows = {
        "generator": {
            "isotropic per-element": lambda: isotropic.q_sample(x0, t, generator=generator),
            "frames-progressive, frames path": lambda: frames_noise.q_sample(
                x0, t, generator=generator
            ),
            "frames-progressive, increments": lambda: _increments(frames_noise, x0, t, generator),
        },
        "keyed": {
            "isotropic per-element": lambda: isotropic.q_sample(x0, t, seed=1, keys=keys),
            "frames-progressive, frames path": lambda: frames_noise.q_sample(
                x0, t, seed=1, keys=keys
            ),
        },
    }
    ms: dict[str, dict[str, float]] = {}
    for source, fns in rows.items():
        times = interleaved_median_times(list(fns.values()), "cpu", repeats)
        ms[source] = {name: 1e3 * s for name, s in zip(fns, times, strict=True)}
    chain = 1e3 * median_time(
        lambda: frames_noise.q_sample_loop(x0, t, generator=generator), "cpu", chain_repeats, 0
    )
    ms["generator"]["frames-progressive, chain"] = chain
    frames_ms = {source: ms[source]["frames-progressive, frames path"] for source in ms}
    ratios = {
        f"frames path / isotropic per-element, {source} (target <= 2)": frames_ms[source]
        / ms[source]["isotropic per-element"]
        for source in ms
    }
    ratios["chain / frames path, generator (target >= 50)"] = chain / frames_ms["generator"]
    ratios["increments / frames path, generator"] = (
        ms["generator"]["frames-progressive, increments"] / frames_ms["generator"]
    )
    return {
        "shape": [batch, frames, *shape],
        "dtype": "float32",
        "steps": f"one per frame, uniform in [0, {schedule.num_steps})",
        "threads": torch.get_num_threads(),
        "median_ms": ms,
        "ratios": ratios,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--shape", type=int, nargs="+", default=[3, 32, 32])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--chain-repeats", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args.batch, args.frames, tuple(args.shape), args.repeats, args.chain_repeats)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"shape {report['shape']} float32, steps {report['steps']}, "
        f"{report['threads']} threads (medians)"
    )
    for source, rows in report["median_ms"].items():
        for name, value in rows.items():
            print(f"  {source:<10} {name:<34} {value:10.2f} ms")
    for name, value in report["ratios"].items():
        print(f"  {name:<56} {value:8.2f}x")


if __name__ == "__main__":
    main()
