"""Integer datapath speed: ``emulated_matmul`` on DeiT-S shapes as a ratio to float32 matmul.

Shapes are DeiT-S (batch 8 x 197 tokens = 1576 rows, width 384): the qkv projection
1576x384 @ 384x1152, the MLP's fc1 1576x384 @ 384x1536 and fc2 1576x1536 @ 1536x384 (K beyond
one exact float32 matmul: two chunks). Every ratio is against ``torch.matmul`` in float32 of the
same shapes measured in the same run, the timings interleaved round by round (warm-up, then the
median of repeats). Targets (issue 3): ``int8`` (fast tier) <= 2.5x, ``int8-lot4`` <= 3x,
``int8-lot4-psum`` (tiled) <= 5x. Also measured: ``int8-psum16`` (narrow adder-tree registers:
the tiled tier one group at a time), ``int8-lot4`` forced to the tiled tier, and the faithful
tier (every product materialised), timed on one image's 197 rows against float32 on those rows.

    python benchmarks/bench_int.py                  # full run, 1 thread
    python benchmarks/bench_int.py --quick          # fewer repeats, faithful on 64 rows
"""

from __future__ import annotations

import argparse
import statistics
from typing import Callable

import torch

from timing import interleaved
from vitaccel.arith import AcceleratorConfig, emulated_matmul, matmul_tier

SHAPES = {"qkv": (1576, 384, 1152), "fc1": (1576, 384, 1536), "fc2": (1576, 1536, 384)}
RUNS = [("int8", None, 2.5), ("int8-lot4", None, 3.0), ("int8-lot4-psum", None, 5.0), ("int8-psum16", None, None),
        ("int8-lot4", "tiled", None)]


def median_times(fns: dict[str, Callable[[], object]], warmup: int, repeats: int) -> dict[str, float]:
    """Median seconds of each function, interleaved round by round with a rotating order."""
    return {name: statistics.median(t) for name, t in interleaved(fns, warmup, repeats).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, faithful on 64 rows")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steady ratios on a shared machine; 0: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warmup, repeats = (1, 3) if args.quick else (2, 7)
    faithful_rows = 64 if args.quick else 197
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {repeats}; "
          "ratio = time / float32 matmul")
    print(f"{'shape':<28} {'config':<16} {'tier':<9} {'ms':>8} {'ratio':>7} {'target':>7}")
    failed = []
    for label, (m, k, n) in SHAPES.items():
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(m, k, generator=g), torch.randn(k, n, generator=g) * 0.05
        fns: dict[str, Callable[[], object]] = {"float32": lambda a=a, b=b: torch.matmul(a, b)}
        for preset, tier, _ in RUNS:
            config = AcceleratorConfig.preset(preset)     # loaded once, as a model run holds it
            fns[f"{preset}/{tier}"] = lambda a=a, b=b, c=config, t=tier: emulated_matmul(a, b, c, tier=t)
        times = median_times(fns, warmup, repeats)
        base = times["float32"]
        shape = f"{label} {m}x{k} @ {k}x{n}"
        print(f"{shape:<28} {'float32':<16} {'native':<9} {base * 1e3:8.2f} {1.0:7.2f} {'':>7}")
        for preset, tier, target in RUNS:
            t = times[f"{preset}/{tier}"]
            name = tier or matmul_tier(preset, k=k).name
            verdict = "" if target is None else (f"<={target:g}" + ("" if t / base <= target else " MISS"))
            if target is not None and t / base > target:
                failed.append(f"{label} {preset}")
            print(f"{shape:<28} {preset:<16} {name:<9} {t * 1e3:8.2f} {t / base:7.2f} {verdict:>7}")
        # faithful: every product materialised; timed on fewer rows and scaled to all of them
        sub = a[:faithful_rows]
        times = median_times({"float32": lambda sub=sub, b=b: torch.matmul(sub, b),
                              "faithful": lambda sub=sub, b=b: emulated_matmul(sub, b, "int8-lot4-psum",
                                                                               tier="faithful")},
                             1, max(1, repeats // 3))
        print(f"{label + f' {faithful_rows}x{k} @ {k}x{n}':<28} {'int8-lot4-psum':<16} {'faithful':<9} "
              f"{times['faithful'] * 1e3:8.2f} {times['faithful'] / times['float32']:7.1f}")
    print("all targets met" if not failed else f"targets missed: {failed}")


if __name__ == "__main__":
    main()
