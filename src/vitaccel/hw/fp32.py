"""float32 arithmetic of the float datapath: rounding an exact fixed-point sum to float32 (nearest
even, subnormals, overflow to inf) and the float32 accumulator add (golden ``round_real``, ``f32_add``)."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.hw.common import absolute, clog2, leading_one, shift_right_sticky

NAN, INF = 0x7FC00000, 0x7F800000


def round_to_f32(m: Module, total: Value, exp: Value, name: str) -> Signal:
    """float32 bits of ``total * 2^exp`` (``total`` signed, ``exp`` signed), nearest even; +0 for 0."""
    w = len(total)
    neg, mag = Signal(name=f"{name}_neg"), Signal(w, name=f"{name}_mag")
    m.d.comb += [neg.eq(total < 0), mag.eq(absolute(total))]
    pos = leading_one(m, mag, f"{name}_lead")
    ew = max(len(exp), clog2(w)) + 3
    e, q, sh = (Signal(signed(ew), name=f"{name}_{n}") for n in ("e", "q", "sh"))
    m.d.comb += [e.eq(pos + exp), q.eq(Mux(e < -126, -149, e - 23)), sh.eq(q - exp)]
    amount = Signal(range(w + 2), name=f"{name}_amount")
    m.d.comb += amount.eq(Mux(sh < 0, 0, Mux(sh > w + 1, w + 1, sh)))
    y, sticky = shift_right_sticky(m, Cat(Const(0, 1), mag), amount, f"{name}_rsh")
    kept = Signal(25, name=f"{name}_kept")
    with m.If(sh < 0):                               # exact: the value has at most 24 significant bits
        m.d.comb += kept.eq(mag << (-sh)[:5])
    with m.Else():
        m.d.comb += kept.eq(y[1:] + (y[0] & (sticky | y[1])))
    packed = Signal(ew + 25, name=f"{name}_packed")
    m.d.comb += packed.eq(((q + 149) << 23) + kept)
    out = Signal(32, name=f"{name}_bits")
    with m.If(mag == 0):
        m.d.comb += out.eq(0)
    with m.Elif(packed >= INF):
        m.d.comb += out.eq(Cat(Const(INF, 31), neg))
    with m.Else():
        m.d.comb += out.eq(Cat(packed[:31], neg))
    return out


WINDOW = 27          # bits kept below the larger operand's LSB; lower bits of the smaller one jam into a sticky


def f32_fields(m: Module, bits: Value, name: str) -> tuple[Signal, Signal, Signal, Signal]:
    """(significand with its hidden one, effective exponent field max(E, 1), nan, inf) of float32 bits."""
    efield, man = bits[23:31], bits[:23]
    sig, exp = Signal(24, name=f"{name}_sig"), Signal(8, name=f"{name}_exp")
    nan, inf = Signal(name=f"{name}_nan"), Signal(name=f"{name}_inf")
    m.d.comb += [sig.eq(Cat(man, efield != 0)), exp.eq(Mux(efield == 0, 1, efield)),
                 nan.eq((efield == 255) & (man != 0)), inf.eq((efield == 255) & (man == 0))]
    return sig, exp, nan, inf


class F32Add(wiring.Component):
    """The float32 accumulator add ``y = round(a + b)`` (nearest even, IEEE specials; canonical NaN).

    Swap so |a| >= |b|, align b to a's exponent keeping ``WINDOW`` bits below a's LSB (the rest ORed
    into the lowest kept bit), add, round. Exact rounding: when b loses bits (exponent difference
    > 1) the result's quantum is at least 2^(WINDOW - 1) window LSBs, so the jammed odd LSB falls on
    the same side of every rounding boundary as the exact value; otherwise nothing is lost.
    """

    def __init__(self) -> None:
        super().__init__({"a": In(32), "b": In(32), "y": Out(32)})

    def elaborate(self, platform) -> Module:
        m = Module()
        swap = Signal(name="swap")
        m.d.comb += swap.eq(self.b[:31] > self.a[:31])
        big, small = Signal(32, name="big"), Signal(32, name="small")
        m.d.comb += [big.eq(Mux(swap, self.b, self.a)), small.eq(Mux(swap, self.a, self.b))]
        sig_a, exp_a, nan_a, inf_a = f32_fields(m, big, "big")
        sig_b, exp_b, nan_b, inf_b = f32_fields(m, small, "small")
        diff = Signal(8, name="diff")
        m.d.comb += diff.eq(exp_a - exp_b)
        amount = Signal(6, name="amount")
        m.d.comb += amount.eq(Mux(diff > 63, 63, diff))
        aligned, sticky = shift_right_sticky(m, Cat(Const(0, WINDOW), sig_b), amount, "align")
        jammed = Signal(24 + WINDOW, name="jammed")
        m.d.comb += jammed.eq(aligned | sticky)
        wide_a = Cat(Const(0, WINDOW), sig_a)
        total = Signal(signed(24 + WINDOW + 2), name="total")
        m.d.comb += total.eq(Mux(big[31], -wide_a, wide_a) + Mux(small[31], -jammed, jammed))
        exp = Signal(signed(10), name="lsb_exp")
        m.d.comb += exp.eq(exp_a - (150 + WINDOW))
        rounded = round_to_f32(m, total, exp, "sum")
        with m.If(nan_a | nan_b | (inf_a & inf_b & (big[31] != small[31]))):
            m.d.comb += self.y.eq(NAN)
        with m.Elif(inf_a):
            m.d.comb += self.y.eq(big)
        with m.Else():
            m.d.comb += self.y.eq(rounded)
        return m


class F32Round(wiring.Component):
    """``y`` = float32 bits of the signed integer ``x * 2^exp`` (the tree's normaliser, on its own)."""

    def __init__(self, bits: int, exp_bits: int) -> None:
        super().__init__({"x": In(signed(bits)), "exp": In(signed(exp_bits)), "y": Out(32)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.y.eq(round_to_f32(m, self.x, self.exp, "round"))
        return m
