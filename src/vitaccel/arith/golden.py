"""The scalar golden model: every datapath of DESIGN.md, one number or one dot product at a time.

Pure Python integers and ``fractions.Fraction``; slow on purpose and written to be obviously
correct. Every fast path in ``vitaccel.arith`` is tested for bit-exact equality against it.
Values are exact ``Fraction``s while finite; infinities and NaN are Python floats, and signed
zero is carried as ``-0.0`` where a result can be negative zero.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Sequence

import torch

from vitaccel.arith.config import AcceleratorConfig
from vitaccel.arith.formats import FloatFormat

Number = Fraction | float

# float32 as (mantissa bits, min normal exponent, max exponent) for rounding Fractions
F32 = (23, -126, 127)


def exponent(v: Fraction) -> int:
    """floor(log2(|v|)) for v != 0, by exact comparisons (no float log2)."""
    v = abs(v)
    e = v.numerator.bit_length() - v.denominator.bit_length()
    if Fraction(2) ** e > v:
        e -= 1
    return e


def round_real(v: Fraction, man_bits: int, emin: int, max_value: Fraction, rounding: str = "nearest_even",
               u: Fraction | None = None, overflow: str = "inf") -> Number:
    """Round the real ``v`` to a binary float with ``man_bits`` fraction bits and min normal 2^emin.

    ``u`` in [0, 1) is the stochastic rounding draw: round up iff (fraction lost) + u >= 1.
    Overflow beyond ``max_value`` gives +-inf (``overflow="inf"``), +-max (``"saturate"``) or
    NaN (``"nan"``). A zero result keeps the sign of ``v`` (returned as -0.0 for negative v).
    """
    if v == 0:
        return Fraction(0)
    sign = -1 if v < 0 else 1
    a = abs(v)
    q = max(exponent(a), emin) - man_bits          # exponent of the quantum at |v|
    n = a / Fraction(2) ** q
    kept = math.floor(n)
    frac = n - kept
    if rounding == "nearest_even":
        up = frac > Fraction(1, 2) or (frac == Fraction(1, 2) and kept % 2 == 1)
    elif rounding == "toward_zero":
        up = False
    elif rounding == "stochastic":
        up = frac + u >= 1
    else:
        raise ValueError(f"rounding={rounding!r} is unknown")
    r = (kept + up) * Fraction(2) ** q
    if r > max_value:
        if overflow == "saturate" or rounding == "toward_zero":
            r = max_value
        elif overflow == "nan":
            return math.nan
        else:
            return sign * math.inf
    if r == 0:
        return -0.0 if sign < 0 else Fraction(0)
    return sign * r


# -- floating-point formats ---------------------------------------------------------------
def decode(fmt: FloatFormat, code: int) -> Number:
    """The value of one code, straight from the definition in DESIGN.md section 2."""
    m, e_bits = fmt.man_bits, fmt.exp_bits
    code &= 2 ** fmt.bits - 1
    s = code >> (e_bits + m)
    e_field = (code >> m) & (2 ** e_bits - 1)
    man = code & (2 ** m - 1)
    sign = -1 if s else 1
    if fmt.specials == "ieee" and e_field == 2 ** e_bits - 1:
        return math.nan if man else sign * math.inf
    if fmt.specials == "fn" and e_field == 2 ** e_bits - 1 and man == 2 ** m - 1:
        return math.nan
    if e_field == 0:
        value = Fraction(man, 2 ** m) * Fraction(2) ** (1 - fmt.bias) if fmt.subnormals else Fraction(0)
    else:
        value = (1 + Fraction(man, 2 ** m)) * Fraction(2) ** (e_field - fmt.bias)
    if value == 0:
        return -0.0 if s else Fraction(0)
    return sign * value


@functools.lru_cache(maxsize=None)
def format_max(fmt: FloatFormat) -> Fraction:
    """Largest finite value, by scanning the top of the code space."""
    return max(v for c in range(2 ** (fmt.bits - 1)) if isinstance(v := decode(fmt, c), Fraction))


def quantize(fmt: FloatFormat, x: float, rounding: str = "nearest_even", u: Fraction | None = None) -> Number:
    """One float (exact value of a float32/float64) rounded to ``fmt``, semantics of DESIGN.md 2."""
    if math.isnan(x):
        if fmt.specials == "finite":
            if fmt.nan == "raise":
                raise ValueError("NaN cannot be stored in a finite format")
            return Fraction(0)
        return math.nan
    top = format_max(fmt)
    if math.isinf(x):
        if fmt.specials == "ieee":
            return x
        return top if x > 0 else -top
    if x == 0:
        return -0.0 if math.copysign(1.0, x) < 0 else Fraction(0)
    overflow = "saturate" if (fmt.saturate or fmt.specials != "ieee") else "inf"
    r = round_real(Fraction(x), fmt.man_bits, fmt.emin, top, rounding, u, overflow)
    if not fmt.subnormals and isinstance(r, Fraction) and 0 < abs(r) < Fraction(2) ** fmt.emin:
        r = -0.0 if r < 0 else Fraction(0)
    return r


def to_float(v: Number) -> float:
    """Exact Python float of a golden value (all golden values are float64-representable)."""
    return v if isinstance(v, float) else float(v)


# -- float datapath (DESIGN.md section 3) ---------------------------------------------------
def fp_mul(a: Number, b: Number) -> Number:
    """Exact product with IEEE special-value rules (the multiplier never rounds)."""
    if isinstance(a, float) or isinstance(b, float):
        return float(a) * float(b)  # inf/nan/-0 rules of IEEE; exact whenever finite here
    return a * b


def _special_sum(values: Sequence[Number]) -> float | None:
    """IEEE result of summing values that include inf or NaN; None when all are finite."""
    specials = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
    if not specials:
        return None
    return math.fsum(specials) if not any(math.isnan(v) for v in specials) and \
        not (math.inf in specials and -math.inf in specials) else math.nan


def align(products: Sequence[Fraction], align_bits: int | None, rounding: str) -> list[Fraction]:
    """Align every product of one adder-tree group to the group's largest exponent."""
    if align_bits is None:
        return list(products)
    nonzero = [p for p in products if p != 0]
    if not nonzero:
        return [Fraction(0)] * len(products)
    quantum = Fraction(2) ** (max(exponent(p) for p in nonzero) - align_bits)
    out = []
    for p in products:
        n = p / quantum
        k = math.trunc(n)
        if rounding == "nearest_even":
            frac = abs(n - k)
            if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and k % 2):
                k += 1 if n > 0 else -1
        out.append(k * quantum)
    return out


def f32_add(acc: Number, x: Number) -> Number:
    """One float32 accumulator add, correctly rounded (IEEE rules for specials)."""
    if isinstance(acc, float) or isinstance(x, float):
        if not (math.isfinite(float(acc)) and math.isfinite(float(x))):
            return float(acc) + float(x)
        acc, x = Fraction(acc), Fraction(x)
    return round_real(acc + x, *F32[:2], F32_MAX)


F32_MAX = (2 - Fraction(1, 2 ** 23)) * Fraction(2) ** 127


def dot_float(a: Sequence[float], b: Sequence[float], config: AcceleratorConfig) -> float:
    """One output of the float datapath: quantise, multiply exactly, adder tree, accumulate."""
    fp = config.float_datapath
    fa, fb = FloatFormat.named(fp.a_format), FloatFormat.named(fp.b_format)
    qa = [quantize(fa, x, fp.operand_rounding) for x in a]
    qb = [quantize(fb, x, fp.operand_rounding) for x in b]
    products = [fp_mul(x, y) for x, y in zip(qa, qb)]
    acc: Number = Fraction(0)
    for start in range(0, len(products), fp.group_size):
        group = products[start:start + fp.group_size]
        special = _special_sum(group)
        if special is not None:
            group_sum: Number = special
        else:
            exact = [Fraction(p) for p in group]  # -0.0 products are zeros here
            group_sum = round_real(sum(align(exact, fp.align_bits, fp.align_rounding), Fraction(0)),
                                   *F32[:2], F32_MAX)
        acc = f32_add(acc, group_sum)
    return to_float(acc)


def matmul(a: torch.Tensor, b: torch.Tensor, config: "AcceleratorConfig | str") -> torch.Tensor:
    """The golden model of ``emulated_matmul``: a (..., M, K) @ b (K, N), one dot product at a time."""
    config = AcceleratorConfig.load(config)
    if config.datapath != "float":
        raise ValueError(f"golden.matmul: datapath {config.datapath!r} has no golden model here; "
                         "the native datapath is the host's float32 matmul")
    lead = a.shape[:-2]
    a3 = a.reshape(-1, a.shape[-2], a.shape[-1]).double().tolist()
    bt = b.double().t().tolist()
    out = [[[dot_float(row, col, config) for col in bt] for row in mat] for mat in a3]
    return torch.tensor(out, dtype=torch.float32).reshape(*lead, a.shape[-2], b.shape[-1])
