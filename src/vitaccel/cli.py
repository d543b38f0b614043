"""The ``vitaccel`` command: argparse wiring only.

Each command is a module of ``vitaccel.commands`` with ``register(sub)``, which adds its parser
and sets ``func`` to its ``run(args) -> int``. Command modules import their heavy dependencies
inside ``run``, so ``vitaccel --help`` stays fast. Any ``vitaccel.errors.UserError`` is printed
as one line, ``vitaccel CMD: error: ...``, with exit status 2; everything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from vitaccel.errors import UserError

# The command modules, in the order ``vitaccel --help`` lists them.
COMMANDS = ("demo", "report", "emulate", "train", "eval", "hw")


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line, like every other vitaccel error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``vitaccel`` parser with every command of ``COMMANDS`` registered."""
    from vitaccel import __version__

    parser = OneLineParser(prog="vitaccel", description="Token-pruning ViTs on emulated accelerators: "
                                                   "train, emulate bit for bit, report accuracy vs cost.")
    parser.add_argument("--version", action="version", version=f"vitaccel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"vitaccel.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``vitaccel`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except UserError as exc:
        print(f"vitaccel {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
