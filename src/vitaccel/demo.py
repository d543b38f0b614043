"""``vitaccel demo`` and ``vitaccel report``: accuracy, operations, memory traffic and energy, together.

For one trained SaiT student and a data set: accuracy and MACs at several token densities (same
weights), the student on every accelerator preset at each density, the hardware cost of each
(operation counts, partial-sum traffic, energy estimate), figures, and ``report.md`` /
``report.html``. ``demo`` first trains (or reuses cached) teacher and student on the bundled
digits data. Every number is computed in the run that writes it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from vitaccel.arith import AcceleratorConfig, FloatFormat, emulated_matmul, intpath, matmul_tier
from vitaccel.arith.formats import NAMED
from vitaccel.emulate.stats import ErrorStats
from vitaccel.viz.report import Section, write_report
from vitaccel.viz.table import columns, fmt

DEFAULT_ACCELERATORS = ("fp32", "fp13", "bf16", "int8", "int8-lot4", "int8-lot4-psum")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vitaccel" / "demo"


# -- stage 1: the arithmetic on its own --------------------------------------------------------
def formats_table() -> tuple[list[str], list[list[str]]]:
    """Bits, range and precision of every named format."""
    header = ["format", "bits", "max", "min normal", "min subnormal", "unit roundoff", "specials"]
    rows = []
    for name in sorted(NAMED):
        f = FloatFormat.named(name)
        label = f"{name} (FP13)" if name == "e5m7" else name
        rows.append([label, f.bits, fmt(f.max, ".6g"), fmt(f.min_normal, ".3e"), fmt(f.min_subnormal, ".3e"),
                     fmt(f.eps, ".3e"), f.specials])
    return header, rows


def matmul_errors(seed: int, shape: tuple[int, int, int] = (256, 384, 1152)) -> tuple[list[str], list[list[str]]]:
    """One random-normal matmul through every preset: error vs float32, tier, time."""
    g = torch.Generator().manual_seed(seed)
    m, k, n = shape
    a = torch.randn(m, k, generator=g)
    b = torch.randn(k, n, generator=g) / k ** 0.5
    ref = a @ b
    header = ["accelerator", "datapath", "exact=True tier", "SQNR dB", "max rel err", "time s"]
    rows = []
    for name in AcceleratorConfig.presets():
        config = AcceleratorConfig.preset(name)
        t0 = time.perf_counter()
        y = emulated_matmul(a, b, config, exact=True)
        seconds = time.perf_counter() - t0
        stats = ErrorStats()
        stats.update(y, ref)
        tier = matmul_tier(config, exact=True)
        rows.append([name, config.datapath, f"{tier.name} ({'bit-exact' if tier.exact else 'host order'})",
                     fmt(stats.sqnr_db, ".1f"), fmt(stats.max_rel_err, ".2e"), f"{seconds:.2f}"])
    return header, rows


def multiplier_error_samples(accelerators: list[str]) -> dict[str, torch.Tensor]:
    """Relative error of each distinct truncating multiplier in ``accelerators`` (and, for contrast,
    plain truncation at the same width) over every int8 activation magnitude."""
    variants: dict[tuple, list[str]] = {}
    for name in accelerators:
        cfg = AcceleratorConfig.load(name)
        if cfg.datapath == "int" and cfg.int_datapath.keep_bits is not None:
            dp = cfg.int_datapath
            variants.setdefault((dp.a_bits, dp.keep_bits, dp.keep_rounding), []).append(name)
            variants.setdefault((dp.a_bits, dp.keep_bits, "truncate"), [])
    out = {}
    for (bits, keep, rounding), names in variants.items():
        a = torch.arange(1, intpath.qmax(bits) + 1)
        approx = intpath.multiply(a, torch.ones_like(a), keep, rounding)
        label = f"k={keep} {rounding}" + (f" ({', '.join(names)})" if names else "")
        out[label] = (approx - a).double() / a.double()
    return out


# -- stage 2: cached training ------------------------------------------------------------------
def cached_training(config_name: str, out_dir: Path, overrides: list[str]) -> Path:
    """``last.pt`` (final-epoch weights) of ``config_name`` trained into ``out_dir``: reused when it
    loads, finished and was trained with the same config; retrained otherwise (a corrupt, partial
    or stale cache is never used)."""
    from vitaccel.configtools import to_dict
    from vitaccel.train import CheckpointError, load_checkpoint, load_config, train

    cfg = load_config(config_name, [f"out_dir={out_dir}", *overrides])
    last = out_dir / "last.pt"
    if last.exists():
        try:
            ckpt = load_checkpoint(last)
            if ckpt.get("config") == to_dict(cfg) and ckpt.get("epoch") == cfg.epochs:
                print(f"reusing cached {config_name}: {last}")
                return last
            print(f"cache {last} is unfinished or was trained with another config: retraining")
        except CheckpointError as exc:
            print(f"cache {last} is unusable ({exc}): retraining")
    print(f"training {config_name} -> {out_dir}")
    train(cfg, overwrite=True)
    return last


# -- stages 3-5: densities, accelerators, costs -------------------------------------------------
def evaluate_everything(checkpoint: Path, out_dir: Path, accelerators: list[str], densities: list[tuple],
                        data_overrides: list[str] | None = None, max_images: int = 512,
                        exact: bool = True, energy_table: str | None = None) -> tuple[list[Section], list[list[str]]]:
    """Report sections for one checkpoint: densities, accelerators x densities, costs, figures."""
    from torch.utils.data import DataLoader, Subset

    from vitaccel import emulate as emu
    from vitaccel.configtools import from_dict
    from vitaccel.data import DataConfig, build_datasets
    from vitaccel.measure.cost import ASSUMPTIONS, EnergyTable, cost, matmul_shapes
    from vitaccel.train import model_from_checkpoint
    from vitaccel.train.sweep import plot_sweep, sweep, write_csv
    from vitaccel.viz import token_masks
    from vitaccel.viz.figures import accuracy_vs_energy, multiplier_errors

    model, ckpt = model_from_checkpoint(checkpoint)
    data_cfg = ckpt["config"]["data"]
    if data_overrides:
        from vitaccel.configtools import apply_overrides
        data_cfg = apply_overrides(data_cfg, data_overrides)
    bundle = build_datasets(from_dict(DataConfig, data_cfg))
    val = bundle.val
    if len(val) > max_images:
        val = Subset(val, list(range(max_images)))
    loader = DataLoader(val, batch_size=128, shuffle=False)
    sections = []

    # densities on the same weights
    settings = [(r, v) for r, v in densities]
    rule = settings[0][0] if settings else "mass"
    rows = sweep(model, loader, rule, tuple(v for r, v in settings if r == rule))
    write_csv(rows, out_dir / "densities.csv")
    plot_sweep(rows, out_dir / "accuracy_vs_macs.png", "Accuracy vs MACs: one student, many densities")
    images = torch.stack([val[i][0] for i in range(min(16, len(val)))])
    mask_value = settings[len(settings) // 2][1] if settings else 0.9
    model.pruning.configure(dense=False, rule=rule, value=mask_value)
    token_masks(model, images, out_dir / "token_masks.png", mean=bundle.mean, std=bundle.std)
    sections.append(Section(
        "Token pruning: one set of weights, many densities",
        [f"Checkpoint {checkpoint}; {len(val)} validation images. MACs are multiply-accumulates per image "
         f"(1 MAC = 2 FLOPs) over the shapes actually executed, padding excluded."],
        [(["setting", "top-1 %", "patch tokens kept", "MACs/image (M)", "% of dense MACs"],
          [[r["setting"], f"{r['acc']:.2f}", f"{r['kept']:.1f} ± {r['kept_std']:.1f}", f"{r['macs'] / 1e6:.2f}",
            f"{100 * r['macs_ratio']:.0f}"] for r in rows])],
        [("accuracy_vs_macs.png", "Top-1 against MACs per image; dense is the star."),
         ("token_masks.png", f"Patches kept on validation images at {rule}={mask_value:g} "
                             "(pruned patches dimmed).")]))

    # accelerators x densities, with costs
    table = EnergyTable.load(energy_table)
    density_list = [("dense", None)] + [(f"{r}={v:g}", (r, v)) for r, v in settings[::max(1, len(settings) // 2)]]
    shapes_by_density = {}
    for label, setting in density_list:
        model.pruning.configure(dense=setting is None, **({"rule": setting[0], "value": setting[1]} if setting else {}))
        sample = [val[i][0][None] for i in range(min(32, len(val)))]
        shapes = [s for x in sample for s in matmul_shapes(model, x)]
        shapes_by_density[label] = (shapes, len(sample))
    points, acc_rows, cost_rows, summary = [], [], [], []
    for name in accelerators:
        config = AcceleratorConfig.load(name)
        for label, setting in density_list:
            model.pruning.configure(dense=setting is None, **({"rule": setting[0], "value": setting[1]} if setting else {}))
            t0 = time.perf_counter()
            report = emu.evaluate(model, config, loader, exact=exact, calib_batches=1)
            seconds = time.perf_counter() - t0
            shapes, n_img = shapes_by_density[label]
            c = cost(shapes, config, table).scaled(1 / n_img)
            acc = 100 * report.accuracy
            points.append({"accelerator": name, "density": label, "energy_uj": c.energy_total_pj / 1e6, "acc": acc})
            tier = f"{report.tier} ({'exact' if report.exact else 'not exact'})"
            acc_rows.append([name, label, f"{acc:.2f}", f"{100 * report.agreement:.1f}",
                             fmt(report.output_sqnr_db, ".1f"), tier, f"{seconds:.1f}"])
            psum_ratio = (c.psum_bits_written + c.psum_bits_read) / max(c.psum_bits_uncompressed, 1)
            cost_rows.append([name, label, f"{c.macs / 1e6:.2f}", ", ".join(c.mults), f"{c.energy_pj['multiply'] / 1e6:.3f}",
                              f"{c.energy_pj['add'] / 1e6:.3f}",
                              f"{(c.psum_bits_written + c.psum_bits_read) / 8e3:.1f}", f"{psum_ratio:.2f}",
                              f"{c.operand_bits / 8e3:.1f}", f"{c.energy_total_pj / 1e6:.3f}"])
            summary.append([name, label, f"{acc:.2f}", f"{c.macs / 1e6:.2f}", f"{c.energy_total_pj / 1e6:.3f}", tier])
            print(f"  {name:16s} {label:10s} top-1 {acc:6.2f}%  energy {c.energy_total_pj / 1e6:8.3f} µJ  ({seconds:.1f} s)")
    accuracy_vs_energy(points, out_dir / "accuracy_vs_energy.png")
    errors = multiplier_error_samples(accelerators)
    figures = [("accuracy_vs_energy.png", "Top-1 against estimated energy per image, every preset x density.")]
    if errors:
        multiplier_errors(errors, out_dir / "multiplier_errors.png")
        figures.append(("multiplier_errors.png", "Relative error of each truncating multiplier over all int8 "
                                                 "activation magnitudes (exact multipliers have none)."))
    sections.append(Section(
        "The student on every accelerator",
        ["Each preset runs every matrix product of the student through vitaccel.arith.emulated_matmul "
         f"({'exact=True: bit-identical to the golden model' if exact else 'exact=False where allowed'}); "
         "integer presets are calibrated (max) on the first batch of 128 validation images. Agreement is the fraction of "
         "top-1 predictions equal to the float32 model's; SQNR compares the logits."],
        [(["accelerator", "density", "top-1 %", "agree %", "logit SQNR dB", "tier", "time s"], acc_rows)],
        figures))
    sections.append(Section(
        "Hardware cost (estimates)",
        [f"Per image, averaged over {shapes_by_density['dense'][1]} validation images run one at a time. Energy "
         f"table: {table.source}. These are estimates; assumptions:"] + [f"- {a}" for a in ASSUMPTIONS],
        [(["accelerator", "density", "MACs (M)", "multiplier", "mult µJ", "add µJ", "psum KB moved",
           "psum ratio", "operand KB", "energy µJ"], cost_rows)]))
    return sections, summary


# -- the commands --------------------------------------------------------------------------------
def run_demo(out: str = "vitaccel-report", seed: int = 0, cache: str | None = None, quick: bool = False) -> int:
    """Train (or reuse) teacher and student on digits, then evaluate everything and write the report."""
    t_start = time.perf_counter()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(cache) if cache else _cache_dir()
    sections = []

    print("== 1. Number formats ==")
    header, rows = formats_table()
    print("\n".join(columns(header, rows)))
    mm_header, mm_rows = matmul_errors(seed, (64, 384, 384) if quick else (256, 384, 1152))
    print("\n== A DeiT-S-sized matmul on every accelerator preset (vs float32) ==")
    print("\n".join(columns(mm_header, mm_rows)))
    sections.append(Section("Number formats", [], [(header, rows)]))
    sections.append(Section("One matmul on every accelerator preset",
                            ["Random normal operands; error of the emulated result against float32."],
                            [(mm_header, mm_rows)]))

    print("\n== 2. Teacher and SaiT student on digits (cached) ==")
    extra = [f"seed={seed}"] + (["epochs=2"] if quick else [])
    teacher = cached_training("digits-teacher", cache_dir / f"teacher-s{seed}{'-quick' if quick else ''}", extra)
    student = cached_training("digits-sait", cache_dir / f"sait-s{seed}{'-quick' if quick else ''}",
                              extra + [f"teacher={teacher}", f"init={teacher}"])

    print("\n== 3. Densities, accelerators and costs ==")
    densities = [("mass", v) for v in ((0.9, 0.7) if quick else (0.97, 0.9, 0.8, 0.7, 0.6))]
    accs = list(DEFAULT_ACCELERATORS)
    more, summary = evaluate_everything(student, out_dir, accs, densities, max_images=128 if quick else 512)
    sections += more
    md, html_path = write_report(out_dir, "vitaccel demo report", sections)
    print("\n== Summary (per image) ==")
    print("\n".join(columns(["accelerator", "density", "top-1 %", "MACs (M)", "energy µJ", "tier"], summary)))
    print(f"\nreport: {html_path} and {md}  ({time.perf_counter() - t_start:.0f} s)")
    return 0


def run_report(checkpoint: str, out: str, accelerators: list[str], data: list[str] | None = None,
               densities: list[tuple] | None = None, max_images: int = 512, exact: bool = True,
               energy_table: str | None = None) -> int:
    """The demo's evaluation stages for any trained checkpoint."""
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"--checkpoint {checkpoint!r} does not exist")
    for name in accelerators:
        AcceleratorConfig.load(name)  # a bad name fails before any work
    from vitaccel.measure.cost import EnergyTable
    EnergyTable.load(energy_table)  # so does a bad energy table
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sections, summary = evaluate_everything(Path(checkpoint), out_dir, accelerators,
                                            densities or [("mass", v) for v in (0.97, 0.9, 0.8, 0.7)],
                                            data_overrides=data, max_images=max_images, exact=exact,
                                            energy_table=energy_table)
    md, html_path = write_report(out_dir, f"vitaccel report: {checkpoint}", sections)
    print("\n".join(columns(["accelerator", "density", "top-1 %", "MACs (M)", "energy µJ", "tier"], summary)))
    print(f"\nreport: {html_path} and {md}")
    return 0
