"""The ``vitaccel`` command: wires the modules together, holds no logic of its own.

Each subcommand is one ``_cmd_*`` function registered in ``COMMANDS``; modules are imported
lazily so that ``vitaccel --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable


def _add_demo(sub: argparse._SubParsersAction) -> Callable:
    p = sub.add_parser("demo", help="the main job, on bundled data: formats, datapaths, errors")
    p.add_argument("--out", default="vitaccel-report", help="report folder")
    p.add_argument("--seed", type=int, default=0)

    def run(args: argparse.Namespace) -> int:
        from vitaccel.demo import run_demo
        return run_demo(out=args.out, seed=args.seed)
    return run


COMMANDS: list[Callable[[argparse._SubParsersAction], Callable]] = [_add_demo]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vitaccel", description=__doc__.splitlines()[0])
    from vitaccel import __version__
    parser.add_argument("--version", action="version", version=f"vitaccel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    runners = {}
    for add in COMMANDS:
        runner = add(sub)
        runners[list(sub.choices)[-1]] = runner
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return runners[args.command](args) or 0
    except (ValueError, TypeError, FileNotFoundError) as exc:
        # Bad input from the user: one clear line, no traceback.
        from vitaccel.configtools import ConfigError
        if isinstance(exc, (ConfigError, FileNotFoundError)) or getattr(exc, "user_error", False):
            print(f"vitaccel {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
