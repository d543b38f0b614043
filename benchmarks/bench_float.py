"""Float-format and FP13 datapath speed, as ratios against native PyTorch in the same run.

    python benchmarks/bench_float.py [--quick] [--threads N] [--chunk-mib MIB] [--formats]

Each figure is median(time of ours) / median(time of the native op on the same tensors),
measured interleaved so machine noise hits both alike. DeiT-S shapes: 197 tokens x batch 8 =
1576 rows, width 384, qkv 1152.

FP13 ``quantize`` is timed as bfloat16 storage (``dtype=torch.bfloat16``, the same output as the
``x.to(bfloat16)`` it is compared with) and as float32, on activations (randn; also at batch
64), on half zeros (a ReLU's output) and on weight-like data (small values in most 256-element
blocks: the slowest case of the cast route).

The glibc heap matters for results of a few MB: freed blocks may go back to the system, and a
new float32 result then pays a page fault per 4 KiB on first touch (about 2.5 casts at 2.4 MB;
it comes and goes with the heap's state; each table's last row is the minor page faults per timed
round). ``--fixed-heap`` reruns the script with
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` at 256 MiB, so that freed blocks are
reused on both sides; the header says which heap a run had.

``--formats`` prints instead, for each of three shapes (activations 1576x384 randn, weights
384x1536 N(0, 0.02), batch-64 activations 12608x384 randn), the table of every format (the named
ones and the OCP/finite, no-subnormal and saturating variants) x every rounding: float32
``quantize`` over ``x.to(bfloat16)`` of the same tensor, interleaved, and the FP13 nearest_even
``dtype=bfloat16`` row of the main table next to it.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import sys
from typing import Callable

import torch

from timing import interleaved
from vitaccel.arith import FP13, AcceleratorConfig, FloatFormat, emulated_matmul
from vitaccel.arith.formats import NAMED, ROUNDINGS
from vitaccel.arith.matmul import CHUNK_BYTES


def ratio(ours: Callable, native: Callable, repeats: int) -> tuple[float, float, float]:
    """(ratio of medians, median ours s, median native s), interleaved runs after a warm-up."""
    times = interleaved({"native": native, "ours": ours}, 1, repeats)
    mo, mn = statistics.median(times["ours"]), statistics.median(times["native"])
    return mo / mn, mo, mn


HEAP_KEYS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
TABLE_FORMATS = {**{name: FloatFormat.named(name) for name in NAMED},
                 "e3m2 (OCP)": FloatFormat(3, 2, specials="finite"), "e2m3 (OCP)": FloatFormat(2, 3, specials="finite"),
                 "e2m1 (OCP)": FloatFormat(2, 1, specials="finite"), "e5m7 nosub": FloatFormat(5, 7, subnormals=False),
                 "e5m7 sat": FloatFormat(5, 7, saturate=True), "e4m3 finite": FloatFormat(4, 3, specials="finite")}


def format_table(reps: int, quick: bool) -> None:
    """Ratio of ``FloatFormat.quantize`` (float32 result) to ``x.to(bfloat16)`` of the same tensor,
    every format x rounding, on activations, weights and batch-64 activations."""
    g = torch.Generator().manual_seed(0)
    shapes = {"activations 1576x384 randn": torch.randn(1576, 384, generator=g),
              "weights 384x1536 N(0, 0.02)": torch.randn(384, 1536, generator=g) * 0.02}
    if not quick:
        shapes["batch 64 12608x384 randn"] = torch.randn(12608, 384, generator=g)
    gen = torch.Generator().manual_seed(1)
    for fmt in TABLE_FORMATS.values():  # load (or compile) every kernel before any timing
        for r in ROUNDINGS:
            fmt.quantize(shapes["activations 1576x384 randn"], r, gen if r == "stochastic" else None)
    for shape, a in shapes.items():
        def cast(a: torch.Tensor = a) -> torch.Tensor:
            return a.to(torch.bfloat16)
        fp13 = ratio(lambda a=a: FP13.quantize(a, dtype=torch.bfloat16), cast, reps * 4)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {shape}: quantize (float32) / "
              f"x.to(bfloat16) ({fp13[2] * 1e3:.3f} ms), median of repeats; FP13 nearest_even dtype=bfloat16: "
              f"{fp13[0]:.2f}")
        print(f"{'format':12s}" + "".join(f"{r:>13s}" for r in ROUNDINGS))
        faults = {r: [] for r in ROUNDINGS}  # minor page faults (first touches of fresh memory) per timed round
        for name, fmt in TABLE_FORMATS.items():
            cells = []
            for r in ROUNDINGS:
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                cells.append(ratio(lambda fmt=fmt, r=r, a=a: fmt.quantize(a, r, gen if r == "stochastic" else None),
                                   cast, reps)[0])
                faults[r].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / (reps + 1))
            print(f"{name:12s}" + "".join(f"{c:13.2f}" for c in cells))
        print(f"{'page faults':12s}" + "".join(f"{statistics.median(faults[r]):13.0f}" for r in ROUNDINGS)
              + "  (per timed round of quantize and cast, median; hundreds: fresh pages, see --fixed-heap)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, smaller faithful shape")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--chunk-mib", type=int, default=None,
                        help="working-set bound of the exact tiers' row chunks (emulated_matmul's chunk_bytes); "
                             "default as shipped")
    parser.add_argument("--formats", action="store_true",
                        help="the format x rounding tables of quantize ratios (activations, weights, batch 64)")
    parser.add_argument("--fixed-heap", action="store_true",
                        help="rerun with glibc's mmap and trim thresholds at 256 MiB (freed blocks reused)")
    args = parser.parse_args()
    if args.fixed_heap and HEAP_KEYS[0] not in os.environ:
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **dict.fromkeys(HEAP_KEYS, str(2 ** 28))})
    print(f"glibc heap: {'fixed (' + ', '.join(HEAP_KEYS) + ' 256 MiB)' if HEAP_KEYS[0] in os.environ else 'default'}")
    torch.set_num_threads(args.threads)
    if args.formats:
        format_table(5 if args.quick else 11, args.quick)
        return
    chunk = CHUNK_BYTES if args.chunk_mib is None else args.chunk_mib * 2 ** 20
    reps = 5 if args.quick else 21
    g = torch.Generator().manual_seed(0)
    m, k, n = 1576, 384, 1152
    a = torch.randn(m, k, generator=g)
    b = torch.randn(k, n, generator=g) * 0.05
    fp13 = AcceleratorConfig.preset("fp13")
    rows = []

    bf16 = torch.bfloat16
    r = ratio(lambda: FP13.quantize(a, dtype=bf16), lambda: a.to(bf16), reps * 10)
    rows.append(("FP13 quantize, dtype=bfloat16 vs x.to(bf16)", f"{m}x{k}", r, "<= 3x"))
    r = ratio(lambda: FP13.quantize(a), lambda: a.to(bf16), reps * 10)
    rows.append(("FP13 quantize, float32 vs x.to(bf16)", f"{m}x{k}", r, "report"))
    r = ratio(lambda: FP13.quantize(a), lambda: a.to(bf16).float(), reps * 10)
    rows.append(("FP13 quantize, float32 vs x.to(bf16).float()", f"{m}x{k}", r, "report"))
    big = torch.randn(m * 8, k, generator=g)  # batch 64: the fixed cost of finding values to mend amortised
    r = ratio(lambda: FP13.quantize(big, dtype=bf16), lambda: big.to(bf16), reps * 2)
    rows.append(("  same, dtype=bfloat16, batch 64", f"{m * 8}x{k}", r, "report"))
    relu = a.clamp(min=0)  # half zeros
    r = ratio(lambda: FP13.quantize(relu, dtype=bf16), lambda: relu.to(bf16), reps * 10)
    rows.append(("  same, dtype=bfloat16, half zeros (ReLU)", f"{m}x{k}", r, "report"))
    w = torch.randn(k * 3, k, generator=g) * 0.02  # weights: FP13 subnormals in half the blocks
    r = ratio(lambda: FP13.quantize(w, dtype=bf16), lambda: w.to(bf16), reps * 4)
    rows.append(("  same, dtype=bfloat16, weights N(0, 0.02)", f"{k * 3}x{k}", r, "report"))
    r = ratio(lambda: emulated_matmul(a, b, fp13, exact=False), lambda: a @ b, reps)
    rows.append(("fp13 emulated_matmul exact=False (fast)", f"{m}x{k}@{k}x{n}", r, "<= 3x"))
    r = ratio(lambda: emulated_matmul(a, b, fp13, exact=True, chunk_bytes=chunk), lambda: a @ b, max(3, reps // 4))
    rows.append(("fp13 emulated_matmul exact=True (tiled)", f"{m}x{k}@{k}x{n}", r, "report"))
    for acc in ("bf16", "fp16"):
        narrow = dataclasses.replace(fp13, float_datapath=dataclasses.replace(fp13.float_datapath, accumulator=acc))
        r = ratio(lambda c=narrow: emulated_matmul(a, b, c, exact=True, chunk_bytes=chunk), lambda: a @ b,
                  max(3, reps // 4))
        rows.append((f"  same, {acc} accumulator", f"{m}x{k}@{k}x{n}", r, "report"))
    mf = 64 if args.quick else 197
    af = a[:mf]
    r = ratio(lambda: emulated_matmul(af, b, "fp13-align16", chunk_bytes=chunk), lambda: af @ b, 3)
    rows.append(("fp13-align16 emulated_matmul (faithful)", f"{mf}x{k}@{k}x{n}", r, "report"))

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, chunks {chunk // 2 ** 20} MiB, "
          "median of repeats")
    print(f"{'operation':44s} {'shape':18s} {'ratio':>8s} {'ours ms':>9s} {'native ms':>10s}  target")
    for name, shape, (rt, mo, mn), target in rows:
        print(f"{name:44s} {shape:18s} {rt:8.2f} {mo * 1e3:9.3f} {mn * 1e3:10.3f}  {target}")


if __name__ == "__main__":
    main()
