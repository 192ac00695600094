"""``noisejump verify``: a process's closed form against its own chain."""

from __future__ import annotations

import argparse

import torch

from ..noise import available
from ..noise.examples import EXAMPLES
from ..processes import BlurringProcess, ForwardProcess, MixtureProcess
from ..schedules import get_schedule, schedule_names
from ..verify import verify
from ._types import MAX_SAMPLES, samples, step

PROCESSES = ("forward", "mixture", "blurring")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check a closed form against its chain, exactly and statistically",
        description=(
            "Checks the closed form of a process against its step-by-step chain: exactly in "
            "float64 on a small shape (mean operator and covariance, by pushing basis "
            "vectors, against the analytic law) and statistically on a realistic shape "
            "(whitened residuals: KS, chi-square of the norm, mean, variance; two-sample KS "
            "of closed form vs chain). Each noise family runs with the example parameters "
            "that --list shows. Exit status 0 on PASS, 1 on FAIL."
        ),
        epilog="examples:\n  noisejump verify --list\n  noisejump verify --noise pink\n"
        "  noisejump verify --noise offset --per-element\n"
        "  noisejump verify --noise frames-progressive --per-frame\n"
        "  noisejump verify --noise rbf --process mixture\n"
        "  noisejump verify --process blurring",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--list", action="store_true", help="list the noise families and exit")
    p.add_argument(
        "--noise",
        choices=available(),
        default="isotropic",
        help="noise family (default: isotropic)",
    )
    p.add_argument(
        "--process",
        choices=PROCESSES,
        default="forward",
        help="forward: fixed covariance S (default); mixture: weights moving linearly from "
        "isotropic noise to --noise over the steps; blurring: DCT heat dissipation (--noise "
        "is not used)",
    )
    p.add_argument("--t", type=step, default=20, help="the step to check (default: 20)")
    p.add_argument(
        "--per-element",
        action="store_true",
        help="one seeded step in [0, t] per element (forward process only)",
    )
    p.add_argument(
        "--per-frame",
        action="store_true",
        help="one seeded step in [0, t] per frame of a frame family (frames-mixed, "
        "frames-progressive, kronecker; forward process only)",
    )
    p.add_argument(
        "--n",
        type=samples,
        default=200,
        help=f"samples per path, at most {MAX_SAMPLES} (default: 200)",
    )
    p.add_argument("--schedule", choices=schedule_names(), default="linear")
    p.add_argument("--seed", type=int, default=0, help="seed of every draw (default: 0)")
    p.add_argument(
        "--alpha", type=float, default=1e-3, help="false-alarm rate of the whole check (1e-3)"
    )
    p.set_defaults(run=run)


def run(args) -> int:
    if args.list:
        for name in available():
            example = EXAMPLES[name]
            print(
                f"{name:<20} {example.params or 'defaults':<36} exact event {example.exact}, "
                f"statistical event {example.stat}"
            )
        return 0
    schedule = get_schedule(args.schedule)
    example = EXAMPLES[args.noise]
    if args.process == "forward":
        process: ForwardProcess | MixtureProcess | BlurringProcess
        process = ForwardProcess(schedule, example.build())
    elif args.process == "mixture":
        steps = schedule.num_steps
        process = MixtureProcess(
            schedule,
            [EXAMPLES["isotropic"].build(), example.build()],
            lambda s: torch.stack([1 - s / steps, s / steps], 1),
        )
    else:
        process = BlurringProcess(schedule)
    report = verify(
        process,
        args.t,
        exact_shape=example.exact,
        stat_shape=example.stat,
        n=args.n,
        per_element=args.per_element,
        per_frame=args.per_frame,
        alpha=args.alpha,
        seed=args.seed,
    )
    print(report)
    return 0 if report.passed else 1
