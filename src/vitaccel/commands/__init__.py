"""One module per ``vitaccel`` command.

Each module has ``register(sub: argparse._SubParsersAction) -> None``, which adds the command's
parser and ``set_defaults(func=run)``, and ``run(args: argparse.Namespace) -> int``, the exit
status. ``vitaccel.cli.COMMANDS`` lists the modules.
"""
