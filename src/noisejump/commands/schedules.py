"""``noisejump schedules``: plot abar and log-SNR of the named schedules."""

from __future__ import annotations

import argparse

from ..schedules import get_schedule, schedule_names
from ._types import MAX_DIFFUSION_STEPS, diffusion_steps


def _schedule_name(text: str) -> str:
    if text not in schedule_names():
        raise argparse.ArgumentTypeError(
            f"unknown schedule {text!r}; choose from {', '.join(schedule_names())}"
        )
    return text


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "schedules",
        help="plot alpha_bar and log-SNR of noise schedules to a PNG",
        description=(
            "Plots alpha_bar_t (the signal power of x_t) and log SNR_t = log(alpha_bar_t / "
            "(1 - alpha_bar_t)) against t for each NAME (default: all named schedules). "
            "With --zero-terminal-snr each is rescaled (Lin et al. 2023); its last log-SNR, "
            "-inf, is left off the plot."
        ),
        epilog="examples:\n  noisejump schedules\n"
        "  noisejump schedules linear cosine --zero-terminal-snr --out zero-snr.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        type=_schedule_name,
        help=f"schedules to plot, of {', '.join(schedule_names())}",
    )
    p.add_argument(
        "--diffusion-steps",
        type=diffusion_steps,
        default=1000,
        help=f"T, at most {MAX_DIFFUSION_STEPS} (default: 1000)",
    )
    p.add_argument(
        "--zero-terminal-snr",
        action="store_true",
        help="rescale each schedule to zero terminal SNR",
    )
    p.add_argument(
        "--out",
        default="schedules.png",
        help="PNG path, or a folder to write schedules.png into (default: schedules.png)",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from ..train.pictures import output_path, plot_schedules

    names = args.names or [n for n in schedule_names() if n != "squaredcos_cap_v2"]
    schedules = [
        get_schedule(n, args.diffusion_steps, rescale_zero_terminal_snr=args.zero_terminal_snr)
        for n in names
    ]
    print(plot_schedules(schedules, output_path(args.out, "schedules.png")))
    return 0
