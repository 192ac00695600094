"""``noisejump evaluate``: score a digits model against the held-out digits."""

from __future__ import annotations

import argparse
import json

from ._types import MAX_SAMPLES, device, positive_int, samples, seed


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="score a digits model: Frechet distance, memorisation, digit histogram",
        description=(
            "Samples --num digits from RUN's EMA weights and compares them with a fixed "
            "held-out split of scikit-learn's digits: FD(samples, held-out) on the 64 pixels "
            "beside FD(a same-size training subset, held-out); the median distance to the "
            "nearest training image of samples beside held-out digits (memorisation); and "
            "the histogram of digits a fixed classifier predicts. Exits 1 if a done-when "
            "check fails (FD ratio <= 1.5, nearest ratio >= 0.5, all ten digits). A token "
            "run's samples (tokens 0..16) are scored as the images token / 8 - 1."
        ),
        epilog="examples:\n  noisejump evaluate runs/digits\n"
        "  noisejump evaluate runs/digits --num 500 --sampler ddpm --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run_path", metavar="RUN", help="run folder or checkpoint directory")
    p.add_argument(
        "--num", type=samples, default=500, help=f"samples, at most {MAX_SAMPLES} (default: 500)"
    )
    p.add_argument(
        "--sampler",
        choices=("ddpm", "ddim", "ancestral"),
        default=None,
        help="default: ddim; token runs: ancestral",
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="DDIM steps (default: 50, or the schedule's T when smaller); ancestral steps "
        "of a token run (default: 100, or T when smaller)",
    )
    p.add_argument("--seed", type=seed, default=0, help="sampling seed (default: 0)")
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..train.evaluate import evaluate_run

    scores = evaluate_run(
        args.run_path,
        num_samples=args.num,
        sampler=args.sampler,
        steps=args.steps,
        seed=args.seed,
        device=args.device,
    )
    if args.json:
        print(json.dumps(scores, indent=1))
    else:
        print(_table(scores))
    return 0 if all(scores["checks"].values()) else 1


def _table(s: dict) -> str:
    lines = [
        f"run {s['run']} (step {s['step']}), {s['num_samples']} samples, "
        f"{s['sampler']} {s['sampler_steps']} steps, seed {s['seed']}",
        f"FD(samples, held-out)              {s['fd_samples_held_out']:9.3f}",
        f"FD(train subset, held-out)         {s['fd_train_subset_held_out']:9.3f}",
        f"  ratio                            {s['fd_ratio']:9.3f}",
        f"median nearest-train, samples      {s['nearest_train_median_samples']:9.3f}",
        f"median nearest-train, held-out     {s['nearest_train_median_held_out']:9.3f}",
        f"  ratio                            {s['nearest_ratio']:9.3f}",
        f"digits predicted (0-9)             {s['digit_histogram']}",
        f"classifier accuracy on held-out    {s['classifier_held_out_accuracy']:9.3f}",
    ]
    lines += [f"{'PASS' if ok else 'FAIL'}  {name}" for name, ok in s["checks"].items()]
    return "\n".join(lines)
