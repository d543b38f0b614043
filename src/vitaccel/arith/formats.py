"""Floating-point number formats, written as a readable spec (DESIGN.md section 2).

``FloatFormat(exp_bits, man_bits, bias, specials, subnormals, saturate, nan, signed)`` describes a
binary float of ``1 + exp_bits + man_bits`` bits (``exp_bits + man_bits`` with ``signed=False``), at
most 32. Values of a code (sign s, exponent field E, mantissa field M, m = man_bits):

* normal,    1 <= E <= Emax_field:  (-1)^s * (1 + M / 2^m) * 2^(E - bias)
* subnormal, E = 0:                 (-1)^s * (M / 2^m) * 2^(1 - bias)   (zero if not subnormals)
* specials="ieee":   E all ones is reserved: M = 0 is infinity, otherwise NaN.
* specials="fn":     (OCP E4M3) no infinities; only the all-ones code (per sign) is NaN;
                     overflow and infinities saturate to max (as ``torch.float8_e4m3fn``).
* specials="finite": no reserved codes; NaN input raises or maps to zero (``nan=``).
* specials="fnuz":   (``torch.float8_e4m3fnuz``/``e5m2fnuz``, bias 2^(exp_bits-1)) no infinities,
                     no -0: the code with only the sign bit set is the one NaN; a zero result is +0;
                     overflow, infinities and NaN give NaN (max with ``saturate=True``).
* specials="p3109":  (IEEE P3109 binary8pP: exp_bits = 8 - P, bias 2^(exp_bits-1), ``p3109(P)``)
                     the sign-bit-only code is the one NaN, no -0, the all-ones magnitude is
                     +-infinity; overflow as "ieee".
* specials="e8m0":   (the OCP MX scale format: ``e8m0`` = 8 exponent bits, m = 0, unsigned, bias
                     127) every field E but all ones is 2^(E - bias); all ones is NaN; no zero, no
                     infinity, no subnormals (``subnormals`` is stored as False). Magnitudes below
                     2^-bias (zero included) give 2^-bias in every rounding (no smaller value
                     exists); overflow and infinities give NaN (max with ``saturate=True``).

``signed=False`` drops the sign bit: a negative input (not -0, which gives +0) gives NaN where the
format has a NaN code and a ``UserError`` otherwise. Formats wider than 16 bits (``tf32`` = e8m10,
``fp24`` = 1-8-15, ``fp32`` = e8m23) hold their codes in int32 and decode arithmetically.

Rounding rules (x exact, q the format's quantum at |x|, the result one of the two neighbours of x):

* ``nearest_even``: the nearer; a tie to the even code (the even significand; with ``man_bits=0``,
  one value per binade, the even exponent field, as P3109 and gfloat do: e2m0 rounds 3 to 2).
* ``ties_away``: the nearer; a tie to the larger magnitude (C ``round``, QPyTorch's "nearest").
* ``toward_zero``: the smaller magnitude (what hardware does when it drops low bits).
* ``up`` / ``down``: toward +infinity / -infinity (IEEE roundTowardPositive / Negative).
* ``stochastic``: the larger magnitude iff (dropped fraction of q) + u >= 1, u = r / 2^n a draw
  with n = 62 bits by default; with ``stochastic_bits=n``, as hardware does it, only the top n
  bits of the dropped fraction are kept, t = floor(fraction * 2^n): up iff t + r >= 2^n (which is
  the default's rule too, with n = 62: r is an integer). The draws (``stochastic_draws``) come from
  the caller's ``torch.Generator``: one 64-bit seed drawn from it, and draw i of the flattened
  tensor the top n bits of a 64-bit word made of two 32-bit hashes of i keyed by the seed
  (``stochastic_draws``): counter-based, so every route, piece and device gives the same draws, and
  a float32 value and its float64 copy round alike.

Overflow (a rounded magnitude above max): ``specials="ieee"`` without ``saturate`` gives infinity
when the rounding moved the magnitude up or to the nearer (nearest, ties_away, stochastic, ``up``
for x > 0, ``down`` for x < 0) and max when it truncated (toward_zero, ``up`` for x < 0, ``down``
for x > 0), as IEEE 754 says; ``fn``/``finite`` formats and ``saturate=True`` give max.

With ``subnormals=False`` the format's values are 0 and the normals, and every rounding works on
that set: below min_normal the neighbours are 0 and min_normal (nearest_even: the nearer one, a
tie to 0; ties_away: a tie to min_normal; toward_zero: 0; up/down by the sign; stochastic:
min_normal with probability |x| / min_normal), never a rounding to the subnormal grid followed by
a flush.

Encoding works on the integer bit pattern of the input (``view(torch.int32)`` for float32,
``torch.int64`` for float64) and is correctly rounded for every input: no ``log2``/``pow``/
``floor`` on floats. Codes are int16 tensors holding the bit pattern (for 16-bit formats the
sign bit is the int16 sign bit, exactly as ``x.half().view(torch.int16)``), int32 tensors for
formats wider than 16 bits (32-bit: as ``x.view(torch.int32)``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from vitaccel.arith import _fastcast, _fastround
from vitaccel.errors import UserError

Rounding = Literal["nearest_even", "ties_away", "toward_zero", "up", "down", "stochastic"]
ROUNDINGS: tuple[str, ...] = ("nearest_even", "ties_away", "toward_zero", "up", "down", "stochastic")
SPECIALS: tuple[str, ...] = ("ieee", "fn", "finite", "fnuz", "p3109", "e8m0")
MAX_BITS = 32

_CHUNK = 2 ** 14  # elements per piece of the integer encoder: its int64 temporaries stay in cache

# Source formats we encode from: (exponent bits, mantissa bits, bit-view dtype).
_SOURCES = {
    torch.float32: (8, 23, torch.int32),
    torch.float64: (11, 52, torch.int64),
}


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format of at most 32 bits; see the module docstring."""

    exp_bits: int
    man_bits: int
    bias: int | None = None
    specials: str = "ieee"
    subnormals: bool = True
    saturate: bool = False
    nan: str = "raise"
    signed: bool = True

    def __post_init__(self) -> None:
        for name in ("exp_bits", "man_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if self.exp_bits < (1 if self.specials == "p3109" else 2):
            raise UserError(f"exp_bits={self.exp_bits} is not allowed: at least 2 exponent bits are required "
                             "(1 with specials='p3109')")
        if self.man_bits < 0:
            raise UserError(f"man_bits={self.man_bits} is not allowed: it must be >= 0")
        for name in ("subnormals", "saturate", "signed"):
            v = getattr(self, name)
            if not isinstance(v, bool):  # "no" and "false" are truthy: refuse anything but a bool
                raise TypeError(f"{name} must be a bool (True or False), got {type(v).__name__} {v!r}")
        if self.bits > MAX_BITS:
            raise UserError(f"{'1 + ' if self.signed else ''}exp_bits + man_bits = {self.bits} bits is not allowed: "
                             f"at most {MAX_BITS} bits in all")
        if self.man_bits > 23:
            raise UserError(f"man_bits={self.man_bits} is not allowed: at most 23 (every value must be a float32 "
                             "value)")
        if self.specials not in SPECIALS:
            raise UserError(f"specials={self.specials!r} is not allowed; choose one of {list(SPECIALS)}")
        if not self.signed and self.specials in ("fnuz", "p3109"):
            raise UserError(f"signed=False is not allowed with specials={self.specials!r}: its NaN is the "
                             "sign-bit-only code; use specials 'ieee', 'fn', 'finite' or 'e8m0'")
        if self.specials == "e8m0":
            if self.man_bits != 0 or self.signed:
                raise UserError(f"specials='e8m0' needs man_bits=0 and signed=False, got man_bits={self.man_bits}, "
                                 f"signed={self.signed}")
            object.__setattr__(self, "subnormals", False)  # every field is a power of two: none to have
        if self.specials in ("ieee", "fn") and self.man_bits < 1:
            raise UserError(f"man_bits={self.man_bits} is not allowed with specials={self.specials!r}: "
                             "NaN needs a mantissa bit; use man_bits >= 1 or specials='finite'")
        if self.nan not in ("raise", "zero"):
            raise UserError(f"nan={self.nan!r} is not allowed; choose 'raise' or 'zero'")
        if self.bias is None:
            object.__setattr__(self, "bias", 2 ** (self.exp_bits - 1) - 1)
        if not isinstance(self.bias, int) or isinstance(self.bias, bool):
            raise TypeError(f"bias must be an int, got {type(self.bias).__name__}")
        # Every value must be a float32 value and share float32's normal exponent range at the
        # bottom, so that decode is exact and encode from float32 needs no renormalisation (e8m0
        # encodes from float64, where 2^-149 .. 2^127 are all normal).
        if self.emin < (-149 if self.specials == "e8m0" else -126) or self.emax > 127:
            raise UserError(f"bias={self.bias} is not allowed for exp_bits={self.exp_bits}: the format's "
                             f"exponents [{self.emin}, {self.emax}] must lie within float32's [-126, 127]")

    # -- the spec, as numbers ------------------------------------------------------------
    @staticmethod
    def named(name: str) -> "FloatFormat":
        """A named format: e5m7 (FP13), e5m10 (IEEE half), e8m7 (bfloat16), e5m2, e4m3 (OCP, fn),
        e4m3fnuz, e5m2fnuz, binary8p1 .. binary8p7 (P3109), e8m0 (OCP MX scale), ue4m3 (unsigned
        e4m3, fn), tf32 (e8m10), fp24 (e8m15), fp32 (e8m23, IEEE single); fp16 and bf16 are other
        names of e5m10 and e8m7."""
        if name not in NAMED:
            raise UserError(f"format name {name!r} is unknown; choose one of {sorted(NAMED)}")
        return NAMED[name]

    @property
    def name(self) -> str:
        for key, fmt in NAMED.items():
            if fmt == self:
                return key
        return f"e{self.exp_bits}m{self.man_bits}"

    @property
    def bits(self) -> int:
        return int(self.signed) + self.exp_bits + self.man_bits

    @property
    def code_dtype(self) -> torch.dtype:
        """Integer dtype of the codes: int16 up to 16 bits, int32 above."""
        return torch.int16 if self.bits <= 16 else torch.int32

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal value (e8m0: of its smallest value, field 0)."""
        return -self.bias if self.specials == "e8m0" else 1 - self.bias

    @property
    def negative_zero(self) -> bool:
        """Whether -0 is a value (not in fnuz and p3109, whose sign-bit-only code is NaN, nor in
        unsigned formats)."""
        return self.signed and self.specials not in ("fnuz", "p3109")

    @property
    def _top_field(self) -> int:
        """Largest exponent field that holds finite values."""
        all_ones = 2 ** self.exp_bits - 1
        return all_ones - 1 if self.specials in ("ieee", "e8m0") else all_ones

    @property
    def emax(self) -> int:
        return self._top_field - self.bias

    @property
    def max_code(self) -> int:
        """Code (magnitude bits) of the largest finite value."""
        if self.specials == "e8m0":
            return self._top_field
        top_man = 2 ** self.man_bits - 1
        if self.specials in ("fn", "p3109"):
            top_man -= 1  # the all-ones code is NaN (fn) or infinity (p3109)
        return (self._top_field << self.man_bits) + top_man  # (binary8p1: the code below infinity)

    @property
    def inf_code(self) -> int | None:
        if self.specials == "p3109":
            return 2 ** (self.exp_bits + self.man_bits) - 1
        return (2 ** self.exp_bits - 1) << self.man_bits if self.specials == "ieee" else None

    @property
    def nan_code(self) -> int | None:
        """The NaN code (fnuz and p3109: the whole code, sign bit included; else the magnitude)."""
        if self.specials == "ieee":
            return self.inf_code | (1 << (self.man_bits - 1))
        if self.specials in ("fn", "e8m0"):
            return 2 ** (self.exp_bits + self.man_bits) - 1
        if self.specials in ("fnuz", "p3109"):
            return 1 << (self.exp_bits + self.man_bits)
        return None

    @functools.cached_property
    def max(self) -> float:
        return float(self.decode(torch.tensor([self.max_code]))[0])

    @property
    def min_normal(self) -> float:
        return 2.0 ** self.emin

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.man_bits) if self.subnormals else self.min_normal

    @property
    def eps(self) -> float:
        """Unit roundoff for nearest rounding: half the gap between 1 and the next value."""
        return 2.0 ** (-self.man_bits - 1)

    # -- decode ---------------------------------------------------------------------------
    def decode(self, codes: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        """Float32 values of ``codes`` (an integer tensor or NumPy array of bit patterns; a NumPy
        array in gives one out). Up to 16 bits by a table of every code, wider bitwise."""
        if isinstance(codes, np.ndarray):
            return self.decode(torch.from_numpy(np.ascontiguousarray(codes))).numpy()
        if not isinstance(codes, torch.Tensor) or codes.dtype.is_floating_point or codes.dtype == torch.bool \
                or codes.is_complex():
            raise TypeError(f"codes must be an integer tensor, got {getattr(codes, 'dtype', type(codes))}")
        codes = codes.long() & (2 ** self.bits - 1)
        if self.bits > 16:
            return _decode_values(self, codes)
        return _decode_table(self, codes.device)[codes]

    # -- encode ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor | np.ndarray, rounding: str = "nearest_even",
               generator: torch.Generator | None = None, *,
               stochastic_bits: int | None = None) -> torch.Tensor | np.ndarray:
        """Codes (``code_dtype``: int16, int32 above 16 bits) of ``x`` rounded to this format
        (correctly rounded; see module doc). A NumPy array in gives a NumPy array out."""
        if isinstance(x, np.ndarray):
            return self.encode(_from_numpy(x), rounding, generator, stochastic_bits=stochastic_bits).numpy()
        x = _check_float_input(x)
        _check_rounding(rounding, generator, stochastic_bits)
        seed = _seed(generator) if rounding == "stochastic" else None
        return self._encode_all(x, rounding, seed, stochastic_bits)

    def _encode_all(self, x: torch.Tensor, rounding: str, seed: int | None,
                    stochastic_bits: int | None) -> torch.Tensor:
        """``encode`` of a checked ``x``, stochastic rounding with the draws of ``seed``."""
        if self.specials == "e8m0":
            x = x.double()  # exact; no float32 subnormals among values near e8m0's bottom
        draws = None
        if rounding == "stochastic":
            draws = _stream(seed, x.numel(), 62 if stochastic_bits is None else stochastic_bits, x.device)
        flat, out = x.reshape(-1), torch.empty(x.numel(), dtype=self.code_dtype, device=x.device)
        for start in range(0, flat.numel(), _CHUNK):  # cache-sized pieces: same codes, less memory traffic
            stop = start + _CHUNK
            out[start:stop] = self._encode(flat[start:stop], rounding, stochastic_bits,
                                           None if draws is None else draws[start:stop])
        return out.view(x.shape)

    def _encode(self, x: torch.Tensor, rounding: str, stochastic_bits: int | None,
                draws: torch.Tensor | None) -> torch.Tensor:
        """``encode`` of a 1-D piece of ``x``, with its stochastic ``draws``."""
        ebits, mbits, idt = _SOURCES[x.dtype]
        src_bias = 2 ** (ebits - 1) - 1
        m = self.man_bits
        bits = x.view(idt).to(torch.int64) if idt != torch.int64 else x.view(torch.int64)
        sign_shift = ebits + mbits
        sign = (bits >> sign_shift) & 1
        mag = bits & ((1 << sign_shift) - 1)
        negative = None
        if not self.signed:  # no sign bit: -0 is +0, a negative value is NaN (or an error) below
            negative = (sign == 1) & (mag != 0)
            sign = torch.zeros_like(sign)
        exp_field = mag >> mbits
        frac = mag & ((1 << mbits) - 1)
        all_ones = (1 << ebits) - 1
        is_nan = (exp_field == all_ones) & (frac != 0)
        is_inf = (exp_field == all_ones) & (frac == 0)

        # value = sig * 2^(e - mbits) with e the unbiased exponent (source subnormals: e = emin_src)
        e = torch.clamp(exp_field, min=1) - src_bias
        sig = torch.where(exp_field > 0, frac | (1 << mbits), frac)
        # the target quantum is 2^(max(e, emin) - m); drop `shift` low bits of sig to reach it
        # the target quantum is 2^(max(e, emin) - m), or 2^emin below min_normal without subnormals
        # (there the neighbours are 0 and min_normal); drop `shift` low bits of sig to reach it
        full_shift = torch.clamp(e, min=self.emin) - m - (e - mbits)
        tiny = (e < self.emin) | (exp_field == 0)  # below min_normal (source subnormals: e is their emin)
        if not self.subnormals:
            full_shift = torch.where(tiny, full_shift + m, full_shift)
        shift = torch.clamp(full_shift, max=62)  # sig < 2^53: shifting by 62 already leaves 0
        kept = sig >> shift
        rem = sig - (kept << shift)
        base = torch.clamp(e - self.emin, min=0) << m  # the code is base + kept (kept << m below min_normal
        # without subnormals); e8m0 has no zero below its field 0: there the code is base + kept - 1
        offset = -1 if self.specials == "e8m0" else 0
        inexact = shift > 0  # shift 0 (a 23-bit mantissa from float32) keeps every bit
        half = torch.ones_like(shift) << torch.clamp(shift - 1, min=0)
        if rounding == "nearest_even":                 # ties go to the even code
            odd = ((base + kept + offset) & 1) == 1
            kept = kept + (inexact & ((rem > half) | ((rem == half) & odd))).to(torch.int64)
        elif rounding == "ties_away":
            kept = kept + (inexact & (rem >= half)).to(torch.int64)
        elif rounding in ("up", "down"):  # the magnitude goes up where x lies on that side of zero
            kept = kept + ((rem != 0) & (sign == (0 if rounding == "up" else 1))).to(torch.int64)
        elif rounding == "stochastic":
            # t = floor(rem * 2^n / 2^full_shift), the top n (62 by default) bits of the dropped
            # fraction; up iff t + draw >= 2^n
            n = 62 if stochastic_bits is None else stochastic_bits
            t = torch.where(full_shift >= n, rem >> torch.clamp(full_shift - n, min=0, max=62),
                            rem << torch.clamp(n - full_shift, min=0))
            kept = kept + ((t + draws) >> n)
        if not self.subnormals:
            kept = torch.where(tiny, kept << m, kept)
        code = base + kept  # a carry out of the mantissa lands in the exponent
        if offset:
            code = torch.clamp(code + offset, min=0)  # below 2^emin: the smallest value, field 0

        over = code > self.max_code
        if rounding in ("up", "down"):  # overflow past max unless the rounding truncated
            past = over & (sign == (0 if rounding == "up" else 1))
        else:
            past = over if rounding != "toward_zero" else torch.zeros_like(over)
        code = torch.where(over, self.max_code, code)
        if not self.saturate and self.inf_code is not None:
            code = torch.where(past, self.inf_code, code)

        if self.specials in ("fnuz", "p3109", "e8m0"):  # no -0; one NaN code (fnuz, e8m0: also overflow, inf)
            if self.specials in ("fnuz", "e8m0"):
                if not self.saturate:
                    is_nan = is_nan | is_inf | past
                code = torch.where(is_inf, self.max_code, code)
            else:
                code = torch.where(is_inf, self.inf_code, code)
            sign = torch.where((code == 0) | is_nan, 0, sign)
            code = torch.where(is_nan, self.nan_code, code)
        elif self.specials == "ieee":
            code = torch.where(is_inf, self.inf_code, code)
            code = torch.where(is_nan, self.nan_code, code)
        else:  # fn and finite have no infinity: it saturates (as torch.float8_e4m3fn does)
            code = torch.where(is_inf, self.max_code, code)
            if self.specials == "fn":
                code = torch.where(is_nan, self.nan_code, code)
            elif bool(is_nan.any()):
                if self.nan == "raise":
                    raise UserError(f"x holds NaN, which format e{self.exp_bits}m{self.man_bits} with "
                                     "specials='finite' cannot store; pass nan='zero' to map NaN to 0")
                code = torch.where(is_nan, 0, code)
                sign = torch.where(is_nan, 0, sign)
        if negative is not None and bool(negative.any()):
            if self.nan_code is None:
                raise UserError(f"x holds negative values, which the unsigned format {self.name} cannot store "
                                 "and it has no NaN code for them; pass non-negative values or use a signed format")
            code = torch.where(negative, self.nan_code, code)
        code = code | (sign << (self.exp_bits + m))
        return code.to(self.code_dtype)

    def quantize(self, x: torch.Tensor | np.ndarray, rounding: str = "nearest_even",
                 generator: torch.Generator | None = None, *, stochastic_bits: int | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor | np.ndarray:
        """``decode(encode(x))``: ``x`` rounded to this format, as ``dtype`` (a NumPy array in gives
        a float32 NumPy array out).

        ``dtype`` (float32 by default) may be any float dtype that holds every value of the format
        exactly, e.g. ``torch.bfloat16`` for FP13: half the memory of float32, the same values.
        For a float32 (or half, bfloat16) CPU ``x`` the CPU speed routes give the encoder's bits
        without running it: a native cast where it is provably exact for nearest_even and faster
        (``_fastcast.quantize``: half and bfloat16, FP13 and the like for a 16-bit ``dtype``),
        else one fused loop per element (``_fastround.quantize``, every format
        and rounding, stochastic with the encoder's draws). The integer encoder runs for the rest
        (float64 input, other devices).
        """
        if isinstance(x, np.ndarray):
            return self.quantize(_from_numpy(x), rounding, generator, stochastic_bits=stochastic_bits).numpy()
        x = _check_float_input(x)
        _check_holds(self, dtype)
        _check_rounding(rounding, generator, stochastic_bits)
        seed = _seed(generator) if rounding == "stochastic" else None
        q = None
        if rounding == "nearest_even" and x.dtype == torch.float32 and _fastcast.faster(self, x, dtype):
            q = _fastcast.quantize(self, x)
        if q is None and _fastround.applies(x):
            q = _fastround.quantize(self, x, rounding, seed, stochastic_bits)
        if q is None:
            q = self.decode(self._encode_all(x, rounding, seed, stochastic_bits))
        return q if q.dtype == dtype else q.to(dtype)

    def __repr__(self) -> str:
        return (f"FloatFormat(exp_bits={self.exp_bits}, man_bits={self.man_bits}, bias={self.bias}, "
                f"specials={self.specials!r}, subnormals={self.subnormals}, saturate={self.saturate}"
                + (")" if self.signed else ", signed=False)"))


def _from_numpy(x: np.ndarray) -> torch.Tensor:
    if x.dtype.kind != "f":
        raise TypeError(f"x must be a real floating-point array (float16, float32 or float64), got dtype {x.dtype}")
    return torch.from_numpy(np.ascontiguousarray(x))


def _check_float_input(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex() or not x.dtype.is_floating_point:
        raise TypeError(f"x must be a real floating-point tensor (float16, bfloat16, float32 or float64), "
                        f"got dtype {x.dtype}")
    if x.dtype not in _SOURCES:
        x = x.float()  # float16/bfloat16 (and fp8) convert to float32 exactly
    if x.requires_grad:  # rounding has no useful gradient (emulate offers grad="ste")
        x = x.detach()
    return x.contiguous()


def stochastic_draws(shape: int | tuple[int, ...], generator: torch.Generator, stochastic_bits: int | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
    """The draws of stochastic rounding, as ``quantize`` and ``encode`` make them with ``generator``
    for a tensor of ``shape``: int64, below 2^62 (or 2^stochastic_bits). One 64-bit seed is drawn
    from the generator (two 32-bit ``torch.randint`` draws, high half first). Draw i (the flat
    index of the element, i = h 2^32 + c) is the top 62 (or n) bits of the 64-bit word T 2^32 + L,
    T = H(c, k1, k2) and L = H(c, k3, k4): H is Wellons' lowbias32 of c xor its first key with the
    second xored in between its multiplies, and k1 k2 (k3 k4) are the low and high halves of
    splitmix64(seed + (2h + 1) 0x9E3779B97F4A7C15) (of 2h + 2). A counter-based stream: pieces,
    routes and devices give the same draws; the CPU loop needs only the 32-bit T where the top 32
    bits decide (``_fastround``)."""
    numel = shape if isinstance(shape, int) else int(np.prod(shape, dtype=np.int64))
    draws = _stream(_seed(generator), numel, 62 if stochastic_bits is None else stochastic_bits, device)
    return draws if isinstance(shape, int) else draws.view(shape)


def _seed(generator: torch.Generator) -> int:
    """The stream's 64-bit seed, drawn from ``generator``."""
    hi, lo = torch.randint(0, 2 ** 32, (2,), generator=generator, dtype=torch.int64,
                           device=generator.device).tolist()
    return (hi << 32) | lo


def _stream(seed: int, numel: int, bits: int, device: torch.device | str) -> torch.Tensor:
    """Draws 0 .. numel-1 of ``seed``'s stream (see ``stochastic_draws``), in int64 arithmetic on
    32-bit words (each product masked to its low 32 bits); ``_fastround``'s loop computes the same
    numbers element by element."""
    def signed(v: int) -> int:
        return v - 2 ** 64 if v >= 2 ** 63 else v

    def mix64(z: torch.Tensor) -> torch.Tensor:  # splitmix64's finaliser, logical shifts as masked ones
        z = (z ^ ((z >> 30) & (2 ** 34 - 1))) * signed(_fastround.MIX1)
        z = (z ^ ((z >> 27) & (2 ** 37 - 1))) * signed(_fastround.MIX2)
        return z ^ ((z >> 31) & (2 ** 33 - 1))

    def lowbias(c: torch.Tensor, k1: torch.Tensor, k2: torch.Tensor) -> torch.Tensor:
        x = c ^ k1
        x = ((x ^ (x >> 16)) * _fastround.HASH1) & 0xFFFFFFFF
        x = (((x ^ (x >> 15)) ^ k2) * _fastround.HASH2) & 0xFFFFFFFF
        return x ^ (x >> 15)

    i = torch.arange(numel, dtype=torch.int64, device=device)
    c, h = i & 0xFFFFFFFF, i >> 32
    z0 = mix64((2 * h + 1) * signed(_fastround.GAMMA) + signed(seed))
    z1 = mix64((2 * h + 2) * signed(_fastround.GAMMA) + signed(seed))
    top = lowbias(c, z0 & 0xFFFFFFFF, (z0 >> 32) & 0xFFFFFFFF)
    if bits <= 32:
        return top >> (32 - bits)
    low = lowbias(c, z1 & 0xFFFFFFFF, (z1 >> 32) & 0xFFFFFFFF)
    return (top << (bits - 32)) | (low >> (64 - bits))


def _check_rounding(rounding: str, generator: torch.Generator | None, stochastic_bits: int | None) -> None:
    if rounding not in ROUNDINGS:
        raise UserError(f"rounding={rounding!r} is not allowed; choose one of {list(ROUNDINGS)}")
    if rounding == "stochastic" and generator is None:
        raise UserError("rounding='stochastic' needs generator=torch.Generator() (seeded) for reproducible results")
    if stochastic_bits is not None:
        if rounding != "stochastic":
            raise UserError(f"stochastic_bits={stochastic_bits!r} is only allowed with rounding='stochastic', "
                             f"not rounding={rounding!r}")
        if not isinstance(stochastic_bits, int) or isinstance(stochastic_bits, bool) \
                or not 1 <= stochastic_bits <= 62:
            raise UserError(f"stochastic_bits={stochastic_bits!r} is not allowed; choose an int from 1 to 62")


_RESULT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.float8_e5m2, torch.float8_e4m3fn)


@functools.lru_cache(maxsize=None)
def _holds(fmt: FloatFormat, dtype: torch.dtype) -> bool:
    """Whether ``dtype`` stores every value of ``fmt`` exactly: checked on all of fmt's codes (above
    16 bits only float32 and float64 can: a 16-bit dtype has fewer values than the format)."""
    if fmt.bits > 16:
        return dtype in (torch.float32, torch.float64)
    table = _decode_table_cpu(fmt)
    back = table.to(dtype).float()
    return bool(torch.equal(back.isnan(), table.isnan())
                and torch.equal(back.nan_to_num().view(torch.int32), table.nan_to_num().view(torch.int32)))


def _check_holds(fmt: FloatFormat, dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or dtype not in _RESULT_DTYPES or not _holds(fmt, dtype):
        allowed = [str(d) for d in _RESULT_DTYPES if _holds(fmt, d)]
        raise UserError(f"dtype={dtype} cannot hold every value of {fmt.name}; choose one of {allowed}")


@functools.lru_cache(maxsize=None)
def _decode_table_cpu(fmt: FloatFormat) -> torch.Tensor:
    """Float32 value of every code of a format of at most 16 bits."""
    return _decode_values(fmt, torch.arange(2 ** fmt.bits, dtype=torch.int64))


def _decode_values(fmt: FloatFormat, codes: torch.Tensor) -> torch.Tensor:
    """Float32 values of int64 ``codes`` (in [0, 2^bits)), from the spec with integer arithmetic
    (exact: every value is a float32 value, formed in float64 as significand * 2^k)."""
    m = fmt.man_bits
    mag_bits = fmt.exp_bits + m
    sign = (codes >> mag_bits) & 1 if fmt.signed else torch.zeros_like(codes)
    magnitude = codes & (2 ** mag_bits - 1)
    e_field = magnitude >> m
    man = codes & (2 ** m - 1)
    if fmt.specials == "e8m0":  # 2^(E - bias) for every field E
        sig, k = torch.ones_like(codes).double(), e_field - fmt.bias
    else:  # |value| = (e_field ? 2^m + man : man) * 2^(max(e_field, 1) - bias - m)
        sig = torch.where(e_field > 0, man + 2 ** m, man).double()
        if not fmt.subnormals:
            sig = torch.where(e_field > 0, sig, 0.0)
        k = torch.clamp(e_field, min=1) - fmt.bias - m
    value = sig * ((k + 1023) << 52).view(torch.float64)  # 2^k, exact
    if fmt.specials == "ieee":
        top = e_field == 2 ** fmt.exp_bits - 1
        value = torch.where(top & (man == 0), torch.inf, value)
        value = torch.where(top & (man != 0), torch.nan, value)
    elif fmt.specials in ("fn", "e8m0"):
        value = torch.where(magnitude == fmt.nan_code, torch.nan, value)
    elif fmt.specials == "p3109":
        value = torch.where(magnitude == fmt.inf_code, torch.inf, value)
    value = torch.where(sign == 1, -value, value)
    if fmt.specials in ("fnuz", "p3109"):
        value = torch.where(codes == fmt.nan_code, torch.nan, value)
    return value.float()


_TABLES: dict = {}


def _decode_table(fmt: FloatFormat, device: torch.device) -> torch.Tensor:
    key = (fmt, str(device))
    if key not in _TABLES:
        _TABLES[key] = _decode_table_cpu(fmt).to(device)
    return _TABLES[key]


NAMED: dict[str, FloatFormat] = {
    "e5m7": FloatFormat(5, 7),
    "e5m10": FloatFormat(5, 10),
    "e8m7": FloatFormat(8, 7),
    "e5m2": FloatFormat(5, 2),
    "e4m3": FloatFormat(4, 3, specials="fn"),
    "e4m3fnuz": FloatFormat(4, 3, bias=8, specials="fnuz"),
    "e5m2fnuz": FloatFormat(5, 2, bias=16, specials="fnuz"),
}


def p3109(precision: int) -> FloatFormat:
    """IEEE P3109 binary8p{precision} (precision 1..7): 8 bits, ``8 - precision`` exponent bits,
    bias 2^(7 - precision), subnormals, one NaN (0x80), +-infinity (0x7F, 0xFF), no -0."""
    if not isinstance(precision, int) or isinstance(precision, bool) or not 1 <= precision <= 7:
        raise UserError(f"precision={precision!r} is not allowed; choose an int from 1 to 7")
    return FloatFormat(8 - precision, precision - 1, bias=2 ** (7 - precision), specials="p3109")


NAMED.update({f"binary8p{p}": p3109(p) for p in range(1, 8)})
NAMED.update({
    "e8m0": FloatFormat(8, 0, bias=127, specials="e8m0", signed=False),  # OCP MX v1.0 scale
    "ue4m3": FloatFormat(4, 3, specials="fn", signed=False),             # e4m3 without its sign bit: 7 bits
    "tf32": FloatFormat(8, 10),                                          # NVIDIA TensorFloat-32, 19 bits
    "fp24": FloatFormat(8, 15),                                          # 1-8-15: float32's range, 16-bit significand
    "fp32": FloatFormat(8, 23),                                          # IEEE binary32
    "fp16": FloatFormat(5, 10),                                          # = e5m10 (its name stays e5m10)
    "bf16": FloatFormat(8, 7),                                           # = e8m7
})

FP13: FloatFormat = NAMED["e5m7"]
"""The 13-bit 1-5-7 float: FP16 with its three low mantissa bits removed; max 65280."""
