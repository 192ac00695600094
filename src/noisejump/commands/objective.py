"""``noisejump objective``: what a training configuration really optimises, w(lambda)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any, NoReturn

from ._types import positive_int

#: The log-SNR points of the shared grid (plots and the equality check) by default.
GRID_POINTS = 2001


def add_parser(subparsers) -> None:
    from ..train.objective import PRESETS

    presets = "\n".join(f"  {name:<10} {what}" for name, (what, _) in PRESETS.items())
    p = subparsers.add_parser(
        "objective",
        help="plot the weighted epsilon-MSE w(lambda) that training configurations optimise",
        description=(
            "Every training configuration (process, timestep sampler, target, weighting,\n"
            "shift) is a weighted epsilon-MSE over log-SNR lambda (Kingma & Gao 2023):\n"
            "w(lambda) = p(lambda) omega(lambda) c(lambda), p the sampler's density carried\n"
            "to lambda, omega the weighting, c the target's conversion factor\n"
            "(noisejump.objective.implied_weighting). This plots w for each configuration\n"
            "side by side, prints the lambda interval holding 90 % of its weight inside the\n"
            "window and the weight outside it, and says which configurations are the same\n"
            "objective (normalised w equal within 1e-3 relative on a shared grid). Discrete\n"
            "processes are normalised over their steps, continuous ones over their range\n"
            "within --window."
        ),
        epilog=(
            f"presets:\n{presets}\n\n"
            "examples:\n"
            "  noisejump objective\n"
            "  noisejump objective ddpm iddpm --out objectives.png\n"
            '  noisejump objective sd3 --config "--process flow --timestep-sampler '
            'logit_normal --logit-mean 1.0986"\n'
            '  noisejump objective --config "--process flow --prediction flow_velocity" '
            '--config="--process ddpm --schedule cosine --prediction v"\n\n'
            "Each --config takes noisejump train's objective options in one quoted string "
            "(see noisejump train --help, group 'objective'); write --config=... when the "
            "string is a single option."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "presets",
        nargs="*",
        metavar="PRESET",
        type=_preset,
        help=f"presets to inspect, of {', '.join(PRESETS)} (default: all, unless --config)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="OPTIONS",
        help="a configuration given by noisejump train's objective options (repeatable)",
    )
    p.add_argument(
        "--window",
        type=float,
        nargs=2,
        default=(-20.0, 20.0),
        metavar=("LOW", "HIGH"),
        help="the log-SNR window of the plot and of continuous processes' normalisation "
        "(default: -20 20)",
    )
    p.add_argument(
        "--points",
        type=positive_int,
        default=GRID_POINTS,
        help=f"points of the shared log-SNR grid (default: {GRID_POINTS})",
    )
    p.add_argument(
        "--out",
        default="objective.png",
        help="PNG path, or a folder to write objective.png into (default: objective.png)",
    )
    p.set_defaults(run=run)


def _preset(text: str) -> str:
    from ..train.objective import PRESETS

    if text not in PRESETS:
        raise argparse.ArgumentTypeError(
            f"unknown preset {text!r}; choose from {', '.join(PRESETS)}"
        )
    return text


def configurations(presets: list[str], options: list[str]) -> list[tuple[str, str, Any]]:
    """(name, description, TrainConfig) of each preset and each --config string; a bad
    string is a ValueError naming it."""
    from dataclasses import replace

    from ..train.config import TrainConfig
    from ..train.objective import PRESETS
    from .train import OBJECTIVE_FIELDS, add_objective_arguments

    chosen = []
    for name in presets:
        what, values = PRESETS[name]
        chosen.append((name, what, TrainConfig(**values)))
    parser = _OptionsParser(prog="--config", add_help=False)
    add_objective_arguments(parser, TrainConfig())
    for i, text in enumerate(options, 1):
        try:
            args = parser.parse_args(shlex.split(text))
        except ValueError as error:
            raise ValueError(f"--config {text!r}: {error}") from None
        values = {field: getattr(args, field) for field in OBJECTIVE_FIELDS}
        chosen.append((f"config {i}", text, replace(TrainConfig(), **values)))
    return chosen


class _OptionsParser(argparse.ArgumentParser):
    """A parser whose errors are ValueErrors (one --config string among several)."""

    def error(self, message: str) -> NoReturn:
        raise ValueError(message)


def run(args) -> int:
    import math
    from dataclasses import replace

    import torch

    from ..objective.inspector import implied_weighting, same_objective
    from ..train.objective import PROCESSES, TOKENS
    from ..train.pictures import output_path, plot_objectives

    low, high = args.window
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        print(f"noisejump objective: error: --window needs LOW < HIGH, got {low} {high}",
              file=sys.stderr)  # fmt: skip
        return 2
    presets = args.presets or ([] if args.config else list(_all_presets()))
    lam = torch.linspace(low, high, args.points, dtype=torch.float64)
    results = []
    try:
        for name, what, config in configurations(presets, args.config):
            if config.process in TOKENS:
                raise ValueError(
                    f"{name}: --process {config.process} trains tokens on its ELBO, not a "
                    "weighted MSE over log-SNR: noisejump objective inspects the Gaussian "
                    f"processes {', '.join(p for p in PROCESSES if p not in TOKENS)}"
                )
            learned = config.weighting == "edm2"
            (replace(config, weighting="edm") if learned else config).validate()
            if learned:
                print(f"{name:<10} {what}\n           not inspectable: EDM2's learned weighting "
                      "e^-u(sigma) is not a function of lambda")  # fmt: skip
                continue
            implied = implied_weighting(
                config.build_schedule(),
                sampler=config.build_timestep_sampler(),
                prediction=config.prediction,
                weighting=config.build_weighting(),
                lam=lam,
                window=(low, high),
            )
            results.append((name, what, implied))
            print(_report(name, what, implied))
    except (ValueError, TypeError) as error:
        print(f"noisejump objective: error: {error}", file=sys.stderr)
        return 2
    pairs = [
        (a[0], b[0])
        for i, a in enumerate(results)
        for b in results[i + 1 :]
        if same_objective(a[2], b[2])
    ]
    if len(results) > 1:
        if pairs:
            for a, b in pairs:
                print(f"same objective: {a} and {b}")
        else:
            print("no two configurations are the same objective")
    if results:
        print(plot_objectives(results, output_path(args.out, "objective.png")))
    return 0


def _all_presets():
    from ..train.objective import PRESETS

    return PRESETS


def _report(name: str, what: str, implied) -> str:
    """Two lines: the 90 % interval and where the weight is normalised."""
    low, high = implied.central_interval(0.9)
    where = (
        f"over its {len(implied.step_mass)} steps, lambda in "
        f"[{implied.interval[0]:.2f}, {implied.interval[1]:.2f}]"
        if implied.step_mass is not None
        else f"over lambda in [{implied.interval[0]:.2f}, {implied.interval[1]:.2f}]"
    )
    outside = f"; outside: below {implied.mass_below:.3g}, above {implied.mass_above:.3g}"
    return (
        f"{name:<10} {what}\n           90 % of w in lambda [{low:.2f}, {high:.2f}] "
        f"(normalised {where}{outside})"
    )
