"""The float datapath of DESIGN.md section 3, vectorised: multiplier, adder tree, accumulator.

Every function here is exact (bit-identical to ``golden``) for the inputs it accepts; the
matmul tiers in ``float_tiers.py`` are built from them.

Exactness rests on three facts, each tested:
* a product of two formats of at most 16 bits is exact in float64 (at most 22 significand bits,
  exponents far inside float64's range);
* a float64 sum of values that are all multiples of 2^Q and stay below 2^(Q+53) is exact;
* rounding an exact value to float64 *toward odd* and then to float32 is correctly rounded
  (53 >= 24 + 2), which turns an exact two-limb sum into a correctly rounded float32; rounding it
  to float32 toward odd as well and then to a format of at most 22 significand bits (an
  accumulator narrower than float32) is correctly rounded for the same reason (24 >= 22 + 2).
"""

from __future__ import annotations

import math

import torch

from vitaccel.arith.bits import exponent, pow2
from vitaccel.arith.formats import FloatFormat

__all__ = ["ExactSum", "WideSum", "accumulate", "exponent", "multiply", "multiply_significands", "pow2",
           "round_pair_to_float32", "round_to", "split_codes", "to_odd_float32"]


# -- the multiplier -----------------------------------------------------------------------
def multiply_significands(sa: torch.Tensor, sb: torch.Tensor, nibbles: bool = False) -> torch.Tensor:
    """Unsigned integer significand product, directly or as two 4-bit nibbles of ``sa``.

    ``((hi * sb) << 4) + lo * sb`` is how a multiplier built from 4-bit slices forms the 8x8-bit
    product; both forms give the same 16-bit result (tested on every pair).
    """
    sa, sb = sa.long(), sb.long()
    if not nibbles:
        return sa * sb
    return ((sa >> 4) * sb << 4) + (sa & 15) * sb


def split_codes(fmt: FloatFormat, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sign, significand with hidden one, exponent of its LSB) of finite codes."""
    codes = codes.long() & (2 ** fmt.bits - 1)
    m = fmt.man_bits
    sign = codes >> (fmt.exp_bits + m)
    e_field = (codes >> m) & (2 ** fmt.exp_bits - 1)
    man = codes & (2 ** m - 1)
    sig = torch.where(e_field > 0, man | (1 << m), man if fmt.subnormals else 0)
    lsb_exp = torch.clamp(e_field, min=1) - fmt.bias - m
    return sign, sig, lsb_exp


def multiply(fmt_a: FloatFormat, a_codes: torch.Tensor, fmt_b: FloatFormat, b_codes: torch.Tensor,
             nibbles: bool = False) -> torch.Tensor:
    """Exact float64 products of finite codes, formed as the hardware does.

    sign = XOR of signs, exponent = sum of exponents, significand = integer product.
    """
    sa, ma, ea = split_codes(fmt_a, a_codes)
    sb, mb, eb = split_codes(fmt_b, b_codes)
    sig = multiply_significands(ma, mb, nibbles).double()
    value = sig * pow2(ea + eb)
    return torch.where((sa ^ sb) == 1, -value, value)


# -- exact sums to float32 -------------------------------------------------------------------
def round_pair_to_float32(hi: torch.Tensor, lo: torch.Tensor, odd: bool = False) -> torch.Tensor:
    """float32 nearest-even of the exact value ``hi + lo`` (float64 tensors, finite), or with
    ``odd=True`` float32 rounded toward odd (for a second, correct rounding to a narrower format).

    TwoSum gives s = fl(hi + lo) and the exact error; rounding s toward odd (when inexact)
    before the float32 conversion avoids double rounding.
    """
    s = hi + lo
    bb = s - hi
    err = (hi - (s - bb)) + (lo - bb)
    inexact = err != 0
    toward_zero = inexact & ((err < 0) != (s < 0))     # |exact| < |s|: truncation is one ulp below
    bits = s.view(torch.int64) - toward_zero.long()
    bits = bits | inexact.long()
    s = bits.view(torch.float64)
    return to_odd_float32(s) if odd else s.float()


def to_odd_float32(x: torch.Tensor) -> torch.Tensor:
    """float64 ``x`` rounded to float32 toward odd: truncated, the last bit set when inexact
    (beyond float32's range: +-max, odd, so that a narrower format then overflows as it should)."""
    f = x.float()
    back = f.double()
    inexact = (back != x) & ~torch.isnan(x)
    f = torch.where(inexact & (back.abs() > x.abs()), torch.nextafter(f, torch.zeros_like(f)), f)
    return (f.view(torch.int32) | inexact.int()).view(torch.float32)


def round_to(fmt: FloatFormat, x: torch.Tensor) -> torch.Tensor:
    """Exact float64 values, or float32 values rounded toward odd, rounded (nearest even) to a
    format of at most 22 significand bits, as float32: through float32 toward odd, then for formats
    with float32's exponent range (bfloat16, tf32, fp24) by rounding the float32 bits, else by
    ``fmt.quantize`` (half: one cast)."""
    x = to_odd_float32(x) if x.dtype == torch.float64 else x
    if (fmt.exp_bits, fmt.bias, fmt.specials, fmt.subnormals, fmt.saturate) != (8, 127, "ieee", True, False):
        return fmt.quantize(x)
    # float32's grid at 23 - m fewer bits, subnormals included; a carry out of the mantissa moves
    # the exponent (max + half an ulp and beyond: infinity); no carry reaches the sign bit
    drop = 23 - fmt.man_bits
    bits = x.view(torch.int32)
    up = (1 << (drop - 1)) - 1 + ((bits >> drop) & 1)
    rounded = ((bits + up) & ~((1 << drop) - 1)).view(torch.float32)
    return torch.where(torch.isnan(x), x, rounded)


def accumulate(acc: torch.Tensor, x: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """``acc + x`` correctly rounded to the accumulator format ``fmt`` (nearest even, IEEE
    specials), for float32 tensors holding values of fmt: the native add for float32 itself, else
    TwoSum in float64, rounded to float32 toward odd, then to fmt."""
    if fmt.man_bits == 23:
        return acc + x
    hi, lo = acc.double(), x.double()
    total = hi + lo
    finite = torch.isfinite(total)
    odd = round_pair_to_float32(torch.where(finite, hi, 0.0), torch.where(finite, lo, 0.0), odd=True)
    return round_to(fmt, torch.where(finite, odd, total.float()))


class ExactSum:
    """Accumulates float64 terms that are exact multiples of 2^q_min into two exact limbs.

    Each term is split at 2^split into a high part (multiple of 2^split) and a low part
    (in [0, 2^split)); both limb sums stay exact as long as the caller's bounds hold
    (checked by ``fits``). ``result()`` is the correctly rounded float32 of the exact total.
    """

    def __init__(self, q_min: int, p_max: int, terms: int) -> None:
        self.extra = math.ceil(math.log2(terms + 1))
        self.split = q_min + 52 - self.extra
        self.single = p_max + self.extra - q_min <= 52
        self.hi: torch.Tensor | float = 0.0
        self.lo: torch.Tensor | float = 0.0

    @staticmethod
    def fits(q_min: int, p_max: int, terms: int) -> bool:
        """True when every term below 2^p_max and a multiple of 2^q_min sums exactly in two limbs."""
        extra = math.ceil(math.log2(terms + 1))
        return p_max + extra - (q_min + 52 - extra) <= 52

    def add(self, term: torch.Tensor) -> None:
        if self.single:
            self.hi = self.hi + term
            return
        scale = 2.0 ** self.split
        high = torch.floor(term / scale) * scale
        self.hi = self.hi + high
        self.lo = self.lo + (term - high)

    def result(self, odd: bool = False) -> torch.Tensor:
        """The total as float32: nearest even, or toward odd (``odd=True``); exact when it fits."""
        if self.single:
            return to_odd_float32(self.hi) if odd else self.hi.float()
        return round_pair_to_float32(self.hi, self.lo, odd)


class WideSum:
    """Accumulates float64 terms exactly however far apart their magnitudes lie, in int64 limbs.

    The exact total is held as ``sum_j limb_j * 2^(q_min + j W)``: each term, an exact multiple of
    2^q with |term| < 2^p (the caller's bounds, ``q >= q_min``, ``p <= p_max``), is cut into W-bit
    digits (exact float64 floors and differences) added to the limbs it covers; W leaves room for
    ``terms`` additions in int64. ``result()`` is the correctly rounded float32 of the total: after
    carries, the two highest non-zero digits and a sticky half for anything below them are
    rounded once (``round_pair_to_float32``); those digits hold at least W > 26 bits above the
    sticky one, so the substitution moves no rounding boundary, subnormal results included.
    """

    def __init__(self, q_min: int, p_max: int, terms: int) -> None:
        extra = math.ceil(math.log2(terms + 1))
        self.width = min(48, 62 - extra)
        self.q_min = q_min
        self.limbs = -(-(p_max + extra - q_min) // self.width) + 1
        self.acc: torch.Tensor | None = None

    def add(self, term: torch.Tensor, q: int, p: int) -> None:
        """Add float64 ``term``, every entry a multiple of 2^q below 2^p in magnitude."""
        w = self.width
        first, last = (q - self.q_min) // w, min((p - self.q_min) // w, self.limbs - 1)
        if self.acc is None:
            self.acc = torch.zeros((self.limbs, *term.shape), dtype=torch.int64, device=term.device)
        m = term.abs() * 2.0 ** -(self.q_min + first * w)            # an exact integer
        neg = term < 0
        for j in range(first, last + 1):
            high = torch.floor(m * 2.0 ** -w)
            digit = (m - high * 2.0 ** w).long()                      # exact: an integer below 2^w
            self.acc[j] += torch.where(neg, -digit, digit)
            m = high

    def result(self, odd: bool = False) -> torch.Tensor:
        """The total as float32: nearest even, or toward odd (``odd=True``)."""
        w = self.width
        if self.acc is None:
            raise ValueError("WideSum.result: no term was added")
        digits = self.acc.clone()
        self._carry(digits)
        negative = digits[-1] < 0
        digits = torch.where(negative, -digits, digits)
        self._carry(digits)                                           # every digit in [0, 2^w) now
        top = torch.zeros(digits.shape[1:], dtype=torch.int64, device=digits.device)
        for j in range(1, self.limbs):                               # the highest non-zero digit
            top = torch.where(digits[j] != 0, j, top)
        hi = digits.gather(0, top.unsqueeze(0))[0]
        lo = torch.where(top > 0, digits.gather(0, (top - 1).clamp(min=0).unsqueeze(0))[0], 0)
        sticky = torch.zeros_like(top, dtype=torch.bool)
        for j in range(self.limbs - 2):                              # anything below those two
            sticky |= (digits[j] != 0) & (top >= j + 2)
        scale = pow2(self.q_min + (top - 1) * w)
        hi64 = hi.double() * 2.0 ** w * scale
        lo64 = (lo.double() + 0.5 * sticky.double()) * scale
        sign = torch.where(negative, -1.0, 1.0).double()
        return round_pair_to_float32(hi64 * sign, lo64 * sign, odd)

    def _carry(self, digits: torch.Tensor) -> None:
        """In place: every limb but the top one brought into [0, 2^w), the carries moved up."""
        for j in range(self.limbs - 1):
            carry = digits[j] >> self.width
            digits[j] -= carry << self.width
            digits[j + 1] += carry
