"""The ``noisejump`` command line: a thin shell over the library.

Each subcommand lives in ``noisejump.commands.<name>`` with an ``add_parser`` function.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, NoReturn

from . import __version__
from .commands import bench, evaluate, objective, sample, schedules, show, train, verify

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

COMMANDS = (train, objective, sample, evaluate, show, schedules, verify, bench)

#: The exit status when stdout is closed early (``noisejump verify | head -1``): 128 +
#: SIGPIPE (13), what a shell reports for ``yes | head -1``, so a pipeline under ``set -o
#: pipefail`` can tell a cut-off report from a complete one.
EXIT_BROKEN_PIPE = 141

EXIT_STATUS = """\
exit status:
  0    success
  1    a check failed (verify: FAIL; evaluate: a done-when check)
  2    bad arguments or input (one line on stderr says which)
  141  stdout was closed before the output was written (e.g. piped into head)"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with an argument error as one line and a pointer to ``--help``, not the
    whole usage block (the subcommands' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\nSee '{self.prog} --help'.\n")

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        # argparse's own version swallows OSError: a help text cut off by a closed pipe
        # would exit 0 as if complete; let main() see the BrokenPipeError instead.
        if message:
            (file or sys.stderr).write(message)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="noisejump",
        description="The forward (noising) process of diffusion models: exact O(1) jumps.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"noisejump {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (see ``EXIT_STATUS``). A closed stdout ends the
    command quietly with ``EXIT_BROKEN_PIPE``, without a traceback."""
    try:
        try:
            return _run(argv)
        finally:
            sys.stdout.flush()  # a closed pipe surfaces here, not at interpreter exit
    except BrokenPipeError:
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _run(argv: list[str] | None) -> int:
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


def _discard_stdout() -> None:
    """Point stdout at the null device, so the interpreter's last flush of what is still
    buffered cannot fail again (the Python documentation's note on SIGPIPE)."""
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests capture it)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, descriptor)
    os.close(null)


if __name__ == "__main__":
    sys.exit(main())
