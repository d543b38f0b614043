"""Aligned float adder tree (DESIGN.md section 3): G exact products aligned to the group's largest
exponent keeping ``align_bits`` fraction bits (toward zero or nearest even), summed exactly, rounded
to the accumulator format (float32 by default). ``align_bits=None``: exact sum, the alignment window is
the whole exponent span. MX operands (every group in one block): the products are the elements',
and the blocks' E8M0 scale codes enter once per group as an exponent add on the group sum before
its one rounding (NaN scale: the group is NaN)."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import FloatDatapath
from vitaccel.arith.formats import FloatFormat
from vitaccel.arith.mx import E8M0_BIAS, E8M0_NAN, MX_NAMES, MXFormat
from vitaccel.hw.common import check_width, clog2, leading_one, refuse, shift_right_sticky
from vitaccel.hw.float_lane import exp_range, product_layout
from vitaccel.hw.fp32 import FP32, check_accumulator, round_to_format
from vitaccel.hw.tree import balanced_sum

SCALE_BITS = 8                      # an E8M0 block scale code


def operand_element(name: str, key: str) -> FloatFormat:
    """The FloatFormat whose codes a lane port takes for operand format ``name``: the format itself,
    or an MX format's (saturating) element format; MXINT8 (integer elements) is refused naming ``key``."""
    if name not in MX_NAMES:
        return FloatFormat.named(name)
    elem = MXFormat.named(name).element_format
    if elem is None:
        raise refuse(key, name, "the float lane takes float element codes; MXINT8's elements are integers "
                     "(no MXINT8 lane is built); choose another MX format or a float format")
    return elem


def formats(fp: FloatDatapath) -> tuple[FloatFormat, FloatFormat]:
    """The lane's operand formats (MX operands: their element formats)."""
    return (operand_element(fp.a_format, "float_datapath.a_format"),
            operand_element(fp.b_format, "float_datapath.b_format"))


def mx_sides(fp: FloatDatapath) -> tuple[str, ...]:
    """The operands (``"a"``, ``"b"``) in an MX format: each has an E8M0 scale port per group."""
    return tuple(side for side, name in (("a", fp.a_format), ("b", fp.b_format)) if name in MX_NAMES)


def accumulator(fp: FloatDatapath) -> FloatFormat:
    """The accumulator format (group sums are rounded to it)."""
    fmt = FloatFormat.named(fp.accumulator)
    check_accumulator(fmt)
    return fmt


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


class ProductTop(wiring.Component):
    """Exponent of one product's leading one: ``exp + lead(sig)``, and whether it is nonzero."""

    def __init__(self, sig_bits: int, exp_bits: int) -> None:
        super().__init__({"sig": In(sig_bits), "exp": In(signed(exp_bits)), "top": Out(signed(exp_bits + 2)),
                          "nonzero": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += [self.top.eq(self.exp + leading_one(m, self.sig, "lead")), self.nonzero.eq(self.sig != 0)]
        return m


class Aligner(wiring.Component):
    """One product aligned to the group's top exponent with ``align_bits`` fraction bits, signed."""

    def __init__(self, sig_bits: int, exp_bits: int, align_bits: int, rounding: str) -> None:
        self.sig_bits, self.align_bits, self.rounding = sig_bits, align_bits, rounding
        super().__init__({"sig": In(sig_bits), "exp": In(signed(exp_bits)), "sign": In(1),
                          "top": In(signed(exp_bits + 2)), "term": Out(signed(sig_bits + align_bits + 2))})

    def elaborate(self, platform) -> Module:
        m = Module()
        a, sig_w = self.align_bits, self.sig_bits
        r = Signal(signed(len(self.top) + 1), name="r")
        m.d.comb += r.eq(self.top - self.exp)
        amount = Signal(range(sig_w + a + 3), name="amount")
        m.d.comb += amount.eq(Mux(r > sig_w + a + 2, sig_w + a + 2, Mux(r < 0, 0, r)))
        kept = Signal(sig_w + a + 1, name="aligned")
        if self.rounding == "nearest_even":
            y, sticky = shift_right_sticky(m, Cat(Const(0, a + 1), self.sig), amount, "align")
            m.d.comb += kept.eq(y[1:] + (y[0] & (sticky | y[1])))
        else:
            m.d.comb += kept.eq(Cat(Const(0, a), self.sig) >> amount)
        m.d.comb += self.term.eq(Mux(self.sign, -kept, kept))
        return m


class ExactAligner(wiring.Component):
    """One product placed in the exact tree's fixed point (LSB = 2^lo, the smallest product
    exponent): ``term = ±(sig << (exp - lo))``, signed."""

    def __init__(self, sig_bits: int, exp_bits: int, lo: int, hi: int, width: int) -> None:
        self.lo, self.hi = lo, hi
        super().__init__({"sig": In(sig_bits), "exp": In(signed(exp_bits)), "sign": In(1),
                          "term": Out(signed(width + 1))})

    def elaborate(self, platform) -> Module:
        m = Module()
        mag = Signal(len(self.term) - 1, name="fixed")
        m.d.comb += mag.eq(self.sig << (self.exp - self.lo).as_unsigned()[:clog2(self.hi - self.lo)])
        m.d.comb += self.term.eq(Mux(self.sign, -mag, mag))
        return m


class Normaliser(wiring.Component):
    """``y`` = ``fmt`` bits (the accumulator format) of ``x * 2^exp`` (nearest even), ``exp`` a port
    or, given ``fixed_exp``, a constant inside the block (the exact tree's quantum), so that no
    constant crosses its boundary."""

    def __init__(self, bits: int, exp_bits: int, fixed_exp: int | None = None, fmt: FloatFormat = FP32) -> None:
        self.exp_bits, self.fixed_exp, self.fmt = exp_bits, fixed_exp, fmt
        ports = {"x": In(signed(bits)), "y": Out(fmt.bits)}
        if fixed_exp is None:
            ports["exp"] = In(signed(exp_bits))
        super().__init__(ports)

    def elaborate(self, platform) -> Module:
        m = Module()
        exp = self.exp if self.fixed_exp is None else Const(self.fixed_exp, signed(self.exp_bits))
        m.d.comb += self.y.eq(round_to_format(m, self.x, exp, "round", self.fmt))
        return m


class FloatTree(wiring.Component):
    """Ports: ``p`` (G products, ``product_layout``) -> ``sum`` (accumulator-format bits of the group sum);
    with MX operands also ``a_scale``/``b_scale`` (the group's block scale codes, E8M0, per MX side):
    the sum is ``2^(a_scale + b_scale - 2 * 127)`` times the elements' group sum, rounded once, NaN
    when a scale code is 0xFF."""

    def __init__(self, fp: FloatDatapath) -> None:
        self.fp = fp
        fa, fb = formats(fp)
        check_tree(fp)
        ports = {"p": In(product_layout(fa, fb)).array(fp.group_size)}
        ports.update({f"{side}_scale": In(SCALE_BITS) for side in mx_sides(fp)})
        super().__init__({**ports, "sum": Out(accumulator(fp).bits)})

    def elaborate(self, platform) -> Module:
        m = Module()
        fp = self.fp
        fa, fb = formats(fp)
        lo, hi = exp_range(fa, fb)
        pe = len(self.p[0].exp)
        ew = pe + 2
        sig_w = len(self.p[0].sig)
        width = term_bits(fp)
        terms = []
        if fp.align_bits is None:
            for i, p in enumerate(self.p):
                m.submodules[f"fixed{i}"] = al = ExactAligner(sig_w, pe, lo, hi, width)
                m.d.comb += [al.sig.eq(p.sig), al.exp.eq(p.exp), al.sign.eq(p.sign)]
                terms.append(al.term)
            exp = None
        else:
            a = fp.align_bits
            tops = []
            for i, p in enumerate(self.p):           # exponent of each product's leading one
                m.submodules[f"top{i}"] = t = ProductTop(sig_w, pe)
                m.d.comb += [t.sig.eq(p.sig), t.exp.eq(p.exp)]
                tops.append((t.top, t.nonzero))
            level = 0
            while len(tops) > 1:                     # balanced max over the nonzero products
                nxt = []
                for j in range(0, len(tops), 2):
                    if j + 1 == len(tops):
                        nxt.append(tops[j])
                        continue
                    (ta, va), (tb, vb) = tops[j], tops[j + 1]
                    t, v = Signal(signed(ew), name=f"max_l{level}_{j // 2}"), Signal(name=f"any_l{level}_{j // 2}")
                    m.d.comb += [t.eq(Mux(va & (~vb | (ta >= tb)), ta, tb)), v.eq(va | vb)]
                    nxt.append((t, v))
                tops, level = nxt, level + 1
            top = tops[0][0]
            for i, p in enumerate(self.p):
                m.submodules[f"align{i}"] = al = Aligner(sig_w, pe, a, fp.align_rounding)
                m.d.comb += [al.sig.eq(p.sig), al.exp.eq(p.exp), al.sign.eq(p.sign), al.top.eq(top)]
                terms.append(al.term)
            exp = Signal(signed(ew + 1), name="quantum")
            m.d.comb += exp.eq(top - a)
        total = balanced_sum(m, terms, "sum", blocks=True)
        facc = accumulator(fp)
        scales = [getattr(self, f"{side}_scale") for side in mx_sides(fp)]
        scale_nan = Const(0, 1)
        qw = ew + 1
        if scales:                                   # the block scales' exponent add on the group's quantum
            qw = max(ew + 1, SCALE_BITS + 2) + 1     # quantum (ew + 1 bits) + shift (|.| <= 254) fits
            shift = Signal(signed(SCALE_BITS + 2), name="scale_exp")
            m.d.comb += shift.eq(sum(scales) - E8M0_BIAS * len(scales))
            scaled = Signal(signed(qw), name="scaled_quantum")
            m.d.comb += scaled.eq((lo if exp is None else exp) + shift)
            exp, scale_nan = scaled, Signal(name="scale_nan")
            m.d.comb += scale_nan.eq(Cat(s == E8M0_NAN for s in scales).any())
        m.submodules.normalise = norm = Normaliser(len(total), qw, lo if exp is None else None, facc)
        m.d.comb += norm.x.eq(total)
        if exp is not None:
            m.d.comb += norm.exp.eq(exp)
        nan = Signal(name="any_nan")
        pos_inf, neg_inf = Signal(name="pos_inf"), Signal(name="neg_inf")
        m.d.comb += [nan.eq(Cat(p.nan for p in self.p).any() | scale_nan),
                     pos_inf.eq(Cat(p.inf & ~p.sign for p in self.p).any()),
                     neg_inf.eq(Cat(p.inf & p.sign for p in self.p).any())]
        with m.If(nan | (pos_inf & neg_inf)):
            m.d.comb += self.sum.eq(facc.nan_code)
        with m.Elif(pos_inf):
            m.d.comb += self.sum.eq(facc.inf_code)
        with m.Elif(neg_inf):
            m.d.comb += self.sum.eq(facc.inf_code | (1 << (facc.bits - 1)))
        with m.Else():
            m.d.comb += self.sum.eq(norm.y)
        return m
