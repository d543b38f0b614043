"""Float accumulator arithmetic of the float datapath, for any accumulator format (float32 by
default; ``float_datapath.accumulator``): rounding an exact fixed-point sum to the format (nearest
even, subnormals, overflow to inf) and the accumulator add (golden ``round_to``, ``acc_add``)."""

from __future__ import annotations

import math

import torch
from amaranth import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.formats import FloatFormat
from vitaccel.hw.common import absolute, clog2, leading_one, shift_right_sticky

FP32 = FloatFormat.named("fp32")


def check_accumulator(fmt: FloatFormat) -> None:
    """The circuits build IEEE-style accumulators (signed, infinities, NaN, subnormals)."""
    if not (fmt.signed and fmt.specials == "ieee" and fmt.subnormals and fmt.man_bits >= 1):
        raise ValueError(f"accumulator format {fmt.name}: the accumulator circuits need a signed IEEE-style "
                         "format with subnormals")


def value_bits(fmt: FloatFormat, v: float) -> int:
    """The accumulator's bit pattern of a golden value (exact in ``fmt``); NaN as the canonical
    quiet NaN ``fmt.nan_code``."""
    if math.isnan(v):
        return fmt.nan_code
    return int(fmt.encode(torch.tensor([v], dtype=torch.float64))[0]) & (2 ** fmt.bits - 1)


def bits_value(fmt: FloatFormat, bits: int) -> float:
    """The value of an accumulator bit pattern."""
    return float(fmt.decode(torch.tensor([bits & (2 ** fmt.bits - 1)]))[0])


def round_to_format(m: Module, total: Value, exp: Value, name: str, fmt: FloatFormat = FP32) -> Signal:
    """``fmt`` bits of ``total * 2^exp`` (``total`` signed, ``exp`` signed), nearest even; +0 for 0."""
    w, mb = len(total), fmt.man_bits
    qmin = fmt.emin - mb                             # the subnormal quantum's exponent
    neg, mag = Signal(name=f"{name}_neg"), Signal(w, name=f"{name}_mag")
    m.d.comb += [neg.eq(total < 0), mag.eq(absolute(total))]
    pos = leading_one(m, mag, f"{name}_lead")
    ew = max(len(exp), clog2(w)) + 3
    e, q, sh = (Signal(signed(ew), name=f"{name}_{n}") for n in ("e", "q", "sh"))
    m.d.comb += [e.eq(pos + exp), q.eq(Mux(e < fmt.emin, qmin, e - mb)), sh.eq(q - exp)]
    amount = Signal(range(w + 2), name=f"{name}_amount")
    m.d.comb += amount.eq(Mux(sh < 0, 0, Mux(sh > w + 1, w + 1, sh)))
    y, sticky = shift_right_sticky(m, Cat(Const(0, 1), mag), amount, f"{name}_rsh")
    kept = Signal(mb + 2, name=f"{name}_kept")
    with m.If(sh < 0):                               # exact: the value has at most mb + 1 significant bits
        m.d.comb += kept.eq(mag << (-sh)[:clog2(mb + 2)])
    with m.Else():
        m.d.comb += kept.eq(y[1:] + (y[0] & (sticky | y[1])))
    packed = Signal(ew + mb + 2, name=f"{name}_packed")
    m.d.comb += packed.eq(((q - qmin) << mb) + kept)
    out = Signal(fmt.bits, name=f"{name}_bits")
    with m.If(mag == 0):
        m.d.comb += out.eq(0)
    with m.Elif(packed >= fmt.inf_code):
        m.d.comb += out.eq(Cat(Const(fmt.inf_code, fmt.bits - 1), neg))
    with m.Else():
        m.d.comb += out.eq(Cat(packed[:fmt.bits - 1], neg))
    return out


WINDOW = 27          # bits kept below the larger operand's LSB; lower bits of the smaller one jam into a sticky


def float_fields(m: Module, bits: Value, name: str, fmt: FloatFormat = FP32) -> tuple[Signal, Signal, Signal, Signal]:
    """(significand with its hidden one, effective exponent field max(E, 1), nan, inf) of ``fmt`` bits."""
    mb, eb = fmt.man_bits, fmt.exp_bits
    efield, man = bits[mb:mb + eb], bits[:mb]
    top = 2 ** eb - 1
    sig, exp = Signal(mb + 1, name=f"{name}_sig"), Signal(eb, name=f"{name}_exp")
    nan, inf = Signal(name=f"{name}_nan"), Signal(name=f"{name}_inf")
    m.d.comb += [sig.eq(Cat(man, efield != 0)), exp.eq(Mux(efield == 0, 1, efield)),
                 nan.eq((efield == top) & (man != 0)), inf.eq((efield == top) & (man == 0))]
    return sig, exp, nan, inf


class FloatAdd(wiring.Component):
    """The accumulator add ``y = round(a + b)`` in ``fmt`` (nearest even, IEEE specials and signed
    zeros; canonical NaN).

    Swap so |a| >= |b|, align b to a's exponent keeping ``WINDOW`` bits below a's LSB (the rest ORed
    into the lowest kept bit), add, round. Exact rounding: when b loses bits (exponent difference
    > 1) the result's quantum is at least 2^(WINDOW - 1) window LSBs, so the jammed odd LSB falls on
    the same side of every rounding boundary as the exact value; otherwise nothing is lost.
    """

    def __init__(self, fmt: FloatFormat = FP32) -> None:
        check_accumulator(fmt)
        self.fmt = fmt
        super().__init__({"a": In(fmt.bits), "b": In(fmt.bits), "y": Out(fmt.bits)})

    def elaborate(self, platform) -> Module:
        m = Module()
        fmt = self.fmt
        mb, eb, top = fmt.man_bits, fmt.exp_bits, fmt.bits - 1
        swap = Signal(name="swap")
        m.d.comb += swap.eq(self.b[:top] > self.a[:top])
        big, small = Signal(fmt.bits, name="big"), Signal(fmt.bits, name="small")
        m.d.comb += [big.eq(Mux(swap, self.b, self.a)), small.eq(Mux(swap, self.a, self.b))]
        sig_a, exp_a, nan_a, inf_a = float_fields(m, big, "big", fmt)
        sig_b, exp_b, nan_b, inf_b = float_fields(m, small, "small", fmt)
        diff = Signal(eb, name="diff")
        m.d.comb += diff.eq(exp_a - exp_b)
        amount = Signal(6, name="amount")
        m.d.comb += amount.eq(Mux(diff > 63, 63, diff))
        aligned, sticky = shift_right_sticky(m, Cat(Const(0, WINDOW), sig_b), amount, "align")
        jammed = Signal(mb + 1 + WINDOW, name="jammed")
        m.d.comb += jammed.eq(aligned | sticky)
        wide_a = Cat(Const(0, WINDOW), sig_a)
        total = Signal(signed(mb + 1 + WINDOW + 2), name="total")
        m.d.comb += total.eq(Mux(big[top], -wide_a, wide_a) + Mux(small[top], -jammed, jammed))
        exp = Signal(signed(max(eb, clog2(fmt.bias + mb + WINDOW + 1)) + 2), name="lsb_exp")
        m.d.comb += exp.eq(exp_a - (fmt.bias + mb + WINDOW))
        rounded = round_to_format(m, total, exp, "sum", fmt)
        with m.If(nan_a | nan_b | (inf_a & inf_b & (big[top] != small[top]))):
            m.d.comb += self.y.eq(fmt.nan_code)
        with m.Elif(inf_a):
            m.d.comb += self.y.eq(big)
        with m.Elif((self.a == 1 << top) & (self.b == 1 << top)):  # -0 + -0 = -0; other zero sums +0
            m.d.comb += self.y.eq(1 << top)
        with m.Else():
            m.d.comb += self.y.eq(rounded)
        return m
