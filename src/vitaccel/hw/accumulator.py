"""Accumulators (DESIGN.md sections 3-5). The integer step: ``acc_bits`` wide, group sums in K
order, and the partial-sum storage round trip through the codec every ``tile_k`` elements. The
registered units (``IntAccumulatorUnit``, ``FloatAccumulatorUnit``): the step with its register
(and tile counter), one group sum per clock, the accumulator half of a dot-product unit."""

from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import IntDatapath
from vitaccel.arith.formats import FloatFormat
from vitaccel.hw.codecs import CodecRoundTrip
from vitaccel.hw.common import overflow
from vitaccel.hw.fp32 import FP32, FloatAdd
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


class IntAccumulatorUnit(wiring.Component):
    """Registered integer accumulator: ``psum`` (one group sum), ``first``, ``en`` -> ``acc``.

    On a clock with ``en`` the register takes ``IntAccumulator``'s ``acc_next``; with a codec, the
    running sum is stored and read back (``store``) on the first group of every tile of
    ``tile_k // G`` groups after the first tile, counted by a tile counter (``golden.dot_int``)."""

    def __init__(self, dp: IntDatapath) -> None:
        self.dp = dp
        storage = dp.psum_storage
        self.groups_per_tile = storage.tile_k // dp.group_size if storage is not None else 1
        super().__init__({"psum": In(signed(psum_bits(dp))), "first": In(1), "en": In(1),
                          "acc": Out(signed(dp.acc_bits))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.step = acc = IntAccumulator(self.dp)
        m.d.comb += [acc.acc.eq(self.acc), acc.psum.eq(self.psum), acc.first.eq(self.first)]
        with m.If(self.en):
            m.d.sync += self.acc.eq(acc.acc_next)
        if acc.codec is not None:                   # groups taken since the running sum was last stored
            tiles = self.groups_per_tile
            count = Signal(range(tiles + 1), name="tile_count")
            nxt = Signal(range(tiles + 1), name="tile_count_next")
            m.d.comb += [acc.store.eq(~self.first & (count == 0)), nxt.eq(Mux(self.first, 0, count) + 1)]
            with m.If(self.en):
                m.d.sync += count.eq(Mux(nxt == tiles, 0, nxt))
        return m


class FloatAccumulatorUnit(wiring.Component):
    """Registered float accumulator in format ``fmt`` (``float_datapath.accumulator``): ``sum`` (fmt
    bits of one group sum), ``first``, ``en`` -> ``acc`` (fmt bits): on a clock with ``en``,
    ``acc = FloatAdd(fmt)(0 if first else acc, sum)``."""

    def __init__(self, fmt: FloatFormat = FP32) -> None:
        self.fmt = fmt
        super().__init__({"sum": In(fmt.bits), "first": In(1), "en": In(1), "acc": Out(fmt.bits)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.add = add = FloatAdd(self.fmt)
        m.d.comb += [add.a.eq(Mux(self.first, 0, self.acc)), add.b.eq(self.sum)]
        with m.If(self.en):
            m.d.sync += self.acc.eq(add.y)
        return m
