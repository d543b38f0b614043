"""The ``vitaccel`` command: argparse wiring only.

Each command is a module of ``vitaccel.commands`` with ``register(sub)``, which adds its parser
and sets ``func`` to its ``run(args) -> int``. Command modules import their heavy dependencies
inside ``run``, so ``vitaccel --help`` stays fast. Any ``vitaccel.errors.UserError`` is printed
as one line, ``vitaccel CMD: error: ...``, with exit status 2; Ctrl-C is one line with status 130;
everything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from vitaccel.errors import UserError

# The command modules, in the order ``vitaccel --help`` lists them; a new command is one more name.
COMMANDS = ("demo", "report", "emulate", "train", "eval", "hw")

DESCRIPTION = """\
Train vision transformers that prune their own tokens, run any PyTorch model bit for bit on an
emulated accelerator datapath (FP13, int8 with leading-one truncation, partial-sum compression),
and report accuracy against MACs and energy. No GPU needed."""

EPILOG = """\
one grammar for every command:
  vitaccel COMMAND [--config FILE|NAME] [key=value ...] [--flag VALUE ...]
  key=value sets any key of the command's config (dotted for sections: data.name=synthetic);
  --config reads the keys from a YAML file (train: also a bundled recipe name); a --flag is a
  short name for one key: --device, --batch-size, --out, --seed and --json mean the same in
  every command that has them. `vitaccel COMMAND --help` lists every key with its default.

start here:
  vitaccel demo                          train on bundled digits (cached), report -> vitaccel-demo/
  vitaccel train --config digits-teacher then --config digits-sait: a teacher and a pruning student
  vitaccel report --checkpoint runs/digits-sait/last.pt   the same report for your student
  vitaccel emulate --model vit_nano_patch4_32 --accelerator fp13 --fast
"""


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line, like every other vitaccel error; its help
    ends with the command's config keys when it has them (computed only when shown)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self) -> str:
        keys = getattr(self, "config_keys", None)
        if keys is not None:
            self.epilog = keys()
        return super().format_help()


def build_parser() -> argparse.ArgumentParser:
    """The ``vitaccel`` parser with every command of ``COMMANDS`` registered."""
    from vitaccel import __version__

    parser = OneLineParser(prog="vitaccel", description=DESCRIPTION, epilog=EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"vitaccel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
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
    except KeyboardInterrupt:
        print(f"vitaccel {args.command}: interrupted (files written before it are kept)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
