"""The ``noisejump`` command line: a thin shell over the library (defaults live there)."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from . import __version__, benchmark
from .schedules import schedule_names

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16,
          "float16": torch.float16}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _step(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"steps are >= 0, got {text}")
    return value


def _add_bench(subparsers) -> None:
    p = subparsers.add_parser(
        "bench",
        help="time the closed-form jump against the step-by-step chain",
        description=(
            "Times q_sample (the O(1) closed form) against q_sample_loop (the O(t) chain) "
            "for a batch at several steps t, beside torch.randn of the same tensor, and "
            "prints medians and the speed-up."
        ),
        epilog="examples:\n  noisejump bench\n  noisejump bench --device cuda --batch 128 "
               "--shape 3 256 256\n  noisejump bench --steps 1 500 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    p.add_argument("--batch", type=_positive_int, default=64, help="batch size (default: 64)")
    p.add_argument("--shape", type=_positive_int, nargs="+", default=[3, 64, 64],
                   metavar="N", help="per-sample shape (default: 3 64 64)")
    p.add_argument("--steps", type=_step, nargs="+", default=list(benchmark.DEFAULT_STEPS),
                   metavar="T", help="steps t to time (default: 1 10 100 500 999)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--schedule", choices=schedule_names(), default="linear")
    p.add_argument("--repeats", type=_positive_int, default=7,
                   help="timed runs of the closed form; the median is shown (default: 7)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(run=_run_bench)


def _run_bench(args) -> int:
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("noisejump bench: --device cuda requested but no CUDA device is visible")
    report = benchmark.chain_vs_closed(
        (args.batch, *args.shape), args.steps, device=device, dtype=DTYPES[args.dtype],
        schedule=args.schedule, repeats=args.repeats)
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.table())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noisejump",
        description="The forward (noising) process of diffusion models: exact O(1) jumps.",
    )
    parser.add_argument("--version", action="version", version=f"noisejump {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_bench(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.run(args)
    except (ValueError, TypeError) as error:
        print(f"noisejump {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
