"""Integer lane (DESIGN.md section 4): leading-one truncation of the first operand, k x b_bits
multiplier, shifter, sign; the plain exact multiplier when ``keep_bits`` is None."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import IntDatapath
from vitaccel.hw.common import absolute, leading_one


def lane_bits(dp: IntDatapath) -> int:
    """Width of a lane's signed product: |t << s| <= 2^a_bits after rounding, times |w| <= 2^(b_bits-1)."""
    return dp.a_bits + dp.b_bits + 1


class IntLane(wiring.Component):
    """``p = a * w`` with ``a`` seen through ``keep_bits`` from its leading one (``golden.int_multiply``).

    Ports: ``a`` (signed a_bits), ``w`` (signed b_bits) -> ``p`` (signed a_bits + b_bits + 1).
    """

    def __init__(self, dp: IntDatapath) -> None:
        self.dp = dp
        super().__init__({"a": In(signed(dp.a_bits)), "w": In(signed(dp.b_bits)), "p": Out(signed(lane_bits(dp)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        dp, k = self.dp, self.dp.keep_bits
        if k is None:
            m.d.comb += self.p.eq(self.a * self.w)
            return m
        n = dp.a_bits
        neg = Signal(name="neg")
        mag = Signal(n, name="mag")                          # sign-magnitude split
        m.d.comb += [neg.eq(self.a < 0), mag.eq(absolute(self.a))]
        pos = leading_one(m, mag, "lead")                    # leading-one detector
        s0 = Signal(range(n + 1), name="s0")                 # bits dropped when |a| >= 2^k
        m.d.comb += s0.eq(pos - (k - 1))
        t = Signal(k, name="t")                              # kept field
        s = Signal(range(n + 2), name="s")                   # shift
        with m.If(mag < 2 ** k):
            m.d.comb += [t.eq(mag), s.eq(0)]
        with m.Else():
            if dp.keep_rounding == "truncate":
                m.d.comb += [t.eq(mag >> s0), s.eq(s0)]
            elif dp.keep_rounding == "unbiased":
                m.d.comb += [t.eq((mag >> s0) | 1), s.eq(s0)]
            else:                                            # nearest: half up, renormalise on carry
                half = Signal(range(n + 1), name="half_pos")
                m.d.comb += half.eq(pos - k)
                rounded = Signal(n + 1, name="rounded")
                m.d.comb += rounded.eq((mag + (Const(1, n) << half)) >> s0)
                with m.If(rounded == 2 ** k):
                    m.d.comb += [t.eq(2 ** (k - 1)), s.eq(s0 + 1)]
                with m.Else():
                    m.d.comb += [t.eq(rounded), s.eq(s0)]
        prod = Signal(signed(k + dp.b_bits + 1), name="prod")  # the k x b_bits multiplier
        m.d.comb += prod.eq(t * self.w)
        shifted = Signal(signed(lane_bits(dp)), name="shifted")
        m.d.comb += shifted.eq(prod << s)
        m.d.comb += self.p.eq(Mux(neg, -shifted, shifted))
        return m
