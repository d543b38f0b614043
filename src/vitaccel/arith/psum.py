"""Lossy fixed-rate codecs for partial sums written to on-chip memory (DESIGN.md section 5).

Two codecs, both frozen dataclasses with ``bits`` (compressed width), ``value_bits`` (the width of
what they store), ``ratio = bits / value_bits``, ``encode`` -> integer codes, ``decode`` -> values,
``apply = decode(encode(x))`` (computed directly, same result) and ``error_bound(x)``:

* ``FloatCodec(exp_bits, man_bits, value_bits, bias=0, rounding="nearest_even")``: sign, an
  ``exp_bits`` shift field ``s`` and a ``man_bits`` field ``t`` that holds the leading one
  (stored, not hidden). Value ``(-1)^sign * t * 2^(s - bias)``. Encoding keeps ``man_bits``
  bits from the leading one of |x| (``nearest_even`` or ``toward_zero`` on the magnitude;
  a carry to ``2^man_bits`` renormalises), never a shift below 0 (so with ``bias=0`` every
  integer below ``2^man_bits`` is stored exactly with shift 0) and saturates at
  ``max_value``. Works on any real values: integers (partial sums, ``bias=0``) or scale
  factors (float32, ``value_bits=32``, a ``bias`` that puts their range inside the codec's).
* ``TruncCodec(drop_bits, value_bits, rounding="nearest")``: a two's complement integer with its
  low ``drop_bits`` dropped (``truncate`` = arithmetic shift right, i.e. floor; ``nearest`` =
  round half up), the kept field saturated to ``value_bits - drop_bits`` signed bits.

The config section that names one of them (YAML ``kind: float|trunc``) is ``config.CodecSpec``.
Codec errors name the parameter, its value and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vitaccel.arith import intpath
from vitaccel.arith.bits import describe, exponent, is_int, pow2
from vitaccel.errors import UserError

FLOAT_ROUNDINGS = ("nearest_even", "toward_zero")
TRUNC_ROUNDINGS = ("nearest", "truncate")


def _reals(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """float64 copy of a real tensor (integers included), refusing NaN/inf."""
    if not isinstance(x, torch.Tensor) or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name} must be a real tensor, got {describe(x)}")
    x64 = x.double() + 0.0                                      # -0 is stored as 0
    if x.dtype.is_floating_point and not bool(torch.isfinite(x64).all()):
        raise UserError(f"{name} holds NaN or inf; a codec stores finite values only")
    return x64


def _out(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Results keep a floating input's dtype (they are representable in it) and are float64 otherwise."""
    return y.to(like.dtype) if like.dtype.is_floating_point else y


@dataclass(frozen=True)
class FloatCodec:
    """Sign, shift and a man_bits field holding the leading one; see the module docstring."""

    exp_bits: int
    man_bits: int
    value_bits: int
    bias: int = 0
    rounding: str = "nearest_even"

    def __post_init__(self) -> None:
        _check_int(self, "exp_bits", 1, 8)
        _check_int(self, "man_bits", 1, 52)
        _check_int(self, "value_bits", 2, 64)
        _check_int(self, "bias", -500, 500)
        if self.rounding not in FLOAT_ROUNDINGS:
            raise UserError(f"rounding: value {self.rounding!r} is not allowed; choose one of {list(FLOAT_ROUNDINGS)}")
        if self.bits >= self.value_bits:
            raise UserError(f"man_bits: value {self.man_bits} is not allowed; the codec's 1 + {self.exp_bits} + "
                             f"{self.man_bits} = {self.bits} bits must be fewer than the {self.value_bits} bits of "
                             f"the value it stores")

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def ratio(self) -> float:
        return self.bits / self.value_bits

    @property
    def max_shift(self) -> int:
        return 2 ** self.exp_bits - 1

    @property
    def max_value(self) -> float:
        return float((2 ** self.man_bits - 1) * 2.0 ** (self.max_shift - self.bias))

    def _shift(self, mag: torch.Tensor) -> torch.Tensor:
        """The shift field that puts the leading one of float64 magnitudes at the top of t (clamped)."""
        return (exponent(mag) - (self.man_bits - 1) + self.bias).clamp(0, self.max_shift)

    def _fields(self, x64: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(negative, shift, t) of the encoding of float64 values; saturated at max_value."""
        mag = x64.abs()
        shift = self._shift(mag)
        n = mag * pow2(self.bias - shift)                      # exact: scaling by a power of two
        t = torch.round(n) if self.rounding == "nearest_even" else torch.trunc(n)
        carry = (t == 2 ** self.man_bits) & (shift < self.max_shift)
        t = torch.where(carry, 2.0 ** (self.man_bits - 1), t)
        shift = shift + carry.long()
        over = t >= 2 ** self.man_bits                         # only at the top shift: saturate
        t = torch.where(over, 2.0 ** self.man_bits - 1, t)
        return x64 < 0, shift, t.long()

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """int64 codes ``sign << (exp_bits + man_bits) | shift << man_bits | t``."""
        neg, shift, t = self._fields(_reals(x))
        return (neg.long() << (self.exp_bits + self.man_bits)) | (shift << self.man_bits) | t

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """float64 values of codes (exact)."""
        codes = intpath.integer_tensor(codes, "codes")
        t = codes & (2 ** self.man_bits - 1)
        shift = (codes >> self.man_bits) & self.max_shift
        value = t.double() * pow2(shift - self.bias)
        return torch.where((codes >> (self.exp_bits + self.man_bits)) & 1 == 1, -value, value)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))``, computed directly: x rounded at the quantum of its shift."""
        x64 = _reals(x)
        mag = x64.abs()
        quantum = pow2(self._shift(mag) - self.bias)
        n = mag / quantum                                       # exact: a power of two
        kept = (torch.round(n) if self.rounding == "nearest_even" else torch.trunc(n)) * quantum
        kept = kept.clamp(max=self.max_value)
        return _out(torch.where(x64 < 0, -kept, kept), x)

    def apply_(self, x: torch.Tensor) -> torch.Tensor:
        """``apply`` in place on a float tensor of integers within +-``max_value`` (partial sums).

        With bias 0 no shift is clamped for integers (those below 2^man_bits have at most man_bits
        bits, so shift 0 keeps them whole), and keeping man_bits bits from the leading one is a
        carry-propagating round of the float's bit pattern to its top man_bits significant bits:
        five integer operations, no saturation needed below max_value.
        """
        if self.bias != 0 or x.dtype not in (torch.float32, torch.float64):
            return x.copy_(self.apply(x))
        view, frac = (torch.int32, 23) if x.dtype == torch.float32 else (torch.int64, 52)
        d = frac + 1 - self.man_bits
        if d <= 0:
            return x
        bits = x.view(view)
        if self.rounding == "nearest_even":      # + 0.5 ulp - 1, + the kept LSB: ties go to even
            bits.add_(torch.bitwise_right_shift(bits, d).bitwise_and_(1).add_(2 ** (d - 1) - 1))
        bits.bitwise_and_(-(2 ** d))
        return x

    def error_bound(self, x: torch.Tensor) -> torch.Tensor:
        """Largest ``|apply(x) - x|`` allowed: half the quantum at x (``nearest_even``) or one
        quantum (``toward_zero``); beyond ``max_value`` the saturation error ``|x| - max_value``."""
        mag = _reals(x).abs()
        quantum = pow2(self._shift(mag) - self.bias)
        bound = quantum / 2 if self.rounding == "nearest_even" else quantum
        return torch.where(mag > self.max_value, mag - self.max_value, bound)


@dataclass(frozen=True)
class TruncCodec:
    """A two's complement integer without its low ``drop_bits``; see the module docstring."""

    drop_bits: int
    value_bits: int
    rounding: str = "nearest"

    def __post_init__(self) -> None:
        _check_int(self, "value_bits", 2, 64)
        _check_int(self, "drop_bits", 1, self.value_bits - 1)
        if self.rounding not in TRUNC_ROUNDINGS:
            raise UserError(f"rounding: value {self.rounding!r} is not allowed; choose one of {list(TRUNC_ROUNDINGS)}")

    @property
    def bits(self) -> int:
        return self.value_bits - self.drop_bits

    @property
    def ratio(self) -> float:
        return self.bits / self.value_bits

    @property
    def max_value(self) -> float:
        return float((2 ** (self.bits - 1) - 1) * 2 ** self.drop_bits)

    def _kept(self, x64: torch.Tensor) -> torch.Tensor:
        """The kept field of a fresh float tensor of integers (computed in place)."""
        return intpath.overflow_(intpath.drop_lsbs_(x64, self.drop_bits, self.rounding), self.bits, "saturate")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """int64 codes: the kept field as a ``bits``-wide two's complement bit pattern."""
        return self._kept(_integers(x)).long() & (2 ** self.bits - 1)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """float64 values of codes (sign-extended, shifted back)."""
        kept = intpath.overflow_(intpath.integer_tensor(codes, "codes") & (2 ** self.bits - 1), self.bits, "wrap")
        return kept.double() * 2.0 ** self.drop_bits

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))`` without forming codes."""
        return _out(self._kept(_integers(x)) * 2.0 ** self.drop_bits, x)

    def apply_(self, x: torch.Tensor) -> torch.Tensor:
        """``apply`` in place on a float tensor of integers (partial sums)."""
        return self._kept(x).mul_(2 ** self.drop_bits)

    def error_bound(self, x: torch.Tensor) -> torch.Tensor:
        """Largest ``|apply(x) - x|`` allowed for integers x: ``2^(d-1)`` (``nearest``) or
        ``2^d - 1`` (``truncate``); at the saturated ends the distance to the end value."""
        x64 = _integers(x)
        d = self.drop_bits
        bound = torch.full_like(x64, 2.0 ** (d - 1) if self.rounding == "nearest" else 2.0 ** d - 1)
        low = -(2.0 ** (self.bits - 1)) * 2 ** d
        return torch.maximum(bound, torch.maximum(x64 - self.max_value, low - x64))


def _integers(x: torch.Tensor) -> torch.Tensor:
    x64 = _reals(x)
    if not bool((x64 == torch.round(x64)).all()):
        raise UserError("x holds non-integer values; TruncCodec stores integers (use FloatCodec for reals)")
    return x64


def _check_int(obj: object, name: str, lo: int, hi: int) -> None:
    v = getattr(obj, name)
    if not is_int(v) or not lo <= v <= hi:
        raise UserError(f"{name}: value {v!r} is not allowed; an integer from {lo} to {hi} is required")


Codec = FloatCodec | TruncCodec
