"""Whole dot-product units (G lanes + tree + accumulator + storage) and a registered wrapper.

A unit takes one group of G operand codes per clock with a per-lane ``mask`` (masked lanes
contribute a zero product, so K need not be a multiple of G). ``en`` says the cycle carries a
group; ``first`` starts a new dot product (the accumulator reads 0). ``acc`` is the running
accumulator after the last group taken: the integer accumulator (``golden.dot_int``) or the float32
bits (``golden.dot_float``).
"""

from __future__ import annotations

from amaranth import Module, Mux, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import FloatDatapath, IntDatapath
from vitaccel.hw.accumulator import FloatAccumulatorUnit, IntAccumulatorUnit
from vitaccel.hw.float_lane import FloatLane
from vitaccel.hw.float_tree import SCALE_BITS, FloatTree, accumulator, formats, mx_sides
from vitaccel.hw.int_lane import IntLane
from vitaccel.hw.tree import IntTree


class IntDotUnit(wiring.Component):
    """Integer dot-product unit: ``a``/``b`` (G signed codes), ``mask``, ``first``, ``en`` -> ``acc``."""

    def __init__(self, dp: IntDatapath) -> None:
        self.dp = dp
        g = dp.group_size
        super().__init__({"a": In(signed(dp.a_bits)).array(g), "b": In(signed(dp.b_bits)).array(g), "mask": In(g),
                          "first": In(1), "en": In(1), "acc": Out(signed(dp.acc_bits))})

    def elaborate(self, platform) -> Module:
        m = Module()
        dp = self.dp
        m.submodules.tree = tree = IntTree(dp)
        for i in range(dp.group_size):
            m.submodules[f"lane{i}"] = lane = IntLane(dp)
            m.d.comb += [lane.a.eq(self.a[i]), lane.w.eq(self.b[i]), tree.p[i].eq(Mux(self.mask[i], lane.p, 0))]
        m.submodules.accumulator = acc = IntAccumulatorUnit(dp)
        m.d.comb += [acc.psum.eq(tree.psum), acc.first.eq(self.first), acc.en.eq(self.en), self.acc.eq(acc.acc)]
        return m


class FloatDotUnit(wiring.Component):
    """Float dot-product unit: ``a``/``b`` (G codes), ``mask``, ``first``, ``en`` -> ``acc`` (bits of the
    accumulator format, float32 by default). MX operands: ``a``/``b`` take element codes and
    ``a_scale``/``b_scale`` the E8M0 scale code of the block the group lies in (per MX side)."""

    def __init__(self, fp: FloatDatapath) -> None:
        self.fp = fp
        fa, fb = formats(fp)
        g = fp.group_size
        scales = {f"{side}_scale": In(SCALE_BITS) for side in mx_sides(fp)}
        super().__init__({"a": In(fa.bits).array(g), "b": In(fb.bits).array(g), **scales, "mask": In(g),
                          "first": In(1), "en": In(1), "acc": Out(accumulator(fp).bits)})

    def elaborate(self, platform) -> Module:
        m = Module()
        fp = self.fp
        fa, fb = formats(fp)
        m.submodules.tree = tree = FloatTree(fp)
        for i in range(fp.group_size):
            m.submodules[f"lane{i}"] = lane = FloatLane(fa, fb, fp.multiplier)
            m.d.comb += [lane.a.eq(self.a[i]), lane.b.eq(self.b[i])]
            with m.If(self.mask[i]):
                m.d.comb += tree.p[i].eq(lane.p)
        for side in mx_sides(fp):
            m.d.comb += getattr(tree, f"{side}_scale").eq(getattr(self, f"{side}_scale"))
        m.submodules.accumulator = acc = FloatAccumulatorUnit(accumulator(fp))
        m.d.comb += [acc.sum.eq(tree.sum), acc.first.eq(self.first), acc.en.eq(self.en), self.acc.eq(acc.acc)]
        return m


class Registered(wiring.Component):
    """One pipeline stage around a combinational element: inputs and outputs registered (latency 2)."""

    def __init__(self, element: wiring.Component) -> None:
        self.element = element
        super().__init__(dict(element.signature.members))

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.element = el = self.element
        for path, member, value in self.signature.flatten(self):
            inner = el
            for part in path:
                inner = inner[part] if isinstance(part, int) else getattr(inner, part)
            if member.flow == In:
                m.d.sync += inner.eq(value)
            else:
                m.d.sync += value.eq(inner)
        return m
