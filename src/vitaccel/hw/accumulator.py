"""Integer accumulator step (DESIGN.md sections 4 and 5): ``acc_bits`` wide, group sums in K order,
and the partial-sum storage round trip through the codec every ``tile_k`` elements."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import IntDatapath
from vitaccel.hw.codecs import CodecRoundTrip
from vitaccel.hw.common import overflow
from vitaccel.hw.tree import psum_bits


class IntAccumulator(wiring.Component):
    """``acc_next = overflow(acc_in + psum << psum_drop_lsbs, acc_bits)`` where ``acc_in`` is 0 when
    ``first``, the codec round trip of ``acc`` when ``store`` (the running sum was written to memory
    at a tile boundary and is read back), else ``acc``.
    """

    def __init__(self, dp: IntDatapath) -> None:
        self.dp = dp
        self.codec = dp.psum_codec()
        super().__init__({"acc": In(signed(dp.acc_bits)), "psum": In(signed(psum_bits(dp))), "first": In(1),
                          "store": In(1), "acc_next": Out(signed(dp.acc_bits))})

    def elaborate(self, platform) -> Module:
        m = Module()
        dp = self.dp
        read_back = self.acc
        if self.codec is not None:
            m.submodules.storage = rt = CodecRoundTrip(self.codec, dp.acc_bits, dp.overflow)
            m.d.comb += rt.x.eq(self.acc)
            read_back = Mux(self.store, rt.y, self.acc)
        acc_in = Signal(signed(dp.acc_bits), name="acc_in")
        m.d.comb += acc_in.eq(Mux(self.first, Const(0, signed(dp.acc_bits)), read_back))
        total = Signal(signed(max(dp.acc_bits, len(self.psum) + dp.psum_drop_lsbs) + 1), name="total")
        m.d.comb += total.eq(acc_in + (self.psum << dp.psum_drop_lsbs))
        m.d.comb += self.acc_next.eq(overflow(total, dp.acc_bits, dp.overflow))
        return m
