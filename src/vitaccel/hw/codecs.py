"""Partial-sum codecs as circuits (DESIGN.md section 5): encoders, decoders and the round trip.

``FloatCodec``: sign, ``exp_bits`` shift, ``man_bits`` from the leading one (stored); ``TruncCodec``:
low bits dropped (nearest = half up, or truncate), kept field saturated. Golden: ``float_codec``,
``trunc_codec``, ``codec_apply``.
"""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.psum import Codec, FloatCodec, TruncCodec
from vitaccel.hw import common
from vitaccel.hw.common import absolute, check_width, clog2, drop_lsbs, leading_one, overflow, refuse

KEY = "int_datapath.psum_storage.codec"


def check_codec(codec: Codec, register_bits: int, key: str = KEY) -> None:
    """Refuse a codec the circuits cannot build for a ``register_bits`` signed register."""
    if codec.value_bits != register_bits:
        raise refuse(key, str(codec), f"a codec for the {register_bits}-bit register it stores is required "
                     f"(value_bits {codec.value_bits} != {register_bits})")
    if codec.bits >= register_bits:
        raise refuse(key, str(codec), f"its {codec.bits} stored bits must be fewer than the {register_bits} bits of "
                     "the register it stores")
    if isinstance(codec, FloatCodec):
        if codec.bias > 0:
            raise refuse(f"{key}.bias", codec.bias, "partial sums are integers: a bias <= 0 is required")
        check_width(f"{key}.exp_bits", decoded_bits(codec))


def decoded_bits(codec: Codec) -> int:
    """Signed width of a decoded value."""
    if isinstance(codec, TruncCodec):
        return codec.value_bits
    return codec.man_bits + codec.max_shift - codec.bias + 1


class FloatCodecEncoder(wiring.Component):
    """Signed ``value_bits`` integer -> ``1 + exp_bits + man_bits`` code ``sign | shift | t``."""

    def __init__(self, codec: FloatCodec) -> None:
        self.codec = codec
        super().__init__({"x": In(signed(codec.value_bits)), "code": Out(codec.bits)})

    def elaborate(self, platform) -> Module:
        m = Module()
        c, n = self.codec, self.codec.value_bits
        mbits, smax = c.man_bits, c.max_shift
        neg, mag = Signal(name="neg"), Signal(n, name="mag")
        m.d.comb += [neg.eq(self.x < 0), mag.eq(absolute(self.x))]
        pos = leading_one(m, mag, "lead")
        raw = Signal(signed(clog2(n) + clog2(abs(c.bias) + mbits) + 2), name="raw_shift")
        m.d.comb += raw.eq(pos - (mbits - 1) + c.bias)
        s = Signal(range(smax + 2), name="shift")
        m.d.comb += s.eq(Mux(raw < 0, 0, Mux(raw > smax, smax, raw)))
        drop = Signal(range(smax - c.bias + 1), name="drop")
        m.d.comb += drop.eq(s - c.bias)
        t = Signal(n + 1, name="t")
        if c.rounding == "nearest_even":
            y, sticky = common.shift_right_sticky(m, Cat(Const(0, 1), mag), drop, "align")
            kept = y[1:]
            m.d.comb += t.eq(kept + (y[0] & (sticky | kept[0])))
        else:
            m.d.comb += t.eq(mag >> drop)
        t2, s2 = Signal(n + 1, name="t_renorm"), Signal(range(smax + 2), name="shift_renorm")
        with m.If((t == 2 ** mbits) & (s < smax)):
            m.d.comb += [t2.eq(2 ** (mbits - 1)), s2.eq(s + 1)]
        with m.Else():
            m.d.comb += [t2.eq(t), s2.eq(s)]
        top = 2 ** mbits - 1
        m.d.comb += self.code.eq(Cat(Mux(t2 > top, top, t2)[:mbits], s2[:c.exp_bits], neg))
        return m


class FloatCodecDecoder(wiring.Component):
    """Code -> signed value ``(-1)^sign * t << (shift - bias)`` (exact, ``decoded_bits`` wide)."""

    def __init__(self, codec: FloatCodec) -> None:
        self.codec = codec
        super().__init__({"code": In(codec.bits), "x": Out(signed(decoded_bits(codec)))})

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self.codec
        t = self.code[:c.man_bits]
        s = self.code[c.man_bits:c.man_bits + c.exp_bits]
        mag = Signal(decoded_bits(self.codec), name="mag")
        m.d.comb += mag.eq((t << s) << (-c.bias))
        m.d.comb += self.x.eq(Mux(self.code[-1], -mag, mag))
        return m


class TruncCodecEncoder(wiring.Component):
    """Signed ``value_bits`` integer -> its ``value_bits - drop_bits`` kept field (rounded, saturated)."""

    def __init__(self, codec: TruncCodec) -> None:
        self.codec = codec
        super().__init__({"x": In(signed(codec.value_bits)), "code": Out(codec.bits)})

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self.codec
        dropped = Signal(signed(c.value_bits + 1), name="dropped")
        m.d.comb += dropped.eq(drop_lsbs(self.x, c.drop_bits, c.rounding))
        m.d.comb += self.code.eq(overflow(dropped, c.bits, "saturate"))
        return m


class TruncCodecDecoder(wiring.Component):
    """Kept field -> signed value ``field << drop_bits``."""

    def __init__(self, codec: TruncCodec) -> None:
        self.codec = codec
        super().__init__({"code": In(codec.bits), "x": Out(signed(codec.value_bits))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.x.eq(self.code.as_signed() << self.codec.drop_bits)
        return m


def encoder(codec: Codec) -> wiring.Component:
    return FloatCodecEncoder(codec) if isinstance(codec, FloatCodec) else TruncCodecEncoder(codec)


def decoder(codec: Codec) -> wiring.Component:
    return FloatCodecDecoder(codec) if isinstance(codec, FloatCodec) else TruncCodecDecoder(codec)


class CodecRoundTrip(wiring.Component):
    """What the accumulator reads back: ``overflow(decode(encode(x)), register_bits, mode)``."""

    def __init__(self, codec: Codec, register_bits: int, mode: str) -> None:
        check_codec(codec, register_bits)
        self.codec, self.mode = codec, mode
        super().__init__({"x": In(signed(register_bits)), "y": Out(signed(register_bits))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.encoder = enc = encoder(self.codec)
        m.submodules.decoder = dec = decoder(self.codec)
        m.d.comb += [enc.x.eq(self.x), dec.code.eq(enc.code), self.y.eq(overflow(dec.x, len(self.y), self.mode))]
        return m
