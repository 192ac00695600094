"""``noisejump show``: the forward trajectory of a real image, closed form beside chain."""

from __future__ import annotations

import argparse

from ..schedules import schedule_names
from ._types import MAX_DIFFUSION_STEPS, MAX_IMAGE_SIDE, diffusion_steps, image_side, step

#: The columns for T = 1000; for another T the same fractions of it (``default_steps``).
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
        default=None,
        metavar="T",
        help="columns (default: 0 50 100 200 300 500 700 999 for T = 1000; for another T "
        "the same fractions of T, e.g. 0 1 2 3 5 7 9 for T = 10)",
    )
    p.add_argument("--schedule", choices=schedule_names(), default="linear")
    p.add_argument(
        "--diffusion-steps",
        type=diffusion_steps,
        default=1000,
        help=f"T, at most {MAX_DIFFUSION_STEPS} (default: 1000)",
    )
    p.add_argument(
        "--colour",
        choices=colours(),
        default="pink",
        help="the coloured noise family of the second row pair (default: pink)",
    )
    p.add_argument(
        "--size",
        type=image_side,
        default=64,
        help=f"side of the (resized, centre-cropped) image, at most {MAX_IMAGE_SIDE} (default: 64)",
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
    steps = args.steps if args.steps is not None else default_steps(args.diffusion_steps)
    rows = trajectory_rows(image, steps, schedule=args.schedule,
                           diffusion_steps=args.diffusion_steps, colour=args.colour,
                           seed=args.seed)  # fmt: skip
    blur = BLUR_SIGMA_MAX_64 * args.size / 64
    title = (
        f"{args.schedule} schedule, T = {args.diffusion_steps}; blurring rows: blur radius "
        f"sigma_B(t) = {blur:g} px x (1 - alpha_bar_t)"
    )
    print(plot_trajectories(rows, steps, output_path(args.out, "trajectory.png"), title))
    return 0


def default_steps(num_steps: int) -> list[int]:
    """The columns of ``DEFAULT_STEPS`` scaled to a schedule of ``num_steps`` = T steps:
    t -> min(T - 1, round(t T / 1000)) (halves round up), repeats dropped; for T = 1000,
    ``DEFAULT_STEPS`` itself."""
    scaled = (min(num_steps - 1, (t * num_steps + 500) // 1000) for t in DEFAULT_STEPS)
    return sorted(set(scaled))


def built_in_image() -> str:
    """The path of scikit-learn's bundled sample photo ``BUILT_IN_IMAGE``."""
    from importlib.resources import files

    return str(files("sklearn.datasets") / "images" / BUILT_IN_IMAGE)
