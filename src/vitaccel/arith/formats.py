"""Floating-point number formats, written as a readable spec (DESIGN.md section 2).

``FloatFormat(exp_bits, man_bits, bias, specials, subnormals, saturate)`` describes a binary
float of ``1 + exp_bits + man_bits`` bits. Values of a code (sign s, exponent field E, mantissa
field M, m = man_bits):

* normal,    1 <= E <= Emax_field:  (-1)^s * (1 + M / 2^m) * 2^(E - bias)
* subnormal, E = 0:                 (-1)^s * (M / 2^m) * 2^(1 - bias)   (zero if not subnormals)
* specials="ieee":   E all ones is reserved: M = 0 is infinity, otherwise NaN.
* specials="fn":     (OCP E4M3) no infinities; only the all-ones code (per sign) is NaN;
                     overflow and infinities saturate to max (as ``torch.float8_e4m3fn``).
* specials="finite": no reserved codes; NaN input raises or maps to zero (``nan=``).

Encoding works on the integer bit pattern of the input (``view(torch.int32)`` for float32,
``torch.int64`` for float64) and is correctly rounded for every input: no ``log2``/``pow``/
``floor`` on floats. Codes are int16 tensors holding the bit pattern (for 16-bit formats the
sign bit is the int16 sign bit, exactly as ``x.half().view(torch.int16)``).
"""

from __future__ import annotations

import functools
import math
import threading
from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import torch

Rounding = Literal["nearest_even", "toward_zero", "stochastic"]
ROUNDINGS: tuple[str, ...] = ("nearest_even", "toward_zero", "stochastic")
SPECIALS: tuple[str, ...] = ("ieee", "fn", "finite")

# Source formats we encode from: (exponent bits, mantissa bits, bit-view dtype).
_SOURCES = {
    torch.float32: (8, 23, torch.int32),
    torch.float64: (11, 52, torch.int64),
}


@dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format of at most 16 bits; see the module docstring."""

    exp_bits: int
    man_bits: int
    bias: int | None = None
    specials: str = "ieee"
    subnormals: bool = True
    saturate: bool = False
    nan: str = "raise"

    def __post_init__(self) -> None:
        for name in ("exp_bits", "man_bits"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise TypeError(f"{name} must be an int, got {type(v).__name__}")
        if self.exp_bits < 2:
            raise ValueError(f"exp_bits={self.exp_bits} is not allowed: at least 2 exponent bits are required")
        if self.man_bits < 0:
            raise ValueError(f"man_bits={self.man_bits} is not allowed: it must be >= 0")
        if self.bits > 16:
            raise ValueError(f"1 + exp_bits + man_bits = {self.bits} bits is not allowed: at most 16 bits in all")
        if self.specials not in SPECIALS:
            raise ValueError(f"specials={self.specials!r} is not allowed; choose one of {list(SPECIALS)}")
        if self.specials != "finite" and self.man_bits < 1:
            raise ValueError(f"man_bits={self.man_bits} is not allowed with specials={self.specials!r}: "
                             "NaN needs a mantissa bit; use man_bits >= 1 or specials='finite'")
        if self.nan not in ("raise", "zero"):
            raise ValueError(f"nan={self.nan!r} is not allowed; choose 'raise' or 'zero'")
        if self.bias is None:
            object.__setattr__(self, "bias", 2 ** (self.exp_bits - 1) - 1)
        if not isinstance(self.bias, int) or isinstance(self.bias, bool):
            raise TypeError(f"bias must be an int, got {type(self.bias).__name__}")
        # Every value must be a float32 value and share float32's normal exponent range at the
        # bottom, so that decode is exact and encode from float32 needs no renormalisation.
        if self.emin < -126 or self.emax > 127:
            raise ValueError(f"bias={self.bias} is not allowed for exp_bits={self.exp_bits}: the format's "
                             f"exponents [{self.emin}, {self.emax}] must lie within float32's [-126, 127]")

    # -- the spec, as numbers ------------------------------------------------------------
    @staticmethod
    def named(name: str) -> "FloatFormat":
        """A named format: e5m7 (FP13), e5m10 (IEEE half), e8m7 (bfloat16), e5m2, e4m3 (OCP, fn)."""
        if name not in NAMED:
            raise ValueError(f"format name {name!r} is unknown; choose one of {sorted(NAMED)}")
        return NAMED[name]

    @property
    def name(self) -> str:
        for key, fmt in NAMED.items():
            if fmt == self:
                return key
        return f"e{self.exp_bits}m{self.man_bits}"

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal value."""
        return 1 - self.bias

    @property
    def _top_field(self) -> int:
        """Largest exponent field that holds finite values."""
        all_ones = 2 ** self.exp_bits - 1
        return all_ones - 1 if self.specials == "ieee" else all_ones

    @property
    def emax(self) -> int:
        return self._top_field - self.bias

    @property
    def max_code(self) -> int:
        """Code (magnitude bits) of the largest finite value."""
        top_man = 2 ** self.man_bits - 1
        if self.specials == "fn":
            top_man -= 1  # the all-ones code is NaN
        return (self._top_field << self.man_bits) | top_man

    @property
    def inf_code(self) -> int | None:
        return (2 ** self.exp_bits - 1) << self.man_bits if self.specials == "ieee" else None

    @property
    def nan_code(self) -> int | None:
        if self.specials == "ieee":
            return self.inf_code | (1 << (self.man_bits - 1))
        if self.specials == "fn":
            return 2 ** (self.exp_bits + self.man_bits) - 1
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
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Float32 values of ``codes`` (an integer tensor of bit patterns)."""
        if not isinstance(codes, torch.Tensor) or codes.dtype.is_floating_point or codes.dtype == torch.bool \
                or codes.is_complex():
            raise TypeError(f"codes must be an integer tensor, got {getattr(codes, 'dtype', type(codes))}")
        table = _decode_table(self, codes.device)
        return table[codes.long() & (2 ** self.bits - 1)]

    # -- encode ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, rounding: str = "nearest_even",
               generator: torch.Generator | None = None) -> torch.Tensor:
        """Int16 codes of ``x`` rounded to this format (correctly rounded; see module doc)."""
        x = _check_float_input(x)
        _check_rounding(rounding, generator)
        ebits, mbits, idt = _SOURCES[x.dtype]
        src_bias = 2 ** (ebits - 1) - 1
        m = self.man_bits
        bits = x.view(idt).to(torch.int64) if idt != torch.int64 else x.view(torch.int64)
        sign_shift = ebits + mbits
        sign = (bits >> sign_shift) & 1
        mag = bits & ((1 << sign_shift) - 1)
        exp_field = mag >> mbits
        frac = mag & ((1 << mbits) - 1)
        all_ones = (1 << ebits) - 1
        is_nan = (exp_field == all_ones) & (frac != 0)
        is_inf = (exp_field == all_ones) & (frac == 0)

        # value = sig * 2^(e - mbits) with e the unbiased exponent (source subnormals: e = emin_src)
        e = torch.clamp(exp_field, min=1) - src_bias
        sig = torch.where(exp_field > 0, frac | (1 << mbits), frac)
        # the target quantum is 2^(max(e, emin) - m); drop `shift` low bits of sig to reach it
        shift = torch.clamp(torch.clamp(e, min=self.emin) - m - (e - mbits), max=62)
        kept = sig >> shift
        rem = sig - (kept << shift)
        if rounding == "nearest_even":
            half = torch.ones_like(shift) << (shift - 1)
            kept = kept + ((rem > half) | ((rem == half) & ((kept & 1) == 1))).to(torch.int64)
        elif rounding == "stochastic":
            rand = torch.randint(0, 2 ** 62, sig.shape, generator=generator, dtype=torch.int64, device=sig.device)
            rand = rand & ((torch.ones_like(shift) << shift) - 1)
            kept = kept + ((rem + rand) >> shift)
        # code = (max(e - emin, 0) << m) + kept: a carry out of the mantissa lands in the exponent
        code = (torch.clamp(e - self.emin, min=0) << m) + kept

        over = code > self.max_code
        if self.specials == "ieee" and not self.saturate and rounding != "toward_zero":
            code = torch.where(over, self.inf_code, code)
        else:  # no infinity to round to (fn, finite), or saturation asked for
            code = torch.where(over, self.max_code, code)
        if not self.subnormals:
            code = torch.where(code < (1 << m), 0, code)

        if self.specials == "ieee":
            code = torch.where(is_inf, self.inf_code, code)
            code = torch.where(is_nan, self.nan_code, code)
        else:  # fn and finite have no infinity: it saturates (as torch.float8_e4m3fn does)
            code = torch.where(is_inf, self.max_code, code)
            if self.specials == "fn":
                code = torch.where(is_nan, self.nan_code, code)
            elif bool(is_nan.any()):
                if self.nan == "raise":
                    raise ValueError(f"x holds NaN, which format e{self.exp_bits}m{self.man_bits} with "
                                     "specials='finite' cannot store; pass nan='zero' to map NaN to 0")
                code = torch.where(is_nan, 0, code)
                sign = torch.where(is_nan, 0, sign)
        code = code | (sign << (self.exp_bits + m))
        return code.to(torch.int16)

    def quantize(self, x: torch.Tensor, rounding: str = "nearest_even",
                 generator: torch.Generator | None = None, *,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``decode(encode(x))``: ``x`` rounded to this format, as ``dtype``.

        ``dtype`` (float32 by default) may be any float dtype that holds every value of the format
        exactly, e.g. ``torch.bfloat16`` for FP13: half the memory of float32, the same values.
        For nearest_even, native float arithmetic runs where it is provably exact
        (``_native_quantize``); otherwise the integer encoder runs.
        """
        x = _check_float_input(x)
        _check_holds(self, dtype)
        q = None
        if rounding == "nearest_even" and x.dtype == torch.float32:
            q = _native_quantize(self, x)
        if q is None:
            q = self.decode(self.encode(x, rounding, generator))
        return q if q.dtype == dtype else q.to(dtype)

    def __repr__(self) -> str:
        return (f"FloatFormat(exp_bits={self.exp_bits}, man_bits={self.man_bits}, bias={self.bias}, "
                f"specials={self.specials!r}, subnormals={self.subnormals}, saturate={self.saturate})")


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


def _check_rounding(rounding: str, generator: torch.Generator | None) -> None:
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding={rounding!r} is not allowed; choose one of {list(ROUNDINGS)}")
    if rounding == "stochastic" and generator is None:
        raise ValueError("rounding='stochastic' needs generator=torch.Generator() (seeded) for reproducible results")


# PyTorch dtypes whose float32 conversion is IEEE round-to-nearest-even: (dtype, FloatFormat).
_PEERS = (
    (torch.bfloat16, FloatFormat(8, 7)),
    (torch.float16, FloatFormat(5, 10)),
    (torch.float8_e5m2, FloatFormat(5, 2)),
    (torch.float8_e4m3fn, FloatFormat(4, 3, specials="fn")),
)
_RESULT_DTYPES = (torch.float32, torch.float64) + tuple(dtype for dtype, _ in _PEERS)


@functools.lru_cache(maxsize=None)
def _holds(fmt: FloatFormat, dtype: torch.dtype) -> bool:
    """Whether ``dtype`` stores every value of ``fmt`` exactly: checked on all of fmt's codes."""
    table = _decode_table_cpu(fmt)
    back = table.to(dtype).float()
    return bool(torch.equal(back.isnan(), table.isnan())
                and torch.equal(back.nan_to_num().view(torch.int32), table.nan_to_num().view(torch.int32)))


def _check_holds(fmt: FloatFormat, dtype: torch.dtype) -> None:
    if not isinstance(dtype, torch.dtype) or dtype not in _RESULT_DTYPES or not _holds(fmt, dtype):
        allowed = [str(d) for d in _RESULT_DTYPES if _holds(fmt, d)]
        raise ValueError(f"dtype={dtype} cannot hold every value of {fmt.name}; choose one of {allowed}")


def _native_quantize(fmt: FloatFormat, x: torch.Tensor) -> torch.Tensor | None:
    """``fmt.quantize(x)`` (nearest even, float32 ``x``) by native float arithmetic, or None where
    that is not provably exact. Tried in order of cost:

    1. fmt is a PyTorch dtype (bfloat16, half, fp8): one cast.
    2. on the CPU, fmt has the mantissa width of such a dtype and a narrower exponent range (FP13
       and bfloat16): one cast, mended where it rounds differently (``_narrow_cast``). Elsewhere
       kernel launches, not passes over memory, set the cost, and step 3 runs.
    3. one exact rounding step, ``_add_round``.
    """
    if x.numel() == 0:
        return x.clone()
    dtype = _peer_dtype(fmt)
    if dtype is not None:
        return x.to(dtype)
    route = _wider_peer(fmt)
    if route is not None and x.is_cpu:
        return _narrow_cast(fmt, x, route)
    return _add_round(fmt, x)


@functools.lru_cache(maxsize=None)
def _peer_dtype(fmt: FloatFormat) -> torch.dtype | None:
    """The PyTorch dtype that is fmt, or None."""
    return next((dtype for dtype, peer in _PEERS if peer == fmt), None)


class _CastRoute(NamedTuple):
    """How ``_narrow_cast`` checks a cast to ``dtype`` (bit patterns as ``bits_dtype``, magnitude
    bits ``mask``): fmt keeps the cast where the magnitude bits lie in [lo, hi] (fmt.min_normal to
    fmt.max). The key ``2 * bits + turn`` (wrapping; doubling drops the sign) is ``floor`` or more
    exactly there, and runs overflow < zero < small magnitude < floor; adding ``zeros_up`` to it
    moves small magnitudes to the bottom (below ``small_below``) and zeros to the top."""

    dtype: torch.dtype
    bits_dtype: torch.dtype
    mask: int
    lo: int
    hi: int
    turn: torch.Tensor
    floor: int
    zeros_up: int
    small_below: int


@functools.lru_cache(maxsize=None)
def _wider_peer(fmt: FloatFormat) -> _CastRoute | None:
    """The route through the PyTorch dtype with fmt's mantissa width and an exponent range that
    covers fmt's, or None."""
    for dtype, peer in _PEERS:
        if peer.man_bits == fmt.man_bits and peer.emin <= fmt.emin and fmt.emax <= peer.emax and fmt.max <= peer.max:
            bits_dtype = torch.int16 if peer.bits == 16 else torch.int8
            lo, hi = torch.tensor([fmt.min_normal, fmt.max]).to(dtype).view(bits_dtype).tolist()
            top = 2 ** (peer.bits - 1) - 1  # the largest signed value, also the magnitude mask

            def wrap(v: int) -> int:
                return (v + top + 1) % 2 ** peer.bits - top - 1
            turn = wrap(top - 2 * hi)  # [2 lo, 2 hi] -> [floor, top]; zero -> turn
            zeros_up = wrap(-turn - 2 - (top + 1))  # the smallest magnitude (key turn + 2) -> the bottom
            return _CastRoute(dtype, bits_dtype, top, lo, hi, torch.tensor(turn, dtype=bits_dtype), wrap(2 * lo + turn),
                              zeros_up, wrap(2 * lo - 2 - (top + 1)))
    return None


_BLOCK = 256  # elements per block when looking for the few values a cast must not keep


def _narrow_cast(fmt: FloatFormat, x: torch.Tensor, route: _CastRoute) -> torch.Tensor:
    """``fmt.quantize(x)`` for a CPU ``x``, as ``route.dtype``: ``x.to(dtype)``, with the values
    whose cast lies below fmt.min_normal rounded again at fmt's subnormal quantum
    (``_round_small``), and the 256-element blocks that hold a magnitude above fmt.max (or NaN)
    put through the integer encoder.

    Why the cast is fmt's rounding elsewhere: in fmt's normal binades both formats have the same
    quantum, so the same nearest-even result; a cast result of min_normal comes from |x| above
    the midpoint below it (the wider format is finer there), and one of at most max from |x|
    below fmt's overflow threshold. A zero comes from |x| under half the wider format's smallest
    subnormal, which fmt rounds to the same signed zero.

    Finding the few values to mend costs one wrapping integer pass (the key) and one ``amin`` per
    block; only blocks whose minimum is below the floor are searched, element by element. That
    search works on small arrays, so it runs in NumPy (on the same memory), whose calls cost a
    microsecond where torch's cost several. Every view is made before the passes: after them,
    caches are cold and each call costs more.
    """
    n = x.numel()
    width = math.gcd(n, _BLOCK)
    blocks = n // width
    y = torch.empty(x.shape, dtype=route.dtype)
    bits = y.view(route.bits_dtype).view(blocks, width)
    key, mins, kv, mv = _workspace(blocks, width, route.bits_dtype)
    xv, bv = x.view(blocks, width).numpy(), bits.numpy()
    y.copy_(x)  # x.to(dtype)
    torch.add(route.turn, bits, alpha=2, out=key)  # one pass: >= floor exactly where fmt keeps the cast
    torch.amin(key, dim=1, out=mins)
    turn = int(route.turn)  # keys in order: overflow < zero (turn) < small magnitudes < floor <= kept
    low, high = turn + 1, route.floor - 1  # the keys of magnitudes in (0, lo)
    rows = _flagged(mv, high)
    over = rows[mv[rows] < turn] if len(rows) and mv[rows].min() < turn else rows[:0]
    if len(rows) > blocks // 8:  # zeros everywhere (e.g. after a ReLU)? look past them
        key.add_(route.zeros_up)  # small magnitudes to the bottom, zeros to the top, the rest keep order
        torch.amin(key, dim=1, out=mins)
        low, high = -(route.mask + 1), route.small_below - 1
        rows = _flagged(mv, high)
    if len(rows) > blocks // 2:  # most blocks (e.g. weights): find the values in the whole key
        at = np.flatnonzero((kv - low).view(f"u{kv.itemsize}") <= high - low)
        bv.reshape(-1)[at] = _bits(route, _round_small(fmt, xv.reshape(-1)[at]))
    elif len(rows):  # a few blocks: round again the values below min_normal in them
        xb, bb = xv[rows], bv[rows]
        small = np.abs(xb) < fmt.min_normal
        bb[small] = _bits(route, _round_small(fmt, xb[small]))
        bv[rows] = bb
    if len(over):  # overflow, infinity or NaN: what becomes of them is the encoder's to say
        bv[over] = _bits(route, fmt.decode(fmt.encode(torch.from_numpy(xv[over]))).numpy())
    return y


def _flagged(mins: np.ndarray, high: int) -> np.ndarray:
    """The blocks whose smallest key is at most ``high``: those that hold a value to mend."""
    return (mins <= high).nonzero()[0]


def _bits(route: _CastRoute, q: np.ndarray) -> np.ndarray:
    """The bit patterns, as ``route.dtype``, of float32 values that it holds exactly (so NumPy's
    float16, or bfloat16's high half of float32, are the conversion)."""
    if route.dtype == torch.bfloat16:
        return (q.view(np.int32) >> 16).astype(np.int16)
    if route.dtype == torch.float16:
        return q.astype(np.float16).view(np.int16)
    return torch.from_numpy(q).to(route.dtype).view(route.bits_dtype).numpy()


class _Workspace(NamedTuple):
    """The key (blocks x width) and its block minima, as tensors and as NumPy views."""

    key: torch.Tensor
    mins: torch.Tensor
    key_np: np.ndarray
    mins_np: np.ndarray


_SCRATCH = threading.local()
_SCRATCH_BYTES = 16 * 2 ** 20  # largest buffer kept between calls, per thread


def _workspace(blocks: int, width: int, dtype: torch.dtype) -> _Workspace:
    """The cast route's buffers, kept between calls (per thread, up to 16 MiB): a fresh
    megabyte-sized allocation costs page faults that can outweigh the pass that fills it, and
    the views of the last shape are kept too, as making them costs several microseconds."""
    last = getattr(_SCRATCH, "last", None)
    if last is not None and last[0] == (blocks, width, dtype):
        return last[1]
    size = blocks * (width + 1) * dtype.itemsize
    with torch.inference_mode(False):  # ordinary tensors, so that calls in and out of inference mode can share them
        buffer = getattr(_SCRATCH, "buffer", None)
        if buffer is None or buffer.numel() < size:
            buffer = torch.empty(size, dtype=torch.uint8)
            if size <= _SCRATCH_BYTES:
                _SCRATCH.buffer = buffer
        flat = buffer[:size].view(dtype)
        key, mins = flat[:blocks * width].view(blocks, width), flat[blocks * width:]
    views = _Workspace(key, mins, key.numpy(), mins.numpy())
    if size <= _SCRATCH_BYTES:
        _SCRATCH.last = ((blocks, width, dtype), views)
    return views


def _round_small(fmt: FloatFormat, x: np.ndarray) -> np.ndarray:
    """``fmt.quantize`` of float32 values of magnitude below fmt.min_normal: nearest even at fmt's
    subnormal quantum 2^(emin - m), one ``rint`` of x scaled by a power of two (exact both ways:
    the scaled magnitudes lie below 2^m). Without subnormals, what rounds below min_normal
    flushes to a signed zero."""
    k = np.rint(np.ldexp(x, fmt.man_bits - fmt.emin))
    if not fmt.subnormals:
        k[np.abs(k) < 2 ** fmt.man_bits] *= 0  # keeps the sign
    return np.ldexp(k, fmt.emin - fmt.man_bits)


def _add_round(fmt: FloatFormat, x: torch.Tensor) -> torch.Tensor | None:
    """For |x| <= fmt.max (no NaN, no overflow): ``(|x| + C) - C`` with
    C = 1.5 * 2^(max(e, emin) + 23 - m), e the exponent of x, rounds |x| exactly once, to nearest
    even, at fmt's quantum 2^(max(e, emin) - m) — normal and subnormal alike — because |x| + C
    stays in C's binade, whose float32 ulp is that quantum; the subtraction is exact. The sign bit
    is put back afterwards, so -0 and tiny negatives give -0. None where that does not apply.
    """
    if not fmt.subnormals or fmt.emax + 24 - fmt.man_bits > 127:
        return None
    lo, hi = torch.aminmax(x)
    if not (float(lo) >= -fmt.max and float(hi) <= fmt.max):  # NaN fails too
        return None
    # two buffers, everything else in place: fresh large tensors cost page faults
    mag = x.view(torch.int32) & 0x7FFFFFFF
    c = mag & 0x7F800000                                             # 2^e as bits (0 for subnormal x)
    c.clamp_(min=(fmt.emin + 127) << 23).add_(((23 - fmt.man_bits) << 23) | 0x400000)
    cf = c.view(torch.float32)
    q = mag.view(torch.float32).add_(cf).sub_(cf)
    return torch.copysign(q, x, out=q)                               # sign back, -0 included


@functools.lru_cache(maxsize=None)
def _decode_table_cpu(fmt: FloatFormat) -> torch.Tensor:
    """Float32 value of every code, built from the spec with integer arithmetic (exact)."""
    m = fmt.man_bits
    codes = torch.arange(2 ** fmt.bits, dtype=torch.int64)
    sign = (codes >> (fmt.exp_bits + m)) & 1
    e_field = (codes >> m) & (2 ** fmt.exp_bits - 1)
    man = codes & (2 ** m - 1)
    # |value| = (e_field ? 2^m + man : man) * 2^(max(e_field, 1) - bias - m), exact in float64
    sig = torch.where(e_field > 0, man + 2 ** m, man).double()
    if not fmt.subnormals:
        sig = torch.where(e_field > 0, sig, 0.0)
    scale = ((torch.clamp(e_field, min=1) - fmt.bias - m + 1023) << 52).view(torch.float64)  # 2^k, exact
    value = sig * scale
    if fmt.specials == "ieee":
        top = e_field == 2 ** fmt.exp_bits - 1
        value = torch.where(top & (man == 0), torch.inf, value)
        value = torch.where(top & (man != 0), torch.nan, value)
    elif fmt.specials == "fn":
        value = torch.where((codes & (2 ** (fmt.bits - 1) - 1)) == fmt.nan_code, torch.nan, value)
    value = torch.where(sign == 1, -value, value)
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
}

FP13: FloatFormat = NAMED["e5m7"]
"""The 13-bit 1-5-7 float: FP16 with its three low mantissa bits removed; max 65280."""
