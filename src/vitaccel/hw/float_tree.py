"""Aligned float adder tree (DESIGN.md section 3): G exact products aligned to the group's largest
exponent keeping ``align_bits`` fraction bits (toward zero or nearest even), summed exactly, rounded
to float32. ``align_bits=None``: exact sum, the alignment window is the whole exponent span."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import FloatDatapath
from vitaccel.arith.formats import FloatFormat
from vitaccel.hw.common import check_width, clog2, leading_one, shift_right_sticky
from vitaccel.hw.float_lane import exp_range, product_layout
from vitaccel.hw.fp32 import INF, NAN, round_to_f32
from vitaccel.hw.tree import balanced_sum


def formats(fp: FloatDatapath) -> tuple[FloatFormat, FloatFormat]:
    return FloatFormat.named(fp.a_format), FloatFormat.named(fp.b_format)


def term_bits(fp: FloatDatapath) -> int:
    """Unsigned width of one aligned product."""
    fa, fb = formats(fp)
    sig = fa.man_bits + fb.man_bits + 2
    if fp.align_bits is None:
        lo, hi = exp_range(fa, fb)
        return sig + hi - lo
    return sig + fp.align_bits + 1


def check_tree(fp: FloatDatapath) -> None:
    """Refuse trees wider than the generators build."""
    check_width("float_datapath.align_bits", term_bits(fp) + fp.group_size.bit_length())


class FloatTree(wiring.Component):
    """Ports: ``p`` (G products, ``product_layout``) -> ``sum`` (float32 bits of the group sum)."""

    def __init__(self, fp: FloatDatapath) -> None:
        self.fp = fp
        fa, fb = formats(fp)
        check_tree(fp)
        super().__init__({"p": In(product_layout(fa, fb)).array(fp.group_size), "sum": Out(32)})

    def elaborate(self, platform) -> Module:
        m = Module()
        fp = self.fp
        fa, fb = formats(fp)
        lo, hi = exp_range(fa, fb)
        ew = len(self.p[0].exp) + 2
        width = term_bits(fp)
        terms = []
        if fp.align_bits is None:
            for i, p in enumerate(self.p):
                mag = Signal(width, name=f"fixed{i}")
                m.d.comb += mag.eq(p.sig << (p.exp - lo).as_unsigned()[:clog2(hi - lo)])
                terms.append(Mux(p.sign, -mag, mag))
            exp = Const(lo, signed(ew))
        else:
            a = fp.align_bits
            tops = []
            for i, p in enumerate(self.p):           # exponent of each product's leading one
                lead = leading_one(m, p.sig, f"lead{i}")
                top = Signal(signed(ew), name=f"top{i}")
                m.d.comb += top.eq(p.exp + lead)
                tops.append((top, p.sig != 0))
            while len(tops) > 1:                     # balanced max over the nonzero products
                nxt = []
                for j in range(0, len(tops), 2):
                    if j + 1 == len(tops):
                        nxt.append(tops[j])
                        continue
                    (ta, va), (tb, vb) = tops[j], tops[j + 1]
                    t, v = Signal(signed(ew)), Signal()
                    m.d.comb += [t.eq(Mux(va & (~vb | (ta >= tb)), ta, tb)), v.eq(va | vb)]
                    nxt.append((t, v))
                tops = nxt
            top = tops[0][0]
            sig_w = len(self.p[0].sig)
            for i, p in enumerate(self.p):
                r = Signal(signed(ew + 1), name=f"r{i}")
                m.d.comb += r.eq(top - p.exp)
                amount = Signal(range(sig_w + a + 3), name=f"amount{i}")
                m.d.comb += amount.eq(Mux(r > sig_w + a + 2, sig_w + a + 2, r))
                kept = Signal(width, name=f"aligned{i}")
                if fp.align_rounding == "nearest_even":
                    y, sticky = shift_right_sticky(m, Cat(Const(0, a + 1), p.sig), amount, f"align{i}")
                    m.d.comb += kept.eq(y[1:] + (y[0] & (sticky | y[1])))
                else:
                    m.d.comb += kept.eq(Cat(Const(0, a), p.sig) >> amount)
                terms.append(Mux(p.sign, -kept, kept))
            exp = Signal(signed(ew + 1), name="quantum")
            m.d.comb += exp.eq(top - a)
        signed_terms = []
        for i, t in enumerate(terms):
            s = Signal(signed(width + 1), name=f"term{i}")
            m.d.comb += s.eq(t)
            signed_terms.append(s)
        total = balanced_sum(m, signed_terms, "sum")
        rounded = round_to_f32(m, total, exp, "group")
        nan = Signal(name="any_nan")
        pos_inf, neg_inf = Signal(name="pos_inf"), Signal(name="neg_inf")
        m.d.comb += [nan.eq(Cat(p.nan for p in self.p).any()),
                     pos_inf.eq(Cat(p.inf & ~p.sign for p in self.p).any()),
                     neg_inf.eq(Cat(p.inf & p.sign for p in self.p).any())]
        with m.If(nan | (pos_inf & neg_inf)):
            m.d.comb += self.sum.eq(NAN)
        with m.Elif(pos_inf):
            m.d.comb += self.sum.eq(INF)
        with m.Elif(neg_inf):
            m.d.comb += self.sum.eq(INF | (1 << 31))
        with m.Else():
            m.d.comb += self.sum.eq(rounded)
        return m
