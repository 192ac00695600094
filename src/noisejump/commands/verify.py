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

GAUSSIAN_PROCESSES = ("forward", "mixture", "blurring")
#: Token processes (``noisejump.categorical``): K = 17 classes (the digits' levels) for
#: absorbing and uniform; matrices is a small user-given chain, D3PM's discretised-Gaussian
#: kernel with K = 6 and betas evenly from 0.01 to 0.2. All on T = CATEGORICAL_STEPS.
CATEGORICAL_PROCESSES = ("absorbing", "uniform", "matrices")
PROCESSES = GAUSSIAN_PROCESSES + CATEGORICAL_PROCESSES
CATEGORICAL_STEPS = 20
CATEGORICAL_CLASSES = 17
MATRICES_CLASSES, MATRICES_BETAS = 6, (0.01, 0.2)


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
            "that --list shows. Token processes (--process absorbing, uniform, matrices; "
            f"T = {CATEGORICAL_STEPS}) check Qbar_t and the posteriors against the product "
            "of the step matrices and Bayes' rule exactly, and the frequencies of q_sample "
            "and q_sample_loop against q_probs by chi-square, each with a negative control "
            "(t off by one step) that must be rejected. Exit status 0 on PASS, 1 on FAIL."
        ),
        epilog="examples:\n  noisejump verify --list\n  noisejump verify --noise pink\n"
        "  noisejump verify --noise offset --per-element\n"
        "  noisejump verify --noise frames-progressive --per-frame\n"
        "  noisejump verify --noise rbf --process mixture\n"
        "  noisejump verify --process blurring\n"
        "  noisejump verify --process absorbing --n 1000",
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
        f"is not used); absorbing, uniform: tokens, K = {CATEGORICAL_CLASSES}; matrices: "
        f"D3PM's discretised-Gaussian kernel, K = {MATRICES_CLASSES} (tokens: T = "
        f"{CATEGORICAL_STEPS}; --noise, --per-element and --per-frame are not used)",
    )
    p.add_argument(
        "--t",
        type=step,
        default=None,
        help=f"the step to check (default: 20; tokens: {CATEGORICAL_STEPS // 2})",
    )
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
        default=None,
        help=f"samples per path, at most {MAX_SAMPLES} (default: 200; tokens: 1000 "
        "sequences, each holding every class once)",
    )
    p.add_argument(
        "--schedule",
        choices=schedule_names(),
        default=None,
        help="default: linear (tokens: cosine, whose keep probability falls from 1 to 0 "
        f"over the {CATEGORICAL_STEPS} steps)",
    )
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
    if args.process in CATEGORICAL_PROCESSES:
        return _run_categorical(args)
    schedule = get_schedule(args.schedule or "linear")
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
        20 if args.t is None else args.t,
        exact_shape=example.exact,
        stat_shape=example.stat,
        n=args.n or 200,
        per_element=args.per_element,
        per_frame=args.per_frame,
        alpha=args.alpha,
        seed=args.seed,
    )
    print(report)
    return 0 if report.passed else 1


def _run_categorical(args) -> int:
    from ..categorical import CategoricalProcess, discretized_gaussian, verify_categorical

    for given, option in ((args.per_element, "--per-element"), (args.per_frame, "--per-frame")):
        if given:
            raise ValueError(f"{option} is for Gaussian processes; token checks use one t")
    if args.process == "matrices":
        betas = torch.linspace(*MATRICES_BETAS, CATEGORICAL_STEPS, dtype=torch.float64)
        matrices = discretized_gaussian(betas, MATRICES_CLASSES)
        process = CategoricalProcess(None, MATRICES_CLASSES, matrices)
    else:
        schedule = get_schedule(args.schedule or "cosine", CATEGORICAL_STEPS)
        process = CategoricalProcess(schedule, CATEGORICAL_CLASSES, args.process)
    t = CATEGORICAL_STEPS // 2 if args.t is None else args.t
    report = verify_categorical(process, t, n=args.n or 1000, alpha=args.alpha, seed=args.seed)
    print(report)
    return 0 if report.passed else 1
