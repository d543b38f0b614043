"""Every named format x every rounding on 10^6 values each, against the scalar golden model.

The unit tests check each format and rounding against ``arith/golden.py`` on crafted values and
5,000 random ones (10^5 under ``-m slow``); the golden model costs about 35 µs a value, so the
10^6-value check the formats are held to lives here, spread over worker processes:

    python benchmarks/golden_million.py                       # the formats added in issue 20, 10^6 values
    python benchmarks/golden_million.py --formats e4m3 bf16 --n 100000 --workers 2

For each format the values are a third random float32 bit patterns (every binade, NaN and inf among
them), a third log-uniform over the format's own binades and just past its largest value, and a
third at and one float32 ulp beside the midpoint between neighbouring codes (the ties), plus the
specials (+-0, +-inf, NaN, +-max, +-min_subnormal); float64 values for ``fp32``, whose rounding of a
float32 is the identity. The MX formats (nearest_even and toward_zero, the element roundings they
take) get rows of three blocks of 32 and a ragged fourth, each block's magnitude drawn over
float32's whole range, with zero blocks and NaN/inf blocks, against ``golden.mx_quantize``.
Stochastic rounding is checked with the draws the library makes for the same generator
(``formats.stochastic_draws``), replayed into golden's ``u``. Prints one row per format and rounding (values
checked, mismatches, seconds) and exits 1 on any mismatch.
``--cache DIR`` keeps golden's results for the deterministic roundings, so a rerun after a change
to the library costs only the library's own rounding (and golden's stochastic rounding).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import torch

from vitaccel.arith import FloatFormat, golden
from vitaccel.arith.formats import ROUNDINGS, stochastic_draws
from vitaccel.arith.mx import MX_NAMES, MXFormat

NEW = (["e8m0", "ue4m3", "tf32", "fp24", "fp32", "e4m3fnuz", "e5m2fnuz"] + [f"binary8p{p}" for p in range(1, 8)]
       + list(MX_NAMES))
MX_ROUNDINGS = ("nearest_even", "toward_zero")
STOCHASTIC_BITS = 8  # the stochastic check uses hardware-style draws of this many bits


def values(fmt: FloatFormat, n: int, seed: int = 0) -> torch.Tensor:
    """n test inputs for ``fmt`` (float32; float64 for formats that hold every float32)."""
    g = torch.Generator().manual_seed(seed)
    third = n // 3
    patterns = torch.randint(-2 ** 31, 2 ** 31, (third,), generator=g, dtype=torch.int64).to(torch.int32)
    top = math.floor(math.log2(fmt.max)) + 2
    exps = torch.randint(fmt.emin - fmt.man_bits - 3, top, (third,), generator=g).double()
    binades = (1 + torch.rand(third, generator=g, dtype=torch.float64)) * torch.exp2(exps)
    binades = torch.where(torch.rand(third, generator=g) < 0.5, -binades, binades)
    codes = torch.randint(0, fmt.max_code, (n - 2 * third,), generator=g)
    lo, hi = fmt.decode(codes).double(), fmt.decode(codes + 1).double()
    mid = ((lo + hi) / 2).float()
    step = torch.randint(-1, 2, mid.shape, generator=g).to(torch.int32)  # the tie and one float32 ulp beside
    ties = (mid.view(torch.int32) + step).view(torch.float32).double()
    ties = torch.where(torch.rand(len(ties), generator=g) < 0.5, -ties, ties)
    specials = torch.tensor([0.0, -0.0, math.inf, -math.inf, math.nan, fmt.max, -fmt.max,
                             fmt.min_subnormal, -fmt.min_subnormal], dtype=torch.float64)
    x = torch.cat([patterns.view(torch.float32).double(), binades, ties, specials])
    if fmt.bits < 32:
        x = x.float()
    if not fmt.signed:
        x = x.abs()  # negative values are NaN or an error by design (tests/test_format_wide.py)
    if fmt.specials == "finite":
        x = x[~torch.isnan(x)]
    return x


def mx_values(n: int, seed: int = 0) -> torch.Tensor:
    """About n inputs for an MX format, as rows of ``ROW`` values (three blocks of 32 and a ragged
    fourth): each block's magnitude drawn over float32's range, one block in 50 all zeros, one
    value in 2000 NaN or +-inf (a NaN-scale block), subnormals and exact powers of two among them."""
    g = torch.Generator().manual_seed(seed)
    rows = -(-n // ROW)
    x = torch.randn(rows, ROW, generator=g, dtype=torch.float64)
    scale = torch.exp2(torch.randint(-150, 127, (rows, 4), generator=g).double())
    x = (x * scale.repeat_interleave(32, dim=1)[:, :ROW]).float()
    powers = torch.rand(rows, ROW, generator=g) < 0.02
    x = torch.where(powers, torch.exp2(torch.randint(-149, 128, (rows, ROW), generator=g).float()), x)
    zero = (torch.rand(rows, 4, generator=g) < 0.02).repeat_interleave(32, dim=1)[:, :ROW]
    x = torch.where(zero, 0.0, x)
    pick = torch.rand(rows, ROW, generator=g)
    x = torch.where(pick < 1 / 6000, torch.nan, torch.where(pick < 2 / 6000, torch.inf,
                                                            torch.where(pick < 3 / 6000, -torch.inf, x)))
    return x


ROW = 100  # MX rows: blocks of 32 from index 0, the last one ragged (4 values)


def _bits(values) -> list[int]:
    """Float32 bit patterns of golden's results (NaN: -1)."""
    out = []
    for r in values:
        f = golden.to_float(r)
        out.append(-1 if math.isnan(f) else torch.tensor(f, dtype=torch.float32).view(torch.int32).item())
    return out


def _golden_bits(job: tuple[str, str, list, list[int] | None]) -> list[int]:
    """Golden's results for one piece (values, or MX rows), as float32 bit patterns."""
    name, rounding, xs, draws = job
    if name in MX_NAMES:
        fmt = MXFormat.named(name)
        return [b for row in xs for b in _bits(golden.mx_quantize(fmt, row, rounding))]
    fmt = FloatFormat.named(name)
    if draws is None:
        return _bits(golden.quantize(fmt, v, rounding) for v in xs)
    return _bits(golden.quantize(fmt, v, rounding, Fraction(r, 2 ** STOCHASTIC_BITS), stochastic_bits=STOCHASTIC_BITS)
                 for v, r in zip(xs, draws))


def check(name: str, rounding: str, n: int, pool: ProcessPoolExecutor, pieces: int,
          cache: Path | None) -> tuple[int, int, float]:
    """(values, mismatches, seconds) of ``name`` x ``rounding`` against golden (whose results for a
    deterministic rounding are kept in ``cache``, as they depend only on the format and the values)."""
    start = time.perf_counter()
    draws = None
    if name in MX_NAMES:
        x = mx_values(n)
        got = MXFormat.named(name).quantize(x, axis=-1, rounding=rounding)
    elif rounding == "stochastic":
        fmt = FloatFormat.named(name)
        x = values(fmt, n)
        got = fmt.quantize(x, rounding, torch.Generator().manual_seed(1), stochastic_bits=STOCHASTIC_BITS)
        draws = stochastic_draws(x.numel(), torch.Generator().manual_seed(1), STOCHASTIC_BITS).tolist()
    else:
        fmt = FloatFormat.named(name)
        x = values(fmt, n)
        got = fmt.quantize(x, rounding)
    ours = got.reshape(-1).view(torch.int32).tolist()
    ours = [-1 if math.isnan(o) else b for o, b in zip(got.reshape(-1).tolist(), ours)]
    kept = None if cache is None or draws is not None else cache / f"{name}-{rounding}-{n}.pt"
    if kept is not None and kept.exists():
        expected = torch.load(kept).tolist()
    else:
        xs = x.tolist()  # values, or MX rows
        size = -(-len(xs) // pieces)
        jobs = [(name, rounding, xs[i:i + size], None if draws is None else draws[i:i + size])
                for i in range(0, len(xs), size)]
        expected = [b for part in pool.map(_golden_bits, jobs) for b in part]
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            torch.save(torch.tensor(expected, dtype=torch.int64), kept)
    bad = sum(o != e for o, e in zip(ours, expected))
    return len(ours), bad, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", nargs="+", default=NEW, help=f"format names (default: {' '.join(NEW)})")
    parser.add_argument("--roundings", nargs="+", default=list(ROUNDINGS), choices=ROUNDINGS,
                        help="MX formats take only nearest_even and toward_zero (the others are skipped)")
    parser.add_argument("--n", type=int, default=10 ** 6, help="values per format and rounding")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep golden's deterministic results here and reuse them (they depend only on the values)")
    args = parser.parse_args()
    failed = False
    print("| format | rounding | values | mismatches | seconds |\n|---|---|---|---|---|", flush=True)
    with ProcessPoolExecutor(args.workers) as pool:
        for name in args.formats:
            for rounding in args.roundings:
                if name in MX_NAMES and rounding not in MX_ROUNDINGS:
                    continue
                total, bad, seconds = check(name, rounding, args.n, pool, pieces=8 * args.workers, cache=args.cache)
                failed |= bad > 0
                print(f"| {name} | {rounding} | {total} | {bad} | {seconds:.0f} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
