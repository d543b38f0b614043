"""The report's "Circuits" section: what each preset's synthesized units cost (lane, adder tree and
registered accumulator: cells, transistors, depth, energy per op on uniform random operands and on
the model's own operands), the multiplier
design space (error against synthesized cost, with its Pareto front) and accuracy against energy
redrawn from synthesized costs next to the table-scaled one (DESIGN.md section 12).

Every figure comes from synthesis (Yosys, cached by config and tool version) and gate-level
simulation run here; the tool version and the energy scale are printed with them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitaccel.arith import AcceleratorConfig
from vitaccel.hw.costs import TABLE_BASED, MacEnergies, mac_energies, unit_rows
from vitaccel.hw.energy import Calibration, calibrate
from vitaccel.viz.report import Section
from vitaccel.viz.table import fmt

REFERENCES = ("int8", "fp16")          # the exact int8 and fp16 units every unit is compared with


@dataclass
class CircuitCosts:
    """Synthesized costs of a set of presets, measured on one model's operands."""

    calibration: Calibration
    random: dict[str, MacEnergies] = field(default_factory=dict)
    model: dict[str, MacEnergies] = field(default_factory=dict)
    units: list[dict] = field(default_factory=list)
    sweep: list[dict] = field(default_factory=list)
    rows_per_product: int = 0
    float_trees: bool = True
    images: int = 0
    seconds: float = 0.0

    def cost_options(self, name: str) -> dict[str, Any]:
        """``measure.hardware.cost`` keywords for preset ``name``: synthesized, on the model's operands."""
        return {"source": "synthesized", "energies": self.model.get(AcceleratorConfig.load(name).name)}


def measure_circuits(model: Any, images: Any, accelerators: list[str], *, rows: int = 32, ops: int = 1 << 14,
                     seed: int = 0, references: tuple[str, ...] = REFERENCES,
                     keep_bits: tuple[int, ...] = tuple(range(1, 9)), float_trees: bool = True,
                     cache: Path | str | bool | None = None, progress: bool = True) -> CircuitCosts:
    """Synthesize every preset in ``accelerators`` and ``references``, record ``rows`` groups of
    operand codes per matrix product of ``model(images)`` (run native), measure energy per op on
    those and on ``ops`` uniform random operations, and sweep the int8 multiplier over ``keep_bits``.

    Exact float adder trees are synthesized block by block (``synthesize(hierarchical=True)``: FP13's
    in about 15 s, bfloat16's 530-bit one in 1-4 minutes on 2 shared cores); ``float_trees=False`` skips them and
    the float accumulators (their energy then stays table-based)."""
    from tqdm import tqdm

    from vitaccel.emulate.recording import record
    from vitaccel.hw.sweep import sweep

    t0 = time.perf_counter()
    configs = {c.name: c for c in map(AcceleratorConfig.load, dict.fromkeys([*accelerators, *references]))
               if c.datapath != "native"}
    bar = tqdm(total=len(configs) + 2, desc="circuits", disable=not progress)
    bar.set_postfix_str("calibration")
    cal = calibrate(n=ops, seed=seed, cache=cache)
    bar.update()
    out = CircuitCosts(cal, rows_per_product=rows, images=len(images), float_trees=float_trees)
    for name, config in configs.items():
        bar.set_postfix_str(name)
        recorded = record(model, images, config, rows=rows, seed=seed)
        a, b = recorded.operands()
        tree = config.datapath == "int" or float_trees
        out.random[name] = mac_energies(config, calibration=cal, n=max(2, ops // 16), seed=seed, tree=tree,
                                        accumulator=tree, cache=cache)
        out.model[name] = mac_energies(config, a, b, recorded.firsts(), calibration=cal, tree=tree,
                                       accumulator=tree, cache=cache,
                                       label=f"the model's own operands ({len(a)} groups recorded)")
        out.units += unit_rows(config, out.random[name], out.model[name], cache=cache)
        bar.update()
    bar.set_postfix_str("multiplier sweep")
    out.sweep = sweep(keep_bits=keep_bits, calibration=cal, n=ops, seed=seed, cache=cache)
    bar.update()
    bar.close()
    out.seconds = time.perf_counter() - t0
    return out


def measure_student(student: Any, accelerators: list[str], images: int = 8, **options: Any) -> CircuitCosts:
    """``measure_circuits`` on a report's student (``commands.report.Student``), dense, on its
    first ``images`` validation images."""
    import torch

    from vitaccel.viz.masks import set_density

    set_density(student.model, None)
    x = torch.stack([student.images[i][0] for i in range(min(images, len(student.images)))])
    return measure_circuits(student.model, x, accelerators, **options)


def source_note(cc: CircuitCosts) -> str:
    """The line that says where the cost table's energies come from."""
    parts = "multiply, adder-tree and accumulator" if cc.float_trees else \
        "multiply energies, and for int presets adder-tree and accumulator"
    return (f"Energy source: synthesized ({cc.calibration.yosys_version}): {parts} energies from the synthesized "
            f"units on the model's own operands (section Circuits); {TABLE_BASED}; fp32 (native, no circuit) "
            "stays table-based.")


def _ratio(value: float | None, ref: float | None) -> str:
    return "-" if value is None or not ref else f"{value / ref:.2f}"


def unit_table(cc: CircuitCosts) -> tuple[list[str], list[list[str]]]:
    """Per preset, lane, tree and accumulator, with transistors and energy relative to the exact int8 and fp16
    units ("+": a lower bound, Yosys has no transistor estimate for flip-flops)."""
    refs = {(r["config"], r["element"].split("_")[1]): r for r in cc.units if r["config"] in REFERENCES}
    header = ["preset", "unit", "per", "cells", "transistors", "depth", "pJ random", "pJ model",
              "transistors / int8", "transistors / fp16", "pJ model / int8", "pJ model / fp16"]
    rows = []
    for r in cc.units:
        part = r["element"].split("_")[1]
        i8, f16 = refs.get(("int8", part), {}), refs.get(("fp16", part), {})
        transistors = f"{r['transistors']}{'' if r.get('transistors_complete', True) else '+'}"
        rows.append([r["config"], r["element"], r["per"], r["cells"], transistors, r["depth"],
                     fmt(r["energy_random_pj"], ".4f"), fmt(r["energy_model_pj"], ".4f"),
                     _ratio(r["transistors"], i8.get("transistors")), _ratio(r["transistors"], f16.get("transistors")),
                     _ratio(r["energy_model_pj"], i8.get("energy_model_pj")),
                     _ratio(r["energy_model_pj"], f16.get("energy_model_pj"))])
    return header, rows


def circuits_section(cc: CircuitCosts, points: list[dict], shapes: dict[str, list], n_images: int, table: Any,
                     out_dir: Path) -> Section:
    """The "Circuits" section: unit table, Pareto plot, accuracy vs energy from both sources.

    ``points``: the report's runs (accelerator, density, top1); ``shapes``: per density label, the
    matmul shapes all ``n_images`` images executed."""
    from vitaccel.hw.sweep import plot_pareto
    from vitaccel.measure.hardware import cost
    from vitaccel.viz.figures import accuracy_vs_energy

    by_source: dict[str, list[dict]] = {"table": [], "synthesized": []}
    energy_rows = []
    for p in points:
        run_shapes = shapes[p["density"]]
        table_cost = cost(run_shapes, p["accelerator"], table).scaled(1 / n_images)
        synth_cost = cost(run_shapes, p["accelerator"], table,
                          **cc.cost_options(p["accelerator"])).scaled(1 / n_images)
        for source, c in (("table", table_cost), ("synthesized", synth_cost)):
            by_source[source].append({"accelerator": p["accelerator"], "density": p["density"], "top1": p["top1"],
                                      "energy_uj": c.energy_total_pj / 1e6})
        energy_rows.append([p["accelerator"], p["density"], f"{table_cost.energy_pj['multiply'] / 1e6:.4f}",
                            f"{synth_cost.energy_pj['multiply'] / 1e6:.4f}", f"{table_cost.energy_pj['add'] / 1e6:.4f}",
                            f"{synth_cost.energy_pj['add'] / 1e6:.4f}", f"{table_cost.energy_total_pj / 1e6:.3f}",
                            f"{synth_cost.energy_total_pj / 1e6:.3f}"])
    figures = []
    for source, label in (("table", "45 nm table, multiplier scaled with operand widths"),
                          ("synthesized", "synthesized multiply, adder tree and accumulator, model operands"
                                          + ("" if cc.float_trees else "; float trees, accumulators: table"))):
        accuracy_vs_energy(by_source[source], out_dir / f"accuracy_vs_energy_{source}.png",
                           xlabel=f"estimated energy per image (µJ, log scale; {label})")
        figures.append((f"accuracy_vs_energy_{source}.png", f"Top-1 against energy per image: {label}."))
    plot_pareto(cc.sweep, out_dir / "pareto.png")
    figures.insert(0, ("pareto.png", "int8 multipliers (every keep_bits and rounding, exact, DRUM-style k=4): "
                                     "relative error against synthesized transistors and energy per op."))
    cal = cc.calibration
    text = [f"Generic-gate synthesis with {cal.yosys_version} (abc -g AND,NAND,OR,NOR,XOR,XNOR,MUX; results "
            "cached by RTLIL, flow and tool version); transistors from stat -tech cmos; depth = longest path in "
            "gates. Energy per op = gate-output toggles (zero-delay gate-level simulation of the netlist) x "
            f"{cal.pj_per_toggle:.4g} pJ per toggle, pinned so that the exact 8x8 multiplier on uniform random "
            f"operands costs the table's int8_mult ({cal.reference_pj} pJ; {cal.table_source}).",
            f"Model operands: {cc.rows_per_product} groups of G codes per matrix product of one dense forward "
            f"of {cc.images} validation images (quantised integers for int presets, format bit patterns for "
            "float presets); random: uniform over each lane port's range, one dot product every 16 groups. "
            "A lane's energy is per multiply, a tree's per group of G products (driven by the lanes' own "
            "products), an accumulator's per group sum added (the registered unit simulated clock by clock on "
            "the tree's own sums, whole dot products in K order; flip-flop toggles counted like gate toggles, "
            "clock load not counted). Dot units are costed as lane + tree + accumulator; exact float trees "
            "are synthesized block by block (each distinct block once, then composed: no optimisation across "
            "blocks, within 5% of flat synthesis on a small tree)" + ("." if cc.float_trees else
            "; float trees and accumulators are not synthesized in this run (float_trees=False), so their "
            "energy stays table-based.") + f" {TABLE_BASED}.",
            f"Measured in this run in {cc.seconds:.0f} s (synthesis from cache where present)."]
    return Section("Circuits", text, [
        unit_table(cc),
        (["accelerator", "density", "mult µJ table", "mult µJ synth", "add µJ table", "add µJ synth",
          "energy µJ table", "energy µJ synth"], energy_rows)], figures)


__all__ = ["REFERENCES", "CircuitCosts", "circuits_section", "measure_circuits", "measure_student", "source_note",
           "unit_table"]
