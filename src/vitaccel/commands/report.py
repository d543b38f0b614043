"""``vitaccel report``: accuracy, operations, memory traffic and energy of one trained SaiT student.

For a checkpoint and a data set: accuracy and MACs at several token densities (same weights), the
student on every accelerator at each density, the hardware cost of each (operation counts,
partial-sum traffic, energy estimate), figures, ``report.md`` / ``report.html`` and every number in
``results.json`` / ``results.csv``. ``vitaccel demo`` runs the same stages on the student it trains.
Every number is computed in the run that writes it. The computation gives one plain ``results``
dict; the report's sections are rendered from it by ``vitaccel.viz.sections.SECTIONS``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitaccel.commands._shared import (
    calib_method_field,
    check_fits,
    claim_out,
    device_field,
    json_field,
    ops_field,
    progress,
    smooth_field,
    write_json,
)
from vitaccel.configtools import Flag, add_config_arguments, config_from_args, field
from vitaccel.errors import ConfigError

if TYPE_CHECKING:
    import torch
    import torch.nn as nn

RULES = ("mass", "topk", "value")
DEFAULT_ACCELERATORS = ("fp32", "fp13", "int8", "int8-lot4", "int8-lot4-psum")
REFERENCE = "fp32"  # the accelerator every other one is compared with


def _at_least_one(v: int) -> str | None:
    return None if v >= 1 else "it must be >= 1"


def _not_empty(v: list) -> str | None:
    return None if v else "give at least one"


@dataclass
class ReportConfig:
    """The keys of ``vitaccel report``."""

    checkpoint: str = field(help="vitaccel training checkpoint (.pt) of a SaiT student")
    data: dict[str, Any] = field(default_factory=dict, help="overrides of the checkpoint's data section, "
                                                           "e.g. data.name=synthetic (must fit the model)")
    accelerators: list[str] = field(default_factory=lambda: list(DEFAULT_ACCELERATORS), check=_not_empty,
                                    help="presets or YAML files, e.g. fp13,int8-lot4")
    rule: str = field("mass", choices=RULES, help="the pruning rule of the densities")
    values: list[float] = field(default_factory=lambda: [0.97, 0.9, 0.8, 0.7], check=_not_empty,
                                help="the rule's parameters, e.g. 0.9,0.7")
    max_images: int = field(512, check=_at_least_one, help="validation images used (the first ones)")
    fast: bool = field(False, help="exact=False for float presets (native accumulation order)")
    energy_table: str | None = field(None, help="YAML of per-operation energies (default: 45 nm, Horowitz "
                                                "ISSCC 2014)")
    source: str = field("table", choices=("table", "synthesized"),
                        help="multiply, adder-tree and accumulator energies: the energy table, or the synthesized "
                             "circuits (adds a Circuits section; first run compiles Yosys and synthesizes, minutes)")
    out: str = field("vitaccel-report", help="report folder")
    force: bool = field(False, help="write into a folder that holds another command's output")
    batch_size: int = field(128, check=_at_least_one,
                            help="images per batch (one batch of training images calibrates int presets)")
    calib_method: str = calib_method_field()
    smooth: float | None = smooth_field()
    ops: list[str] = ops_field()
    device: str = device_field(auto="the CPU (emulation on CUDA is not supported yet)")
    json: str | None = json_field()


FLAGS = (Flag("--checkpoint", "checkpoint"), Flag("--accelerators", "accelerators"), Flag("--rule", "rule"),
         Flag("--values", "values"), Flag("--max-images", "max_images"), Flag("--fast", "fast", switch=True),
         Flag("--energy-table", "energy_table"), Flag("--source", "source"), Flag("--out", "out"),
         Flag("--force", "force", switch=True), Flag("--calib-method", "calib_method"), Flag("--smooth", "smooth"),
         Flag("--ops", "ops"), Flag("--batch-size", "batch_size"), Flag("--device", "device"), Flag("--json", "json"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``report`` parser."""
    p = sub.add_parser("report", help="the demo's report for any trained checkpoint and data set",
                       description="Accuracy, MACs, partial-sum traffic and energy of a trained SaiT student on "
                                   "every accelerator at several token densities: report.md, report.html, "
                                   "results.json, results.csv and figures in --out.")
    add_config_arguments(p, lambda: ReportConfig, FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the report per the arguments; returns 0."""
    return run_report(config_from_args(ReportConfig, args))


@dataclass
class Student:
    """A trained student and the validation images the report runs on."""

    checkpoint: Path
    model: nn.Module
    ckpt: dict
    data: Any              # its validated DataConfig
    images: Any            # the validation subset (a Dataset)
    loader: Any            # batches of it
    calib: Any             # one batch of training images (no augmentation): calibrates integer presets
    mean: tuple
    std: tuple


def load_student(checkpoint: Path, data_overrides: dict, max_images: int, batch_size: int = 128) -> Student:
    """The checkpoint's pruning-patched model and at most ``max_images`` validation images that fit it."""
    from torch.utils.data import DataLoader, Subset

    from vitaccel.data import build_datasets
    from vitaccel.train.build import checkpoint_data, model_from_checkpoint

    model, ckpt = model_from_checkpoint(checkpoint)
    data = checkpoint_data(ckpt, [f"{k}={json.dumps(v)}" for k, v in data_overrides.items()], "data")
    bundle = build_datasets(data)
    check_fits(model, bundle, "data")
    val = bundle.val
    if len(val) > max_images:
        val = Subset(val, list(range(max_images)))
    train = build_datasets(dataclasses.replace(data, augment=False)).train   # calibration, apart from val
    calib = DataLoader(Subset(train, list(range(min(batch_size, len(train))))), batch_size=batch_size)
    return Student(checkpoint, model, ckpt, data, val, DataLoader(val, batch_size=batch_size, shuffle=False),
                   calib, bundle.mean, bundle.std)


def provenance(student: Student, energy_source: str) -> dict[str, str]:
    """Where every number of the report comes from: model, data, pruning, versions, machine."""
    import os

    import timm
    import torch

    import vitaccel

    cfg, prune = student.ckpt["config"], student.ckpt["config"]["prune"]
    return {
        "checkpoint": str(student.checkpoint),
        "checkpoint digest (SHA-256)": str(student.ckpt.get("digest") or "-"),
        "model": f"{cfg['model']} ({sum(p.numel() for p in student.model.parameters()) / 1e6:.2f} M weights, "
                 f"{len(student.ckpt['classes'])} classes)",
        "data": f"{student.data.name}, validation split ({len(student.images)} images, {student.data.img_size} px, "
                f"split seed {student.data.seed})",
        "pruning": f"after block {prune['layer']} (placement {prune.get('placement', 'block')}), trained at "
                   f"{prune['rule']}={prune['value']:g}",
        "training seed": str(cfg["seed"]),
        "energy table": energy_source,
        "versions": f"vitaccel {vitaccel.__version__}, torch {torch.__version__}, timm {timm.__version__}, "
                    f"Python {platform.python_version()}",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                   f"{torch.get_num_threads()} torch threads",
        "command": " ".join(["vitaccel", *sys.argv[1:]]) if Path(sys.argv[0]).name != "pytest" else "-",
    }


def density_rows(student: Student, densities: list[tuple[str, float]]) -> list[dict]:
    """Accuracy, patch tokens kept and MACs at dense and at each density, on the same weights."""
    from vitaccel.train.densities import sweep

    rule = densities[0][0]
    rows = sweep(student.model, student.loader, rule, tuple(v for _, v in densities), progress=progress())
    return [{"density": r["setting"], "top1": r["acc"], "kept": r["kept"], "kept_std": r["kept_std"], "macs": r["macs"],
             "macs_ratio": r["macs_ratio"]} for r in rows]


def executed_shapes(student: Student, settings: list[tuple[str, Any]]) -> dict[str, list]:
    """Per density label: the matmul shapes every report image executes, one image at a time."""
    from vitaccel.measure.hardware import matmul_shapes
    from vitaccel.viz.masks import set_density

    out = {}
    for label, setting in settings:
        set_density(student.model, setting)
        out[label] = [s for i in range(len(student.images)) for s in matmul_shapes(student.model,
                                                                                 student.images[i][0][None])]
    return out


def _widths(config: Any) -> tuple[str, str]:
    """The multiplier and adder tree behind a config's energy: what the cost model charges for."""
    from vitaccel.measure.hardware import _datapath_widths

    w = _datapath_widths(config)
    if config.datapath == "int":
        mult = f"{w['wa']}x{w['wb']}-bit int (|a| {w['wa']} bits, sign apart)"
    else:
        mult = f"{w['wa']}x{w['wb']}-bit significands"
    tree = "fp32 adds" if w["tree_label"] == "fp32" else f"G={w['group']}, {w['tree_label']}"
    return mult, tree


@dataclass(frozen=True)
class Emulation:
    """How the report emulates: the calibration of integer presets and which op kinds run emulated
    (the ``calib_method``, ``smooth`` and ``ops`` keys; empty ``ops``: every kind)."""

    calib_method: str = "max"
    smooth: float | None = None
    ops: tuple[str, ...] = ()

    def options(self) -> dict[str, Any]:
        """The keyword arguments of ``vitaccel.emulate.evaluate``."""
        return {"calib_method": self.calib_method, "smooth": self.smooth, **({"ops": self.ops} if self.ops else {})}


def op_summary(report: Any) -> list[dict]:
    """What an emulation report says ran emulated (with which tier and scales) and what ran native
    (and why), ops alike but for their block number folded into one row (``blocks.*.attn.qkv``)."""
    import re

    rows: dict[tuple, dict] = {}
    for emulated, items in ((True, report.ops), (False, report.native)):
        for r in items:
            how = f"{r.tier} ({'bit-exact' if r.exact else 'native order'})" if emulated else "native float32"
            detail = (r.scales or "-") if emulated else r.reason
            key = (re.sub(r"\.\d+\.", ".*.", r.name), r.kind, how, detail)
            rows.setdefault(key, {"op": key[0], "kind": r.kind, "emulated": emulated, "tier": how, "scales": detail,
                                  "count": 0})["count"] += 1
    return list(rows.values())


def accelerator_runs(student: Student, accelerators: list[str], settings: list[tuple[str, Any]],
                     shapes: dict[str, list], table: Any, exact: bool, circuits: Any = None,
                     emulation: Emulation = Emulation()) -> list[dict]:
    """Emulate the student on each accelerator at each density and cost it: one dict per run (``ops``:
    ``op_summary`` of its emulation); with ``circuits`` (``viz.circuits.CircuitCosts``) multiply and add
    energies come from the synthesized units."""
    from vitaccel import emulate
    from vitaccel.arith import AcceleratorConfig
    from vitaccel.measure.hardware import cost
    from vitaccel.viz.masks import set_density

    runs = []
    n_images = len(student.images)
    for name in accelerators:
        config = AcceleratorConfig.load(name)
        mult, tree = _widths(config)
        for label, setting in settings:
            set_density(student.model, setting)
            report = emulate.evaluate(student.model, config, student.loader, exact=exact, calib_batches=1,
                                      calib_data=student.calib, **emulation.options())
            c = cost(shapes[label], config, table,
                     **(circuits.cost_options(name) if circuits else {})).scaled(1 / n_images)
            tier = "reference (float32)" if report.tier == "native" else \
                f"{report.tier} ({'bit-exact' if report.exact else 'native order'})"
            moved = c.psum_bits_written + c.psum_bits_read
            run = {"accelerator": name, "density": label, "top1": 100 * report.accuracy,
                   "agreement": 100 * report.agreement, "logit_sqnr_db": report.output_sqnr_db, "tier": tier,
                   "macs": c.macs, "multiplier": mult, "adder_tree": tree,
                   "energy_uj": c.energy_total_pj / 1e6,
                   **{f"{k}_uj": v / 1e6 for k, v in c.energy_pj.items()},
                   "psum_kb": moved / 8e3, "psum_ratio": moved / max(c.psum_bits_uncompressed, 1),
                   "operand_kb": c.operand_bits / 8e3, "ops": op_summary(report)}
            runs.append(run)
            print(f"  {name:16s} {label:10s} top-1 {run['top1']:6.2f}%  energy {run['energy_uj']:8.3f} µJ")
    return runs


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


def figures(student: Student, results: dict, densities: list[tuple[str, float]], out_dir: Path) -> None:
    """Write the report's figures into ``out_dir``; their file names go into ``results["figures"]``."""
    import torch

    from vitaccel.viz.figures import accuracy_vs_energy, accuracy_vs_macs, multiplier_errors
    from vitaccel.viz.masks import token_masks_at

    files = results["figures"]
    accuracy_vs_macs(results["densities"], out_dir / "accuracy_vs_macs.png")
    files["accuracy_vs_macs"] = "accuracy_vs_macs.png"
    accuracy_vs_energy(results["runs"], out_dir / "accuracy_vs_energy.png")
    files["accuracy_vs_energy"] = "accuracy_vs_energy.png"
    images = torch.stack([student.images[i][0] for i in range(min(8, len(student.images)))])
    shown = [None] + list(densities[::max(1, len(densities) // 2)])
    token_masks_at(student.model, images, shown, out_dir / "token_masks.png", mean=student.mean, std=student.std)
    files["token_masks"] = "token_masks.png"
    errors = multiplier_error_samples(results["accelerators"])
    if errors:
        multiplier_errors(errors, out_dir / "multiplier_errors.png")
        files["multiplier_errors"] = "multiplier_errors.png"


def compute_results(student: Student, out_dir: Path, accelerators: list[str], densities: list[tuple[str, float]],
                    exact: bool = True, energy_table: str | None = None, source: str = "table",
                    emulation: Emulation = Emulation()) -> dict:
    """Every number of the report for one student, as a plain dict (what ``results.json`` holds), with
    the figures written into ``out_dir``. ``source="synthesized"`` costs multiplies and adds from the
    synthesized circuits and adds their section (``results["circuits"]``); ``emulation`` says how
    integer presets are calibrated and which op kinds run emulated (``results["emulation"]``)."""
    from vitaccel.measure.hardware import ASSUMPTIONS, EnergyTable

    table = EnergyTable.load(energy_table)
    results: dict[str, Any] = {"provenance": provenance(student, table.source), "accelerators": accelerators,
                               "reference": REFERENCE if REFERENCE in accelerators else None,
                               "exact": exact, "images": len(student.images), "assumptions": list(ASSUMPTIONS),
                               "figures": {}, "emulation": dataclasses.asdict(emulation)}
    print(f"densities on {len(student.images)} validation images ...")
    results["densities"] = density_rows(student, densities)
    settings = [("dense", None)] + [(f"{r}={v:g}", (r, v)) for r, v in densities[::max(1, len(densities) // 2)]]
    shapes = executed_shapes(student, settings)
    circuits = None
    if source == "synthesized":
        from vitaccel.viz import circuits as hw_view

        print("circuits: synthesis and switching energy of every preset ...")
        circuits = hw_view.measure_student(student, accelerators, progress=progress())
        results["energy_source"] = hw_view.source_note(circuits)
    results["runs"] = accelerator_runs(student, accelerators, settings, shapes, table, exact, circuits, emulation)
    figures(student, results, densities, out_dir)
    if circuits is not None:
        section = hw_view.circuits_section(circuits, results["runs"], shapes, len(student.images), table, out_dir)
        results["circuits"] = dataclasses.asdict(section)
        results["figures"].update({f.split(".")[0]: f for f, _ in section.figures})
    return results


RUN_COLUMNS = ("accelerator", "density", "top1", "agreement", "logit_sqnr_db", "tier", "macs", "multiplier",
               "adder_tree", "multiply_uj", "add_uj", "psum_uj", "operands_uj", "energy_uj", "psum_kb",
               "psum_ratio", "operand_kb")


def write_results(results: dict, out_dir: Path) -> list[Path]:
    """``results.json`` (everything) and ``results.csv`` (one row per accelerator x density)."""
    import csv

    csv_path = out_dir / "results.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RUN_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results["runs"])
    return [write_json(out_dir / "results.json", results), csv_path]


def finish(results: dict, out_dir: Path, title: str, json_path: str | None, extra: list | None = None) -> None:
    """Write the report files and results, print the summary table and where everything went.
    ``extra`` sections go after the summary and the provenance."""
    from vitaccel.viz.report import write_report
    from vitaccel.viz.sections import SECTIONS, summary_rows
    from vitaccel.viz.table import columns

    sections = [s for make in SECTIONS if (s := make(results)) is not None]
    md, html_path = write_report(out_dir, title, sections[:2] + list(extra or []) + sections[2:])
    written = write_results(results, out_dir)
    header, rows = summary_rows(results)
    print("\n" + "\n".join(columns(header, rows)))
    print(f"\nwrote {html_path}, {md}, {', '.join(p.name for p in written)} and "
          f"{len(results['figures'])} figures in {out_dir}/")
    if json_path:
        print(f"wrote {write_json(json_path, results)}")


def check_inputs(cfg: ReportConfig) -> None:
    """Every accelerator, the energy table, the density values and the device, before any work."""
    from vitaccel.arith import AcceleratorConfig
    from vitaccel.measure.hardware import EnergyTable
    from vitaccel.prune.config import value_problem
    from vitaccel.train.distributed import use_cuda

    for flag, load, names in (("--accelerators", AcceleratorConfig.load, cfg.accelerators),
                              ("--energy-table", EnergyTable.load, [cfg.energy_table])):
        for name in names:
            try:
                load(name)
            except ConfigError as exc:
                raise ConfigError(f"{flag}: {exc}") from None
    for v in cfg.values:
        problem = value_problem(cfg.rule, v)
        if problem:
            raise ConfigError(f"--values: value {v!r} is not allowed; {problem}")
    if cfg.device == "cuda" and use_cuda(cfg.device, "--device"):
        raise ConfigError("--device: value 'cuda' is not allowed for report yet; emulation runs on the CPU "
                          "(use cpu or auto)")
    if cfg.json:
        from vitaccel.configtools import check_writable
        check_writable(Path(cfg.json).parent, "--json")


def run_report(cfg: ReportConfig) -> int:
    """The report stages for any trained checkpoint; every input is checked before the long work."""
    check_inputs(cfg)
    student = load_student(Path(cfg.checkpoint), cfg.data, cfg.max_images, cfg.batch_size)
    out_dir = claim_out(cfg.out, "report", cfg.force)
    results = compute_results(student, out_dir, cfg.accelerators, [(cfg.rule, v) for v in cfg.values],
                              exact=not cfg.fast, energy_table=cfg.energy_table, source=cfg.source,
                              emulation=Emulation(cfg.calib_method, cfg.smooth, tuple(cfg.ops)))
    finish(results, out_dir, f"vitaccel report: {cfg.checkpoint}", cfg.json)
    return 0
