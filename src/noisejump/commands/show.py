"""``noisejump show``: the forward trajectory of a real image, closed form beside chain."""

from __future__ import annotations

import argparse

from ..schedules import schedule_names
from ._types import positive_int, step

DEFAULT_STEPS = (0, 50, 100, 200, 300, 500, 700, 999)
#: The picture without an IMAGE: a photo scikit-learn ships (no download).
BUILT_IN_IMAGE = "china.jpg"


def add_parser(subparsers) -> None:
    from ..train.trajectories import colours

    p = subparsers.add_parser(
        "show",
        help="picture the forward trajectory of an image (closed form beside the chain)",
        description=(
            "Writes a grid of x_t of IMAGE at the --steps (columns) and prints its path. "
            "Rows, in pairs: the closed form x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - "
            "alpha_bar_t) L e (one O(1) jump) and the step-by-step chain (t + 1 steps), for "
            "isotropic noise, a coloured noise family (--colour) and blurring diffusion with "
            "the blur radius sigma_B(t) = 20 px x SIZE / 64 x (1 - alpha_bar_t), which grows "
            "with the noise variance. The two rows of a pair use different draws of the "
            f"same law. Without IMAGE: scikit-learn's sample photo {BUILT_IN_IMAGE}."
        ),
        epilog="examples:\n  noisejump show\n  noisejump show photo.jpg --colour rbf\n"
        "  noisejump show photo.jpg --steps 0 100 300 999 --size 96 --out pictures/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "image",
        metavar="IMAGE",
        nargs="?",
        default=None,
        help=f"a PNG or JPEG file (default: scikit-learn's sample photo {BUILT_IN_IMAGE})",
    )
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
        choices=colours(),
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
    p.add_argument(
        "--out",
        default="trajectory.png",
        help="PNG path, or a folder to write trajectory.png into (default: trajectory.png)",
    )
    p.set_defaults(run=run)


def run(args) -> int:
    from ..train.pictures import load_image, output_path, plot_trajectories
    from ..train.trajectories import BLUR_SIGMA_MAX_64, trajectory_rows

    image = load_image(args.image or built_in_image(), args.size)
    rows = trajectory_rows(image, args.steps, schedule=args.schedule,
                           diffusion_steps=args.diffusion_steps, colour=args.colour,
                           seed=args.seed)  # fmt: skip
    blur = BLUR_SIGMA_MAX_64 * args.size / 64
    title = (
        f"{args.schedule} schedule, T = {args.diffusion_steps}; blurring rows: blur radius "
        f"sigma_B(t) = {blur:g} px x (1 - alpha_bar_t)"
    )
    print(plot_trajectories(rows, args.steps, output_path(args.out, "trajectory.png"), title))
    return 0


def built_in_image() -> str:
    """The path of scikit-learn's bundled sample photo ``BUILT_IN_IMAGE``."""
    from importlib.resources import files

    return str(files("sklearn.datasets") / "images" / BUILT_IN_IMAGE)
