"""``vitaccel hw``: the circuits behind a config. ``hw export`` writes Verilog, golden test vectors
and a self-checking test bench; ``hw synth`` synthesizes a config's units with Yosys and prints
their cost; ``hw sweep`` puts the int8 multipliers' error against their synthesized cost."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hw`` and its subcommands to the CLI."""
    p = sub.add_parser("hw", help="circuits of an accelerator config: Verilog, test vectors, synthesis, sweep")
    hw_sub = p.add_subparsers(dest="hw_command", metavar="HW_COMMAND")
    e = hw_sub.add_parser("export", help="Verilog of the dot-product unit and its elements, golden test vectors "
                                         "and a self-checking test bench (Icarus Verilog or Verilator)")
    e.add_argument("--accelerator", required=True, help="preset name or YAML file (int or float datapath)")
    e.add_argument("--out", required=True, help="output folder")
    e.add_argument("--seed", type=int, default=0, help="seed of the random test vectors")
    s = hw_sub.add_parser("synth", help="generic-gate synthesis (Yosys) of every unit of a config: cells, "
                                        "transistors, depth (and area with --liberty)")
    s.add_argument("--accelerator", required=True, help="preset name or YAML file (int or float datapath)")
    s.add_argument("--liberty", help="Liberty (.lib) file of a standard-cell library: area in um^2")
    s.add_argument("--json", help="also write the rows (with cells by type) to this JSON file")
    s.add_argument("--dot-unit", action="store_true",
                   help="also synthesize the whole dot-product unit flat (a float unit takes ~15 minutes)")
    w = hw_sub.add_parser("sweep", help="int8 multipliers at every keep_bits and rounding, exact and DRUM-style: "
                                        "error statistics against transistors and energy per op")
    w.add_argument("--out", default="vitaccel-sweep", help="folder for sweep.json and pareto.png")
    w.add_argument("--ops", type=int, default=1 << 14, help="random operations per unit for the energy")
    p.set_defaults(func=run, hw_parser=p)


def run(args: argparse.Namespace) -> int:
    """Run one ``hw`` subcommand."""
    command = getattr(args, "hw_command", None)
    if command == "export":
        from vitaccel.hw.export import export
        done = export(args.accelerator, args.out, seed=args.seed, progress=True)
        print(f"wrote {len(done.files)} files to {done.out}: dot_unit.v, elements/, {done.vectors} test vectors "
              f"({done.dot_products} dot products), tb_dot_unit.v, README.md")
        print(f"run: cd {done.out} && iverilog -g2012 -o tb.vvp tb_dot_unit.v dot_unit.v && vvp tb.vvp")
        return 0
    if command == "synth":
        return synth(args.accelerator, args.liberty, args.json, args.dot_unit)
    if command == "sweep":
        return sweep(Path(args.out), args.ops)
    args.hw_parser.print_help()
    return 2


def synth(accelerator: str, liberty: str | None, json_out: str | None, dot_unit: bool) -> int:
    """Print the synthesis table of one config (and write it as JSON)."""
    from vitaccel.arith import AcceleratorConfig
    from vitaccel.configtools import check_writable
    from vitaccel.hw import build
    from vitaccel.hw.synth import synth_table
    from vitaccel.viz.table import columns

    config = AcceleratorConfig.load(accelerator)
    build(config)                              # an unbuildable config fails before Yosys runs
    if json_out:
        check_writable(Path(json_out).parent, "--json")
    rows = synth_table(config, liberty=liberty, dot_unit=dot_unit)
    header = ["element", "cells", "transistors", "depth", "area um2", "synth s", "cached"]
    print("\n".join(columns(header, [[r["element"], r["cells"], _transistors(r), r["depth"],
                                      "-" if r["area_um2"] is None else f"{r['area_um2']:.1f}",
                                      f"{r['seconds']:.1f}", "yes" if r["cached"] else "no"] for r in rows])))
    print(f"{config.name}: Yosys generic gates ({rows[0]['yosys']}); transistors from stat -tech cmos; "
          "depth = longest path in gates" + (f"; area from {liberty}" if liberty else ""))
    if json_out:
        Path(json_out).write_text(json.dumps(rows, indent=1))
        print(f"wrote {json_out}")
    return 0


def sweep(out: Path, ops: int) -> int:
    """Run the multiplier sweep; print the table and write ``sweep.json`` and ``pareto.png``."""
    from vitaccel.configtools import check_writable
    from vitaccel.hw.sweep import pareto_front, plot_pareto
    from vitaccel.hw.sweep import sweep as run_sweep
    from vitaccel.viz.table import columns

    out = check_writable(out, "--out")
    rows = run_sweep(n=ops)
    out.mkdir(parents=True, exist_ok=True)
    front = {r["unit"] for r in pareto_front([r for r in rows if r["kind"] != "exact"])}
    header = ["unit", "cells", "transistors", "depth", "pJ/op", "mean rel err", "std", "max", "Pareto"]
    print("\n".join(columns(header, [[r["unit"], r["cells"], r["transistors"], r["depth"], f"{r['energy_pj']:.4f}",
                                      f"{r['mean_rel_err']:+.4f}", f"{r['std_rel_err']:.4f}",
                                      f"{r['max_rel_err']:.4f}", "*" if r["unit"] in front else ""]
                                     for r in rows])))
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    plot_pareto(rows, out / "pareto.png")
    print(f"{rows[0]['yosys']}; energy on {ops} uniform random operations per unit, scale pinned to the exact "
          f"8x8 multiplier = table int8_mult; DRUM-style = drum_k4 (both operands truncated)")
    print(f"wrote {out / 'sweep.json'} and {out / 'pareto.png'}")
    return 0


def _transistors(row: dict) -> str:
    return f"{row['transistors']}" + ("" if row["transistors_complete"] else "+")
