"""Integer adder tree (DESIGN.md section 4): G lane products summed exactly in a balanced tree, then
the partial-sum register: ``psum_drop_lsbs`` with its rounding and ``psum_bits`` saturate|wrap."""

from __future__ import annotations

from amaranth import Module, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import IntDatapath
from vitaccel.hw.common import drop_lsbs, overflow
from vitaccel.hw.int_lane import lane_bits


def tree_sum_bits(dp: IntDatapath) -> int:
    """Exact width of the sum of G lane products."""
    return lane_bits(dp) + (dp.group_size.bit_length() - 1)


def psum_bits(dp: IntDatapath) -> int:
    """Width of the partial sum the tree hands to the accumulator (above the dropped LSBs)."""
    if dp.psum_bits is not None:
        return dp.psum_bits
    return tree_sum_bits(dp) - dp.psum_drop_lsbs + (1 if dp.psum_drop_lsbs and dp.psum_rounding == "nearest" else 0)


class Adder(wiring.Component):
    """``y = a + b`` on signed operands, one bit wider than the wider (exact): one node of a tree,
    as a block of its own (so hierarchical synthesis makes each distinct width once)."""

    def __init__(self, a_bits: int, b_bits: int) -> None:
        super().__init__({"a": In(signed(a_bits)), "b": In(signed(b_bits)),
                          "y": Out(signed(max(a_bits, b_bits) + 1))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.y.eq(self.a + self.b)
        return m


def balanced_sum(m: Module, terms: list[Value], name: str, blocks: bool = False) -> Value:
    """Pairwise sums level by level; every level one bit wider than the one below (exact).
    ``blocks``: every add is an ``Adder`` submodule (the same logic, in blocks)."""
    level = 0
    while len(terms) > 1:
        nxt = []
        for i in range(0, len(terms), 2):
            if i + 1 == len(terms):
                nxt.append(terms[i])
                continue
            s = Signal(signed(max(len(terms[i]), len(terms[i + 1])) + 1), name=f"{name}_l{level}_{i // 2}")
            if blocks:
                m.submodules[f"{name}_add_l{level}_{i // 2}"] = add = Adder(len(terms[i]), len(terms[i + 1]))
                m.d.comb += [add.a.eq(terms[i]), add.b.eq(terms[i + 1]), s.eq(add.y)]
            else:
                m.d.comb += s.eq(terms[i] + terms[i + 1])
            nxt.append(s)
        terms, level = nxt, level + 1
    return terms[0]


class IntTree(wiring.Component):
    """``psum = overflow(drop_lsbs(sum(p), d, rounding), psum_bits, mode)`` (golden ``dot_int``, one group).

    Ports: ``p`` (G signed lane products) -> ``psum`` (signed ``psum_bits(dp)``).
    """

    def __init__(self, dp: IntDatapath) -> None:
        self.dp = dp
        super().__init__({"p": In(signed(lane_bits(dp))).array(dp.group_size), "psum": Out(signed(psum_bits(dp)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        dp = self.dp
        total = Signal(signed(tree_sum_bits(dp)), name="total")
        m.d.comb += total.eq(balanced_sum(m, list(self.p), "sum"))
        kept = Signal(signed(tree_sum_bits(dp) + 1), name="kept")
        m.d.comb += kept.eq(drop_lsbs(total, dp.psum_drop_lsbs, dp.psum_rounding))
        if dp.psum_bits is None:
            m.d.comb += self.psum.eq(kept)
        else:
            m.d.comb += self.psum.eq(overflow(kept, dp.psum_bits, dp.overflow))
        return m
