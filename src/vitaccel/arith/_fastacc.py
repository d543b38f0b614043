"""The CPU speed route of an accumulator narrower than float32 (``float_datapath.accumulator`` fp16,
bf16, tf32, fp24): three vectorised loops per group instead of ``floatpath``'s dozen tensor passes.

``add_group(acc, sums, fmt)`` does in place, element by element, what the float tiers' accumulator
loop does with tensors (``floatpath.accumulate(acc, floatpath.round_to(fmt, sums), fmt)``), with
the same steps and so the same bits:

1. the group sum (float64: exact, or a float32 rounded toward odd) rounded to float32 toward odd,
   then to ``fmt`` (nearest even): at least two more bits than ``fmt`` keeps, so the one correct
   rounding of the exact sum;
2. ``acc + that`` by TwoSum in float64 (s and its exact error), s moved toward odd where inexact,
   then to float32 toward odd, then to ``fmt``: the correctly rounded exact sum. Infinities and NaN
   take the IEEE sum (inf - inf: NaN).

Rounding a float32 x to ``fmt`` (an IEEE format with subnormals and infinities, at most 21 fraction
bits; the accumulators ``config.is_accumulator`` allows): at |x| >= min_normal an integer rounding
of x's bit pattern at bit ``23 - m`` (a carry lands in the exponent), infinity above max; below
min_normal ``rint(x / q0) * q0`` on fmt's subnormal grid q0 (both scalings exact).
Imports of vitaccel only ``_bitcast`` and the ``FormatLike`` protocol (``fmt`` brings its own fields).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from vitaccel.arith._bitcast import bits_f32, bits_f64, f32_bits, f64_bits
from vitaccel.arith._formatlike import FormatLike


@numba.njit(cache=True, nogil=True)
def _odd32(x: float) -> np.float32:
    """float64 ``x`` rounded to float32 toward odd: the truncation (one float32 ulp toward zero from
    the nearest where that lies beyond x; a pattern's magnitude is monotone) with the last bit set
    where inexact; beyond float32's range +-max (odd). Branch-free."""
    f = np.float32(x)
    back = np.float64(f)
    inexact = back != x
    b = f32_bits(f) - np.int32(inexact & (abs(back) > abs(x)))
    return bits_f32(np.int32(b | np.int32(inexact)))


@numba.njit(cache=True, nogil=True)
def _round(x: np.float32, drop: int, min_normal: float, top: float, q0: float) -> float:
    """Float32 ``x`` rounded to the format, nearest even (as float64). Branch-free."""
    b = f32_bits(x)
    b = (b + np.int32((1 << (drop - 1)) - 1) + ((b >> drop) & 1)) & np.int32(~((1 << drop) - 1))
    r = np.float64(bits_f32(np.int32(b)))
    r = np.copysign(np.inf, r) if abs(r) > top else r
    r = r if abs(x) >= min_normal else np.rint(np.float64(x) * (1.0 / q0)) * q0
    return r if x == x else np.float64(x)


# Three loops, each simple enough for LLVM to vectorise (one loop doing all three is not
# vectorised and runs three times slower).
@numba.njit(cache=True, nogil=True)
def _round_sums(sums: np.ndarray, q: np.ndarray, drop: int, min_normal: float, top: float, q0: float) -> None:
    for i in range(sums.size):  # the group sum, rounded to the format
        q[i] = _round(_odd32(sums[i]), drop, min_normal, top, q0)


@numba.njit(cache=True, nogil=True)
def _add_odd(acc: np.ndarray, q: np.ndarray, odd: np.ndarray) -> None:
    for i in range(acc.size):  # acc + q by TwoSum, toward odd, then to float32 toward odd
        a = np.float64(acc[i])
        s = a + q[i]
        bb = s - a
        err = (a - (s - bb)) + (q[i] - bb)  # inf or NaN: err is NaN, s the IEEE sum, kept
        inexact = (err != 0.0) & (err == err)
        # truncated (one ulp below where |exact| < |s|), the last bit set where inexact
        sb = f64_bits(s) - np.int64(inexact & ((err < 0.0) != (s < 0.0)))
        odd[i] = _odd32(bits_f64(sb | np.int64(inexact)))


@numba.njit(cache=True, nogil=True)
def _round_into(acc: np.ndarray, odd: np.ndarray, drop: int, min_normal: float, top: float, q0: float) -> None:
    for i in range(acc.size):  # then to the format
        acc[i] = np.float32(_round(odd[i], drop, min_normal, top, q0))


def add_group(acc: torch.Tensor, sums: torch.Tensor, fmt: FormatLike) -> None:
    """``acc`` (contiguous float32 CPU, values of the accumulator format ``fmt``) += ``sums``
    (float64, same shape), each add rounded as the module doc says, in place."""
    a, s = acc.view(-1).numpy(), sums.contiguous().view(-1).numpy()
    q, odd = np.empty(a.size, np.float64), np.empty(a.size, np.float32)
    drop, q0 = 23 - fmt.man_bits, fmt.min_subnormal
    _round_sums(s, q, drop, fmt.min_normal, fmt.max, q0)
    _add_odd(a, q, odd)
    _round_into(a, odd, drop, fmt.min_normal, fmt.max, q0)
