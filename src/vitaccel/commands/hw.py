"""``vitaccel hw``: the circuits behind a config. ``hw export`` writes Verilog, golden test vectors
and a self-checking test bench (room for ``hw synth`` / ``hw sweep``)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hw`` and its subcommands to the CLI."""
    p = sub.add_parser("hw", help="circuits of an accelerator config: Verilog, test vectors, test bench")
    hw_sub = p.add_subparsers(dest="hw_command", metavar="HW_COMMAND")
    e = hw_sub.add_parser("export", help="Verilog of the dot-product unit and its elements, golden test vectors "
                                         "and a self-checking test bench (Icarus Verilog or Verilator)")
    e.add_argument("--accelerator", required=True, help="preset name or YAML file (int or float datapath)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--seed", type=int, default=0, help="seed of the random test vectors")
    p.set_defaults(func=run, hw_parser=p)


def run(args: argparse.Namespace) -> int:
    """Run one ``hw`` subcommand."""
    if getattr(args, "hw_command", None) is None:
        args.hw_parser.print_help()
        return 2
    if args.hw_command == "export":
        from vitaccel.hw.export import export
        done = export(args.accelerator, args.out, seed=args.seed, progress=True)
        print(f"wrote {len(done.files)} files to {done.out}: dot_unit.v, elements/, {done.vectors} test vectors "
              f"({done.dot_products} dot products), tb_dot_unit.v, README.md")
        print(f"run: cd {done.out} && iverilog -g2012 -o tb.vvp tb_dot_unit.v dot_unit.v && vvp tb.vvp")
        return 0
    return 2
