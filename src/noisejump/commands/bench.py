"""``noisejump bench``: the closed form against the chain; ``--suite noising``: the noising
step's variants against the bandwidth limit."""

from __future__ import annotations

import argparse
import json
import math

from ..bench import chain, noising
from ..schedules import schedule_names
from ._types import DTYPES, MAX_ELEMENTS, MAX_SAMPLES, device, positive_int, samples, step


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time the closed-form jump against the step-by-step chain",
        description=(
            "Times q_sample (the O(1) closed form) against q_sample_loop (the O(t) chain) "
            "for a batch at several steps t, beside torch.randn of the same tensor, and "
            "prints medians and the speed-up. --suite noising instead times the noising "
            "step's variants side by side (device copy = the limit, randn, diffusers' "
            "add_noise if installed, eager and compiled closed forms, keyed noise, the fused "
            "keyed q_sample with and without e, noise plus loss, the chain to t = 500)."
        ),
        epilog="examples:\n  noisejump bench\n  noisejump bench --device cuda --batch 128 "
        "--shape 3 256 256\n  noisejump bench --steps 1 500 --json\n"
        "  noisejump bench --suite noising\n"
        "  noisejump bench --suite noising --device cuda --batch 256 --shape 3 256 256 "
        "--dtype bfloat16",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--suite",
        choices=("chain", "noising"),
        default="chain",
        help="chain: closed form vs chain (default); noising: the noising step's variants",
    )
    p.add_argument("--device", type=device, default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument(
        "--batch",
        type=samples,
        default=64,
        help=f"batch size, at most {MAX_SAMPLES} (default: 64)",
    )
    p.add_argument(
        "--shape",
        type=positive_int,
        nargs="+",
        default=[3, 64, 64],
        metavar="N",
        help="per-sample shape; batch x shape at most 2^30 elements (default: 3 64 64)",
    )
    p.add_argument(
        "--steps",
        type=step,
        nargs="+",
        default=list(chain.DEFAULT_STEPS),
        metavar="T",
        help="steps t to time (default: 1 10 100 500 999; chain suite only)",
    )
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--schedule", choices=schedule_names(), default="linear")
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=7,
        help="timed runs of the closed form (noising: of each variant); the median is shown "
        "(default: 7)",
    )
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="noising suite: include torch.compile variants (default: on CUDA only)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=run)


def run(args) -> int:
    elements = args.batch * math.prod(args.shape)
    if elements > MAX_ELEMENTS:
        raise ValueError(
            f"--batch {args.batch} x --shape {' '.join(map(str, args.shape))} is {elements} "
            f"elements; at most 2^30 = {MAX_ELEMENTS} (4 GiB in float32)"
        )
    if args.suite == "noising":
        report = noising.noising(
            (args.batch, *args.shape),
            DTYPES[args.dtype],
            device=args.device,
            repeats=args.repeats,
            compile=args.compile,
            schedule=args.schedule,
        )
        print(json.dumps(report.as_dict(), indent=2) if args.json else report.table())
        return 0
    chain_report = chain.chain_vs_closed(
        (args.batch, *args.shape),
        args.steps,
        device=args.device,
        dtype=DTYPES[args.dtype],
        schedule=args.schedule,
        repeats=args.repeats,
    )
    print(json.dumps(chain_report.as_dict(), indent=2) if args.json else chain_report.table())
    return 0
