"""The ``noisejump`` command line: a thin shell over the library.

Each subcommand lives in ``noisejump.commands.<name>`` with an ``add_parser`` function.
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .commands import bench, evaluate, sample, schedules, show, train, verify

COMMANDS = (train, sample, evaluate, show, schedules, verify, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="noisejump",
        description="The forward (noising) process of diffusion models: exact O(1) jumps.",
    )
    parser.add_argument("--version", action="version", version=f"noisejump {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
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
