"""The ``noisejump`` command line: a thin shell over the library.

Each subcommand lives in ``noisejump.commands.<name>`` with an ``add_parser`` function.
"""

from __future__ import annotations

import argparse
import os
import re
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
  1    a check failed (verify: FAIL; evaluate: a done-when check), the memory ran out,
       or train stopped (diverged, run folder busy, disk full)
  2    bad arguments or input (one line on stderr says which)
  130  train stopped by SIGINT (143: SIGTERM) after writing a checkpoint
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


class SubcommandParser(ArgumentParser):
    """The parser of one subcommand: an argument it does not know is its own error, so
    the pointer names its help (``See 'noisejump train --help'``), not the top level's.

    argparse hands a subcommand's unknown arguments up to the top-level parser, which
    reports them as its own; everything after the subcommand's name is the subcommand's.
    """

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="noisejump",
        description="The forward (noising) process of diffusion models: exact O(1) jumps.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"noisejump {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=SubcommandParser
    )
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
    except (MemoryError, RuntimeError) as error:
        failed = allocation_failure(error)
        if failed is None:
            raise
        print(
            f"noisejump {args.command}: error: out of memory: {failed}; choose smaller sizes "
            f"(their bounds are in 'noisejump {args.command} --help')",
            file=sys.stderr,
        )
        return 1


#: The size in the allocators' messages: PyTorch's CPU allocator ("you tried to allocate
#: 1440000000000 bytes"), its CUDA allocator ("Tried to allocate 20.00 GiB"), NumPy's
#: ("Unable to allocate 7.45 TiB for an array ...").
_ALLOCATION = re.compile(r"allocate (?:(\d+) bytes|([\d.]+ ?[KMGTPE]i?B))")


def allocation_failure(error: BaseException) -> str | None:
    """What an allocation failure tried, in a few words ("could not allocate 1.3 TiB"),
    or None if ``error`` is not one."""
    import torch

    text = str(error)
    if not (
        isinstance(error, (MemoryError, torch.OutOfMemoryError))
        or "can't allocate memory" in text
        or "not enough memory" in text
    ):
        return None
    match = _ALLOCATION.search(text)
    if match is None:
        return text.strip().splitlines()[0] if text.strip() else type(error).__name__
    if match[2]:
        return f"could not allocate {match[2]}"
    size, units = float(match[1]), ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    while size >= 1024 and len(units) > 1:
        size, units = size / 1024, units[1:]
    return f"could not allocate {size:.1f} {units[0]}"


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
