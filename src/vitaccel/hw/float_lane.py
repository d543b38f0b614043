"""Float lane (DESIGN.md section 3): decode two ``FloatFormat`` codes (subnormals and specials), the
significand multiplier (``direct`` or ``nibble``), exponent adder and special cases. Exact: the
product is ``(-1)^sign * sig * 2^exp`` with flags ``nan`` and ``inf`` (golden ``fp_mul``)."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.formats import FloatFormat
from vitaccel.hw.common import clog2, refuse

MULTIPLIERS = ("direct", "nibble")


def exp_range(fa: FloatFormat, fb: FloatFormat) -> tuple[int, int]:
    """Smallest and largest exponent of a product's LSB (``exp``)."""
    lo = (1 - fa.bias - fa.man_bits) + (1 - fb.bias - fb.man_bits)
    top = (2 ** fa.exp_bits - 1 - fa.bias - fa.man_bits) + (2 ** fb.exp_bits - 1 - fb.bias - fb.man_bits)
    return lo, top


def product_layout(fa: FloatFormat, fb: FloatFormat) -> data.StructLayout:
    """One exact product: significand, exponent of its LSB, sign and special flags."""
    lo, hi = exp_range(fa, fb)
    width = max(clog2(abs(lo)), clog2(abs(hi))) + 1
    return data.StructLayout({"sig": fa.man_bits + fb.man_bits + 2, "exp": signed(width), "sign": 1, "nan": 1,
                              "inf": 1})


class Decoded:
    """Fields of one decoded code (signals built inside a module)."""

    def __init__(self, m: Module, fmt: FloatFormat, code, name: str) -> None:
        mb, eb = fmt.man_bits, fmt.exp_bits
        man, efield = code[:mb], code[mb:mb + eb]
        self.sign = code[mb + eb]
        ones = 2 ** eb - 1
        self.nan, self.inf = Signal(name=f"{name}_nan"), Signal(name=f"{name}_inf")
        if fmt.specials == "ieee":
            m.d.comb += [self.nan.eq((efield == ones) & (man != 0)), self.inf.eq((efield == ones) & (man == 0))]
        elif fmt.specials == "fn":
            m.d.comb += self.nan.eq((efield == ones) & (man == 2 ** mb - 1))
        self.sig = Signal(mb + 1, name=f"{name}_sig")
        if fmt.subnormals:
            m.d.comb += self.sig.eq(Cat(man, efield != 0))
        else:
            m.d.comb += self.sig.eq(Mux(efield == 0, 0, Cat(man, Const(1, 1))))
        self.exp = Signal(signed(eb + 2), name=f"{name}_exp")      # exponent of the significand's LSB + bias + m
        m.d.comb += self.exp.eq(Mux(efield == 0, 1, efield))


class FloatLane(wiring.Component):
    """Ports: ``a`` (``fa.bits`` code), ``b`` (``fb.bits`` code) -> ``p`` (``product_layout``)."""

    def __init__(self, fa: FloatFormat, fb: FloatFormat, multiplier: str = "direct") -> None:
        if multiplier not in MULTIPLIERS:
            raise refuse("float_datapath.multiplier", multiplier, f"choose one of {list(MULTIPLIERS)}")
        self.fa, self.fb, self.multiplier = fa, fb, multiplier
        super().__init__({"a": In(fa.bits), "b": In(fb.bits), "p": Out(product_layout(fa, fb))})

    def elaborate(self, platform) -> Module:
        m = Module()
        fa, fb = self.fa, self.fb
        da, db = Decoded(m, fa, self.a, "a"), Decoded(m, fb, self.b, "b")
        sig = Signal(len(da.sig) + len(db.sig), name="sig")
        if self.multiplier == "direct":
            m.d.comb += sig.eq(da.sig * db.sig)
        else:                                # nibbles of the first significand: sum of (nib_i * b) << 4i
            partial = []
            for i in range(0, len(da.sig), 4):
                pp = Signal(min(4, len(da.sig) - i) + len(db.sig), name=f"nibble{i // 4}")
                m.d.comb += pp.eq(da.sig[i:i + 4] * db.sig)
                partial.append(pp << i)
            total = partial[0]
            for pp in partial[1:]:
                total = total + pp
            m.d.comb += sig.eq(total)
        zero_a, zero_b = (da.sig == 0) & ~da.nan & ~da.inf, (db.sig == 0) & ~db.nan & ~db.inf
        nan = da.nan | db.nan | (da.inf & zero_b) | (db.inf & zero_a)
        m.d.comb += [
            self.p.sig.eq(Mux(da.nan | db.nan | da.inf | db.inf, 0, sig)),
            self.p.exp.eq(da.exp + db.exp - (fa.bias + fa.man_bits + fb.bias + fb.man_bits)),
            self.p.sign.eq(da.sign ^ db.sign),
            self.p.nan.eq(nan),
            self.p.inf.eq((da.inf | db.inf) & ~nan),
        ]
        return m
