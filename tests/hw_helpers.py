"""Shared helpers of the hw tests: golden references of circuit outputs, and ``Mul``, the small
component the synthesis tests build."""

from __future__ import annotations

import math
import struct
from fractions import Fraction

from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith import AcceleratorConfig, golden
from vitaccel.arith.formats import FloatFormat


def circuit_presets() -> list[str]:
    """The shipped presets the circuits build: all but fp32 (no circuit); the MX presets included."""
    return [p for p in AcceleratorConfig.presets() if p != "fp32"]


def product_value(fields: int, layout) -> object:
    """Golden-style value of a packed float-lane product (Fraction, +-inf, nan); zeros unsigned."""
    from amaranth.lib import data
    view = data.Const(layout, fields)
    if view.nan:
        return math.nan
    if view.inf:
        return -math.inf if view.sign else math.inf
    v = Fraction(view.sig) * Fraction(2) ** view.exp
    return -v if view.sign else v


def same_value(circuit: object, gold: object) -> bool:
    """Equality of golden values: NaN == NaN, zeros of either sign equal, exact otherwise."""
    if isinstance(gold, float) and math.isnan(gold):
        return isinstance(circuit, float) and math.isnan(circuit)
    if isinstance(gold, float) and math.isinf(gold):
        return circuit == gold
    return not (isinstance(circuit, float)) and Fraction(circuit) == Fraction(gold)


def f32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits & 0xFFFFFFFF))[0]


def f32_bits(x: float) -> int:
    """Bits of a float32 value; NaN canonical (the circuits' quiet NaN)."""
    return 0x7FC00000 if math.isnan(x) else struct.unpack("<I", struct.pack("<f", x))[0]


def golden_f32(v: object) -> int:
    """Bits of a golden float32 result (Fraction or float)."""
    return f32_bits(golden.to_float(v))


def decoded(fmt: FloatFormat, code: int) -> float:
    return golden.to_float(golden.decode(fmt, code))


class Mul(wiring.Component):
    """Exact signed ``bits`` x ``bits`` multiplier."""

    def __init__(self, bits: int = 8) -> None:
        super().__init__({"a": In(signed(bits)), "b": In(signed(bits)), "p": Out(signed(2 * bits))})

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.p.eq(self.a * self.b)
        return m
