"""``vitaccel report``: accuracy, operations, memory traffic and energy of one trained SaiT student.

For a checkpoint and a data set: accuracy and MACs at several token densities (same weights), the
student on every accelerator at each density, the hardware cost of each (operation counts,
partial-sum traffic, energy estimate), figures, and ``report.md`` / ``report.html``. ``vitaccel
demo`` runs the same stages on the student it trains. Every number is computed in the run that
writes it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitaccel.errors import ConfigError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

    from vitaccel.viz.report import Section

SUMMARY_HEADER = ["accelerator", "density", "top-1 %", "MACs (M)", "energy µJ", "tier"]
RULES = ("mass", "topk", "value")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` parser."""
    p = sub.add_parser("report", help="the demo's report for any trained checkpoint and data set")
    p.add_argument("--checkpoint", required=True, help="vitaccel training checkpoint (.pt) of a SaiT student")
    p.add_argument("--data", action="append", default=[], metavar="KEY=VALUE",
                   help="override the checkpoint's data section, e.g. --data name=synthetic (repeatable)")
    p.add_argument("--accelerators", default="fp32,fp13,int8,int8-lot4,int8-lot4-psum",
                   help="comma-separated presets or YAML files")
    p.add_argument("--densities", default="0.97,0.9,0.8,0.7", help="comma-separated values of the rule")
    p.add_argument("--rule", default="mass", choices=RULES)
    p.add_argument("--max-images", type=int, default=512)
    p.add_argument("--fast", action="store_true", help="exact=False for float presets (native accumulation order)")
    p.add_argument("--energy-table", help="YAML of per-operation energies (default: 45 nm, Horowitz ISSCC 2014)")
    p.add_argument("--source", choices=("table", "synthesized"), default="table",
                   help="multiply/adder-tree energies: the table, or the synthesized circuits (a Circuits section)")
    p.add_argument("--out", default="vitaccel-report")
    p.set_defaults(func=run)


def parse_densities(rule: str, text: str) -> list[tuple[str, float]]:
    """``--densities`` as (rule, value) pairs; ConfigError naming the flag for a bad value."""
    from vitaccel.prune.config import value_problem

    out = []
    for item in (v.strip() for v in text.split(",")):
        if not item:
            continue
        try:
            value = float(item)
        except ValueError:
            raise ConfigError(f"--densities: value {item!r} is not allowed; give comma-separated numbers "
                              f"(values of --rule {rule}), e.g. 0.9,0.7") from None
        problem = value_problem(rule, value)
        if problem:
            raise ConfigError(f"--densities: value {item!r} is not allowed; {problem}")
        out.append((rule, value))
    if not out:
        raise ConfigError(f"--densities: value {text!r} is not allowed; give at least one number")
    return out


def run(args: argparse.Namespace) -> int:
    """Write the report per the arguments; returns 0."""
    return run_report(args.checkpoint, args.out, [a for a in args.accelerators.split(",") if a],
                      data=args.data, densities=parse_densities(args.rule, args.densities),
                      max_images=args.max_images, exact=not args.fast, energy_table=args.energy_table,
                      source=args.source)


@dataclass
class Student:
    """A trained student and the validation images the report runs on."""

    checkpoint: Path
    model: nn.Module
    images: Any            # the validation subset (a Dataset)
    loader: Any            # batches of 128 of it
    mean: tuple
    std: tuple


def load_student(checkpoint: Path, data_overrides: list[str], max_images: int) -> Student:
    """The checkpoint's pruning-patched model and at most ``max_images`` validation images."""
    from torch.utils.data import DataLoader, Subset

    from vitaccel.data import build_datasets
    from vitaccel.train.build import checkpoint_data, model_from_checkpoint

    model, ckpt = model_from_checkpoint(checkpoint)
    bundle = build_datasets(checkpoint_data(ckpt, data_overrides, "--data"))
    val = bundle.val
    if len(val) > max_images:
        val = Subset(val, list(range(max_images)))
    return Student(checkpoint, model, val, DataLoader(val, batch_size=128, shuffle=False), bundle.mean, bundle.std)


def configure(model: nn.Module, setting: tuple[str, float] | None) -> None:
    """Set the model's density: ``(rule, value)``, or None for dense."""
    if setting is None:
        model.pruning.configure(dense=True)
    else:
        model.pruning.configure(dense=False, rule=setting[0], value=setting[1])


def density_section(student: Student, densities: list[tuple[str, float]], out_dir: Path) -> Section:
    """Accuracy and MACs at each density on the same weights, with the sweep plot and token masks."""
    import torch

    from vitaccel.train.densities import plot_sweep, sweep, write_csv
    from vitaccel.viz import token_masks
    from vitaccel.viz.report import Section

    rule = densities[0][0]
    rows = sweep(student.model, student.loader, rule, tuple(v for r, v in densities if r == rule))
    write_csv(rows, out_dir / "densities.csv")
    plot_sweep(rows, out_dir / "accuracy_vs_macs.png", "Accuracy vs MACs: one student, many densities")
    images = torch.stack([student.images[i][0] for i in range(min(16, len(student.images)))])
    mask_value = densities[len(densities) // 2][1]
    configure(student.model, (rule, mask_value))
    token_masks(student.model, images, out_dir / "token_masks.png", mean=student.mean, std=student.std)
    return Section(
        "Token pruning: one set of weights, many densities",
        [f"Checkpoint {student.checkpoint}; {len(student.images)} validation images. MACs are multiply-accumulates "
         f"per image (1 MAC = 2 FLOPs) over the shapes actually executed, padding excluded."],
        [(["setting", "top-1 %", "patch tokens kept", "MACs/image (M)", "% of dense MACs"],
          [[r["setting"], f"{r['acc']:.2f}", f"{r['kept']:.1f} ± {r['kept_std']:.1f}", f"{r['macs'] / 1e6:.2f}",
            f"{100 * r['macs_ratio']:.0f}"] for r in rows])],
        [("accuracy_vs_macs.png", "Top-1 against MACs per image; dense is the star."),
         ("token_masks.png", f"Patches kept on validation images at {rule}={mask_value:g} "
                             "(pruned patches dimmed).")])


def executed_shapes(student: Student, settings: list[tuple[str, Any]], images: int = 32) -> dict[str, tuple]:
    """Per density label: the matmul shapes the first ``images`` images execute one at a time, and the count."""
    from vitaccel.measure.hardware import matmul_shapes

    sample = [student.images[i][0][None] for i in range(min(images, len(student.images)))]
    out = {}
    for label, setting in settings:
        configure(student.model, setting)
        out[label] = ([s for x in sample for s in matmul_shapes(student.model, x)], len(sample))
    return out


def accelerator_rows(student: Student, accelerators: list[str], settings: list[tuple[str, Any]],
                     shapes: dict[str, tuple], table: Any, exact: bool, circuits: Any = None) -> dict[str, list]:
    """Emulate the student on each accelerator at each density and cost it: the rows of each table."""
    from vitaccel import emulate
    from vitaccel.arith import AcceleratorConfig
    from vitaccel.measure.hardware import cost
    from vitaccel.viz.table import fmt

    rows: dict[str, list] = {"points": [], "accuracy": [], "cost": [], "summary": []}
    for name in accelerators:
        config = AcceleratorConfig.load(name)
        for label, setting in settings:
            configure(student.model, setting)
            t0 = time.perf_counter()
            report = emulate.evaluate(student.model, config, student.loader, exact=exact, calib_batches=1)
            seconds = time.perf_counter() - t0
            run_shapes, n_img = shapes[label]
            c = cost(run_shapes, config, table, **(circuits.cost_options(name) if circuits else {})).scaled(1 / n_img)
            acc, energy = 100 * report.accuracy, c.energy_total_pj / 1e6
            tier = f"{report.tier} ({'exact' if report.exact else 'not exact'})"
            moved = c.psum_bits_written + c.psum_bits_read
            rows["points"].append({"accelerator": name, "density": label, "energy_uj": energy, "acc": acc})
            rows["accuracy"].append([name, label, f"{acc:.2f}", f"{100 * report.agreement:.1f}",
                                     fmt(report.output_sqnr_db, ".1f"), tier, f"{seconds:.1f}"])
            rows["cost"].append([name, label, f"{c.macs / 1e6:.2f}", ", ".join(c.mults),
                                 f"{c.energy_pj['multiply'] / 1e6:.3f}", f"{c.energy_pj['add'] / 1e6:.3f}",
                                 f"{moved / 8e3:.1f}", f"{moved / max(c.psum_bits_uncompressed, 1):.2f}",
                                 f"{c.operand_bits / 8e3:.1f}", f"{energy:.3f}"])
            rows["summary"].append([name, label, f"{acc:.2f}", f"{c.macs / 1e6:.2f}", f"{energy:.3f}", tier])
            print(f"  {name:16s} {label:10s} top-1 {acc:6.2f}%  energy {energy:8.3f} µJ  ({seconds:.1f} s)")
    return rows


def multiplier_error_samples(accelerators: list[str]) -> dict[str, torch.Tensor]:
    """Relative error of each distinct truncating multiplier in ``accelerators`` (and, for contrast,
    plain truncation at the same width) over every int8 activation magnitude."""
    from vitaccel.arith import AcceleratorConfig
    from vitaccel.arith.stats import relative_errors

    variants: dict[tuple, list[str]] = {}
    for name in accelerators:
        cfg = AcceleratorConfig.load(name)
        if cfg.datapath == "int" and cfg.int_datapath.keep_bits is not None:
            dp = cfg.int_datapath
            variants.setdefault((dp.a_bits, dp.keep_bits, dp.keep_rounding), []).append(name)
            variants.setdefault((dp.a_bits, dp.keep_bits, "truncate"), [])
    return {f"k={keep} {rounding}" + (f" ({', '.join(names)})" if names else ""): relative_errors(bits, keep, rounding)
            for (bits, keep, rounding), names in variants.items()}


def accelerator_sections(rows: dict[str, list], accelerators: list[str], shapes: dict[str, tuple], table: Any,
                         exact: bool, out_dir: Path) -> list[Section]:
    """The accelerator and hardware-cost sections, with the energy and multiplier-error figures."""
    from vitaccel.measure.hardware import ASSUMPTIONS
    from vitaccel.viz.figures import accuracy_vs_energy, multiplier_errors
    from vitaccel.viz.report import Section

    accuracy_vs_energy(rows["points"], out_dir / "accuracy_vs_energy.png")
    figures = [("accuracy_vs_energy.png", "Top-1 against estimated energy per image, every preset x density.")]
    errors = multiplier_error_samples(accelerators)
    if errors:
        multiplier_errors(errors, out_dir / "multiplier_errors.png")
        figures.append(("multiplier_errors.png", "Relative error of each truncating multiplier over all int8 "
                                                 "activation magnitudes (exact multipliers have none)."))
    return [Section(
        "The student on every accelerator",
        ["Each preset runs every matrix product of the student through vitaccel.arith.emulated_matmul "
         f"({'exact=True: bit-identical to the golden model' if exact else 'exact=False where allowed'}); "
         "integer presets are calibrated (max) on the first batch of 128 validation images. Agreement is the "
         "fraction of top-1 predictions equal to the float32 model's; SQNR compares the logits."],
        [(["accelerator", "density", "top-1 %", "agree %", "logit SQNR dB", "tier", "time s"], rows["accuracy"])],
        figures), Section(
        "Hardware cost (estimates)",
        [f"Per image, averaged over {shapes['dense'][1]} validation images run one at a time. Energy "
         f"table: {table.source}. These are estimates; assumptions:"] + [f"- {a}" for a in ASSUMPTIONS],
        [(["accelerator", "density", "MACs (M)", "multiplier", "mult µJ", "add µJ", "psum KB moved",
           "psum ratio", "operand KB", "energy µJ"], rows["cost"])])]


def report_sections(student: Student, out_dir: Path, accelerators: list[str], densities: list[tuple[str, float]],
                    exact: bool = True, energy_table: str | None = None, source: str = "table"
                    ) -> tuple[list[Section], list[list[str]]]:
    """Every report section for one student (densities, accelerators x densities, costs, with
    ``source="synthesized"`` the circuits) and the summary rows."""
    from vitaccel.measure.hardware import EnergyTable
    from vitaccel.viz import circuits as hw_view

    table = EnergyTable.load(energy_table)
    sections = [density_section(student, densities, out_dir)]
    settings = [("dense", None)] + [(f"{r}={v:g}", (r, v)) for r, v in densities[::max(1, len(densities) // 2)]]
    shapes = executed_shapes(student, settings)
    circuits = hw_view.measure_student(student, accelerators) if source == "synthesized" else None
    rows = accelerator_rows(student, accelerators, settings, shapes, table, exact, circuits)
    sections += accelerator_sections(rows, accelerators, shapes, table, exact, out_dir)
    if circuits:
        sections[-1].text.insert(0, hw_view.source_note(circuits))
        sections.append(hw_view.circuits_section(circuits, rows["points"], shapes, table, out_dir))
    return sections, rows["summary"]


def run_report(checkpoint: str, out: str, accelerators: list[str], data: list[str] | None = None,
               densities: list[tuple[str, float]] | None = None, max_images: int = 512, exact: bool = True,
               energy_table: str | None = None, source: str = "table") -> int:
    """The report stages for any trained checkpoint; every input is checked before the long work."""
    from vitaccel.arith import AcceleratorConfig
    from vitaccel.configtools import check_writable
    from vitaccel.measure.hardware import EnergyTable
    from vitaccel.viz.report import write_report
    from vitaccel.viz.table import columns

    if max_images < 1:
        raise ConfigError(f"--max-images: value {max_images} is not allowed; it must be >= 1")
    if not accelerators:
        raise ConfigError("--accelerators: value '' is not allowed; give comma-separated presets or YAML files")
    for flag, load, names in (("--accelerators", AcceleratorConfig.load, accelerators),
                              ("--energy-table", EnergyTable.load, [energy_table])):
        for name in names:  # a bad name or file fails before any work
            try:
                load(name)
            except ConfigError as exc:
                raise ConfigError(f"{flag}: {exc}") from None
    out_dir = check_writable(out, "--out")
    student = load_student(Path(checkpoint), data or [], max_images)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, summary = report_sections(student, out_dir, accelerators,
                                        densities or [("mass", v) for v in (0.97, 0.9, 0.8, 0.7)],
                                        exact=exact, energy_table=energy_table, source=source)
    md, html_path = write_report(out_dir, f"vitaccel report: {checkpoint}", sections)
    print("\n".join(columns(SUMMARY_HEADER, summary)))
    print(f"\nreport: {html_path} and {md}")
    return 0
