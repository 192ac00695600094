"""``noisejump show``: the forward trajectory of a real image, closed form beside chain."""

from __future__ import annotations

import argparse

from ..schedules import schedule_names
from ._types import positive_int, step

DEFAULT_STEPS = (0, 50, 100, 200, 300, 500, 700, 999)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "show",
        help="picture the forward trajectory of an image (closed form beside the chain)",
        description=(
            "Writes a grid of x_t of IMAGE at the --steps (columns). Rows, in pairs: the "
            "closed form x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) L e (one O(1) "
            "jump) and the step-by-step chain (t + 1 steps), for isotropic "
            "noise, a coloured noise family (--colour, when the library has one) and the "
            "blurring process (when the library has one). The two rows of a pair use "
            "different draws of the same law."
        ),
        epilog="examples:\n  noisejump show photo.jpg\n"
        "  noisejump show photo.jpg --steps 0 100 300 999 --size 96 --out trajectory.png",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("image", metavar="IMAGE", help="a PNG or JPEG file")
    p.add_argument(
        "--steps",
        type=step,
        nargs="+",
        default=list(DEFAULT_STEPS),
        metavar="T",
        help="columns (default: 0 50 100 200 300 500 700 999)",
    )
    p.add_argument("--schedule", choices=schedule_names(), default="linear")
    p.add_argument("--diffusion-steps", type=positive_int, default=1000, help="T (default: 1000)")
    p.add_argument(
        "--colour",
        default="pink",
        help="the coloured noise family of the second row pair (default: pink)",
    )
    p.add_argument(
        "--size",
        type=positive_int,
        default=64,
        help="side of the (resized, centre-cropped) image (default: 64)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the noise (default: 0)")
    p.add_argument("--out", default="trajectory.png", help="PNG path (default: trajectory.png)")
    p.set_defaults(run=run)


def run(args) -> int:
    from ..train.pictures import load_image, plot_trajectories
    from ..train.trajectories import trajectory_rows

    image = load_image(args.image, args.size)
    rows, skipped = trajectory_rows(image, args.steps, schedule=args.schedule,
                                    diffusion_steps=args.diffusion_steps, colour=args.colour,
                                    seed=args.seed)  # fmt: skip
    title = f"{args.schedule} schedule, T = {args.diffusion_steps}"
    print(plot_trajectories(rows, args.steps, args.out, title=title))
    for note in skipped:
        print(f"note: {note}")
    return 0
