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


def f32_fixed(m: Module, bits: Value, name: str) -> tuple[Signal, Signal, Signal]:
    """(signed value in units of 2^-149, nan, inf) of float32 bits."""
    efield, man = bits[23:31], bits[:23]
    fixed = Signal(signed(24 + 254 + 1), name=f"{name}_fixed")
    mag = Signal(24 + 254, name=f"{name}_fmag")
    m.d.comb += mag.eq(Cat(man, efield != 0) << (Mux(efield == 0, 1, efield) - 1)[:8])
    m.d.comb += fixed.eq(Mux(bits[31], -mag, mag))
    nan, inf = Signal(name=f"{name}_nan"), Signal(name=f"{name}_inf")
    m.d.comb += [nan.eq((efield == 255) & (man != 0)), inf.eq((efield == 255) & (man == 0))]
    return fixed, nan, inf


class F32Add(wiring.Component):
    """The float32 accumulator add ``y = round(a + b)`` (nearest even, IEEE specials; canonical NaN)."""

    def __init__(self) -> None:
        super().__init__({"a": In(32), "b": In(32), "y": Out(32)})

    def elaborate(self, platform) -> Module:
        m = Module()
        fa, nan_a, inf_a = f32_fixed(m, self.a, "a")
        fb, nan_b, inf_b = f32_fixed(m, self.b, "b")
        total = Signal(signed(len(fa) + 1), name="total")
        m.d.comb += total.eq(fa + fb)
        rounded = round_to_f32(m, total, Const(-149, signed(9)), "sum")
        with m.If(nan_a | nan_b | (inf_a & inf_b & (self.a[31] != self.b[31]))):
            m.d.comb += self.y.eq(NAN)
        with m.Elif(inf_a):
            m.d.comb += self.y.eq(self.a)
        with m.Elif(inf_b):
            m.d.comb += self.y.eq(self.b)
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
