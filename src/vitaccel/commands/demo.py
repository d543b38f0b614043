"""``vitaccel demo``: the main job on bundled digits, in one command.

The number formats, one matmul on every accelerator preset, then a teacher and a SaiT student
trained on digits (or reused from the cache), then the report stages of ``vitaccel report`` on
the student: densities, accelerators x densities, costs, figures, ``report.md``/``report.html``.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from pathlib import Path

from vitaccel.commands._shared import claim_out, device_field, json_field, progress
from vitaccel.configtools import Flag, add_config_arguments, config_from_args, field

# int8-dyn / int8-lot4n-dyn: the best integer calibration on real transformers (per-token scales, and
# for 4-bit truncation rounded to nearest; benchmarks/bench_calibration.py)
DEFAULT_ACCELERATORS = ("fp32", "fp13", "bf16", "int8", "int8-dyn", "int8-lot4", "int8-lot4n-dyn", "int8-lot4-psum")
# Keys of a training config that do not change its results: a cache trained with others is reused.
NOT_RESULTS = ("progress",)


@dataclass
class DemoConfig:
    """The keys of ``vitaccel demo``."""

    out: str = field("vitaccel-demo", help="report folder (report.md, report.html, results.json/.csv, PNGs)")
    seed: int = field(0, help="training seed of teacher and student")
    cache: str | None = field(None, help="folder for trained checkpoints (default: ~/.cache/vitaccel/demo)")
    quick: bool = field(False, help="2 training epochs, fewer images: a smoke run")
    force: bool = field(False, help="write into a folder that holds another command's output")
    source: str = field("synthesized", choices=("table", "synthesized"),
                        help="multiply, adder-tree and accumulator energies: the synthesized circuits (a Circuits "
                             "section; the first run compiles Yosys and synthesizes) or the energy table")
    device: str = device_field(auto="CUDA for training when available; the emulation runs on the CPU")
    json: str | None = json_field()


FLAGS = (Flag("--out", "out"), Flag("--seed", "seed"), Flag("--cache", "cache"), Flag("--quick", "quick", switch=True),
         Flag("--force", "force", switch=True), Flag("--source", "source"), Flag("--device", "device"),
         Flag("--json", "json"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``demo`` parser."""
    p = sub.add_parser("demo", help="the main job on bundled digits: train (cached), prune, emulate, cost, report",
                       description="Train (or reuse from the cache) a dense teacher and a SaiT student on the "
                                   "bundled digits, then write the report of `vitaccel report` for the student, "
                                   "with the number formats and one matmul on every preset first.")
    add_config_arguments(p, lambda: DemoConfig, FLAGS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo per the arguments; returns 0."""
    return run_demo(config_from_args(DemoConfig, args))


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vitaccel" / "demo"


def formats_table() -> tuple[list[str], list[list[str]]]:
    """Bits, range and precision of every named format."""
    from vitaccel.arith import FloatFormat
    from vitaccel.arith.formats import NAMED
    from vitaccel.viz.table import fmt

    header = ["format", "bits", "max", "min normal", "min subnormal", "unit roundoff", "specials"]
    rows = []
    aliases = {f.name: name for name, f in NAMED.items() if f.name != name}  # fp16 -> e5m10, bf16 -> e8m7
    for name in sorted(n for n in NAMED if NAMED[n].name == n):
        f = FloatFormat.named(name)
        label = f"{name} (FP13)" if name == "e5m7" else f"{name} ({aliases[name]})" if name in aliases else name
        rows.append([label, f.bits, fmt(f.max, ".6g"), fmt(f.min_normal, ".3e"), fmt(f.min_subnormal, ".3e"),
                     fmt(f.eps, ".3e"), f.specials])
    return header, rows


def matmul_errors(seed: int, shape: tuple[int, int, int] = (256, 384, 1152)) -> tuple[list[str], list[list[str]]]:
    """One random-normal matmul through every preset: error vs float32 and the tier."""
    import torch

    from vitaccel.arith import AcceleratorConfig, emulated_matmul, matmul_tier
    from vitaccel.emulate.tensor_error import TensorError
    from vitaccel.viz.table import fmt

    g = torch.Generator().manual_seed(seed)
    m, k, n = shape
    a = torch.randn(m, k, generator=g)
    b = torch.randn(k, n, generator=g) / k ** 0.5
    ref = a @ b
    header = ["accelerator", "datapath", "exact=True tier", "SQNR dB", "max rel err"]
    rows = []
    for name in AcceleratorConfig.presets():
        config = AcceleratorConfig.preset(name)
        y = emulated_matmul(a, b, config, exact=True)
        error = TensorError()
        error.update(y, ref)
        tier = matmul_tier(config, exact=True)
        rows.append([name, config.datapath, "reference (float32)" if tier.name == "native" else
                     f"{tier.name} ({'bit-exact' if tier.exact else 'host order'})",
                     fmt(error.sqnr_db, ".1f"), fmt(error.max_rel_err, ".2e")])
    return header, rows


def _same_run(saved: dict, wanted: dict) -> bool:
    """Whether a cached run's config is ``wanted``, wherever the cache folder now is: paths inside the
    cache that saved its run (out_dir, teacher, init) are compared relative to it."""
    old_root, new_root = str(Path(saved.get("out_dir", "")).parent), str(Path(wanted["out_dir"]).parent)

    def moved(value: object) -> object:
        if isinstance(value, str) and (value == old_root or value.startswith(old_root + os.sep)):
            return new_root + value[len(old_root):]
        return value

    def same(config: dict) -> dict:
        return {k: moved(v) for k, v in config.items() if k not in NOT_RESULTS}

    return same(saved) == {k: v for k, v in wanted.items() if k not in NOT_RESULTS}


def cached_training(config_name: str, out_dir: Path, overrides: list[str]) -> Path:
    """``last.pt`` (final-epoch weights) of ``config_name`` trained into ``out_dir``: reused when it
    loads, finished and was trained with the same config (also after the cache folder moved);
    retrained otherwise (a corrupt, partial or stale cache is never used)."""
    from vitaccel.configtools import to_dict
    from vitaccel.errors import CheckpointError
    from vitaccel.train import load_checkpoint, load_config, train

    cfg = load_config(config_name, [f"out_dir={out_dir}", *overrides])
    last = out_dir / "last.pt"
    if last.exists():
        try:
            ckpt = load_checkpoint(last)
            if _same_run(ckpt.get("config") or {}, to_dict(cfg)) and ckpt.get("epoch") == cfg.epochs:
                print(f"reusing cached {config_name}: {last}")
                return last
            print(f"cache {last} is unfinished or was trained with another config: retraining")
        except CheckpointError as exc:
            print(f"cache {last} is unusable ({exc}): retraining")
    print(f"training {config_name} -> {out_dir}")
    train(cfg, overwrite=True)
    return last


def run_demo(cfg: DemoConfig) -> int:
    """Train (or reuse) teacher and student on digits, then evaluate everything and write the report."""
    from vitaccel.commands.report import compute_results, finish, load_student
    from vitaccel.configtools import check_writable
    from vitaccel.train.distributed import use_cuda
    from vitaccel.viz.report import Section
    from vitaccel.viz.table import columns

    t_start = time.perf_counter()
    use_cuda(cfg.device, "--device")
    cache_dir = check_writable(Path(cfg.cache) if cfg.cache else _cache_dir(), "--cache")
    out_dir = claim_out(cfg.out, "demo", cfg.force)

    print("== 1. Number formats ==")
    header, rows = formats_table()
    print("\n".join(columns(header, rows)))
    mm_header, mm_rows = matmul_errors(cfg.seed, (64, 384, 384) if cfg.quick else (256, 384, 1152))
    print("\n== A DeiT-S-sized matmul on every accelerator preset (vs float32) ==")
    print("\n".join(columns(mm_header, mm_rows)))
    extra = [Section("Number formats", [], [(header, rows)]),
             Section("One matmul on every accelerator preset",
                     ["Random normal operands; error of the emulated result against float32."],
                     [(mm_header, mm_rows)])]

    print("\n== 2. Teacher and SaiT student on digits (cached) ==")
    train = [f"seed={cfg.seed}", f"device={cfg.device}"] + ([] if progress() else ["progress=false"]) + \
        (["epochs=2"] if cfg.quick else [])
    suffix = f"-s{cfg.seed}{'-quick' if cfg.quick else ''}"
    teacher = cached_training("digits-teacher", cache_dir / f"teacher{suffix}", train)
    student = cached_training("digits-sait", cache_dir / f"sait{suffix}",
                              train + [f"teacher={teacher}", f"init={teacher}"])

    print("\n== 3. Densities, accelerators and costs ==")
    densities = [("mass", v) for v in ((0.9, 0.7) if cfg.quick else (0.97, 0.9, 0.8, 0.7, 0.6))]
    results = compute_results(load_student(student, {}, 128 if cfg.quick else 512), out_dir,
                              list(DEFAULT_ACCELERATORS), densities, source=cfg.source)
    results["provenance"]["demo"] = f"{'--quick, ' if cfg.quick else ''}cache {cache_dir}"
    finish(results, out_dir, "vitaccel demo report", cfg.json, extra)
    print(f"({time.perf_counter() - t_start:.0f} s in all)")
    return 0
