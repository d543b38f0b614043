"""``vitaccel hw``: the circuits behind a config. ``hw export`` writes Verilog, golden test vectors
and a self-checking test bench; ``hw synth`` synthesizes a config's units with Yosys and prints
their cost; ``hw sweep`` puts the int8 multipliers' error against their synthesized cost."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from vitaccel.commands._shared import device_field, json_field
from vitaccel.configtools import Flag, add_config_arguments, config_from_args, field
from vitaccel.errors import ConfigError

ACTIONS = ("export", "synth", "sweep")


def _at_least_one(v: int) -> str | None:
    return None if v >= 1 else "it must be >= 1"


@dataclass
class HwConfig:
    """The keys of ``vitaccel hw ACTION``."""

    accelerator: str | None = field(None, help="export, synth: preset name or YAML file (int or float datapath)")
    out: str | None = field(None, help="export: output folder (required); sweep: folder for sweep.json and "
                                       "pareto.png (default vitaccel-sweep)")
    seed: int = field(0, help="export: seed of the random test vectors")
    liberty: str | None = field(None, help="synth: Liberty (.lib) file of a standard-cell library: area in um^2")
    dot_unit: bool = field(False, help="synth: also the whole dot-product unit (exact float units block by block)")
    ops: int = field(1 << 14, check=_at_least_one, help="sweep: random operations per unit for the energy")
    device: str = device_field(auto="the CPU (circuits are simulated and synthesized on the CPU)")
    json: str | None = json_field()


FLAGS = (Flag("--accelerator", "accelerator"), Flag("--out", "out"), Flag("--seed", "seed"),
         Flag("--liberty", "liberty"), Flag("--dot-unit", "dot_unit", switch=True), Flag("--ops", "ops"),
         Flag("--device", "device"), Flag("--json", "json"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``hw`` (actions export, synth, sweep) to the CLI."""
    p = sub.add_parser("hw", help="circuits of an accelerator config: Verilog, test vectors, synthesis, sweep",
                       description="export: Verilog of the dot-product unit and its elements, golden test vectors "
                                   "and a self-checking test bench (Icarus Verilog or Verilator). synth: "
                                   "generic-gate synthesis (Yosys) of every unit of a config: cells, transistors, "
                                   "depth (area with liberty=FILE). sweep: int8 multipliers at every keep_bits and "
                                   "rounding, exact and DRUM-style: error against transistors and energy per op.")
    p.add_argument("action", nargs="?", choices=ACTIONS, help="what to do with the circuits")
    add_config_arguments(p, lambda: HwConfig, FLAGS)
    p.set_defaults(func=run)


def _need(cfg: HwConfig, key: str, action: str) -> str:
    value = getattr(cfg, key)
    if value is None:
        raise ConfigError(f"--{key}: required by hw {action}; give --{key} VALUE or {key}=VALUE")
    return value


def run(args: argparse.Namespace) -> int:
    """Run one ``hw`` action."""
    if args.action is None:
        raise ConfigError(f"action: required; choose one of {list(ACTIONS)}, e.g. vitaccel hw export "
                          "--accelerator int8 --out rtl")
    cfg = config_from_args(HwConfig, args)
    if cfg.device == "cuda":
        raise ConfigError("--device: value 'cuda' is not allowed for hw; circuits are simulated and synthesized "
                          "on the CPU (use cpu or auto)")
    if args.action == "export":
        from vitaccel.hw.export import export
        accelerator, out = _need(cfg, "accelerator", "export"), _need(cfg, "out", "export")
        done = export(accelerator, out, seed=cfg.seed, progress=True)
        print(f"wrote {len(done.files)} files to {done.out}: dot_unit.v, elements/, {done.vectors} test vectors "
              f"({done.dot_products} dot products), tb_dot_unit.v, README.md")
        print(f"run: cd {done.out} && iverilog -g2012 -o tb.vvp tb_dot_unit.v dot_unit.v && vvp tb.vvp")
        return 0
    if args.action == "synth":
        return synth(_need(cfg, "accelerator", "synth"), cfg.liberty, cfg.json, cfg.dot_unit)
    return sweep(Path(cfg.out or "vitaccel-sweep"), cfg.ops)


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
    header = ["element", "flow", "cells", "transistors", "depth", "area um2", "synth s", "cached"]
    print("\n".join(columns(header, [[r["element"], r["flow"], r["cells"], _transistors(r), r["depth"],
                                      "-" if r["area_um2"] is None else f"{r['area_um2']:.1f}",
                                      f"{r['seconds']:.1f}", "yes" if r["cached"] else "no"] for r in rows])))
    print(f"{config.name}: Yosys generic gates ({rows[0]['yosys']}); transistors from stat -tech cmos ('+': flip-flops "
          "have no estimate); depth = longest path in gates; flow hierarchical = each distinct block synthesized "
          "once and composed" + (f"; area from {liberty}" if liberty else ""))
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
