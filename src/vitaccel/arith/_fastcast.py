"""The CPU speed route behind ``FloatFormat.quantize`` (nearest even, float32 input).

Kept apart from the readable spec in ``formats``: one function, ``quantize(fmt, x)``, gives the
same bits as ``fmt.decode(fmt.encode(x))`` by native casts and float arithmetic where that is
provably exact, and None elsewhere. The cast route, its workspace, the block search and the NumPy
mending all live here. Imports of vitaccel only the ``FormatLike`` protocol (``fmt`` brings its own
methods).
"""

from __future__ import annotations

import functools
import math
import threading
from typing import NamedTuple

import numpy as np
import torch

from vitaccel.arith._formatlike import FormatLike


class _Peer(NamedTuple):
    """A PyTorch dtype whose float32 conversion is IEEE round-to-nearest-even, as a format with
    the default bias, subnormals and no saturation."""

    dtype: torch.dtype
    exp_bits: int
    man_bits: int
    specials: str

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def emin(self) -> int:
        return 2 - 2 ** (self.exp_bits - 1)

    @property
    def emax(self) -> int:
        return 2 ** (self.exp_bits - 1) - (1 if self.specials == "ieee" else 0)

    @property
    def max(self) -> float:
        return torch.finfo(self.dtype).max

    def is_format(self, fmt: FormatLike) -> bool:
        return (fmt.exp_bits, fmt.man_bits, fmt.bias, fmt.specials, fmt.subnormals, fmt.saturate) == \
            (self.exp_bits, self.man_bits, 2 ** (self.exp_bits - 1) - 1, self.specials, True, False)


_PEERS = (
    _Peer(torch.bfloat16, 8, 7, "ieee"),
    _Peer(torch.float16, 5, 10, "ieee"),
    _Peer(torch.float8_e5m2, 5, 2, "ieee"),
    _Peer(torch.float8_e4m3fn, 4, 3, "fn"),
)


def quantize(fmt: FormatLike, x: torch.Tensor) -> torch.Tensor | None:
    """``fmt.quantize(x)`` (nearest even, contiguous float32 ``x``) by native float arithmetic, or
    None where that is not provably exact (the caller then runs the integer encoder). The result
    is float32 or a narrower dtype holding the same values. Tried in order of cost:

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


def faster(fmt: FormatLike, x: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether this route should round ``x`` (nearest even, float32) for a result of ``dtype``
    rather than the fused loop of ``_fastround`` (measured, ``bench_float.py --formats``): off the
    CPU always (the loop runs on the CPU only); on it where the result is 16-bit and fmt is half or
    bfloat16 or has their cast as a wider peer (FP13): the cast is then the result. For a float32
    result the loop (about 1.5x of a bfloat16 cast) is faster than a cast and one back (1.6-2.4x);
    torch's fp8 casts, the mended cast widened and ``_add_round`` (five torch passes) are slower."""
    if not x.is_cpu:
        return True
    fast = (torch.bfloat16, torch.float16)
    route = _wider_peer(fmt)
    return dtype.itemsize == 2 and (_peer_dtype(fmt) in fast or (route is not None and route.dtype in fast))


@functools.lru_cache(maxsize=None)
def _peer_dtype(fmt: FormatLike) -> torch.dtype | None:
    """The PyTorch dtype that is fmt, or None."""
    return next((peer.dtype for peer in _PEERS if peer.is_format(fmt)), None)


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
def _wider_peer(fmt: FormatLike) -> _CastRoute | None:
    """The route through the PyTorch dtype with fmt's mantissa width and an exponent range that
    covers fmt's, or None. A format with infinities needs a dtype with them (float8_e4m3fn has
    none: its cast would saturate what fmt rounds to infinity); one without -0 needs the encoder."""
    if not fmt.negative_zero:
        return None
    for peer in _PEERS:
        dtype = peer.dtype
        holds_inf = fmt.inf_code is None or peer.specials == "ieee"
        if holds_inf and peer.man_bits == fmt.man_bits and peer.emin <= fmt.emin and fmt.emax <= peer.emax \
                and fmt.max <= peer.max:
            bits_dtype = torch.int16 if peer.bits == 16 else torch.int8
            lo, hi = torch.tensor([fmt.min_normal, fmt.max]).to(dtype).view(bits_dtype).tolist()
            top = 2 ** (peer.bits - 1) - 1  # the largest signed value, also the magnitude mask

            def wrap(v: int, top: int = top) -> int:
                return (v + top + 1) % (2 * (top + 1)) - top - 1
            turn = wrap(top - 2 * hi)  # [2 lo, 2 hi] -> [floor, top]; zero -> turn
            zeros_up = wrap(-turn - 2 - (top + 1))  # the smallest magnitude (key turn + 2) -> the bottom
            return _CastRoute(dtype, bits_dtype, top, lo, hi, torch.tensor(turn, dtype=bits_dtype), wrap(2 * lo + turn),
                              zeros_up, wrap(2 * lo - 2 - (top + 1)))
    return None


_BLOCK = 256  # elements per block when looking for the few values a cast must not keep


def _narrow_cast(fmt: FormatLike, x: torch.Tensor, route: _CastRoute) -> torch.Tensor:
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


def _round_small(fmt: FormatLike, x: np.ndarray) -> np.ndarray:
    """``fmt.quantize`` of float32 values of magnitude below fmt.min_normal: nearest even at fmt's
    subnormal quantum 2^(emin - m), one ``rint`` of x scaled by a power of two (exact both ways:
    the scaled magnitudes lie below 2^m). Without subnormals the quantum there is min_normal
    itself (the neighbours are 0 and min_normal; a tie goes to a signed zero)."""
    step = fmt.emin - (fmt.man_bits if fmt.subnormals else 0)
    return np.ldexp(np.rint(np.ldexp(x, -step)), step)


def _add_round(fmt: FormatLike, x: torch.Tensor) -> torch.Tensor | None:
    """For |x| <= fmt.max (no NaN, no overflow): ``(|x| + C) - C`` with
    C = 1.5 * 2^(max(e, emin) + 23 - m), e the exponent of x, rounds |x| exactly once, to nearest
    even, at fmt's quantum 2^(max(e, emin) - m) — normal and subnormal alike — because |x| + C
    stays in C's binade, whose float32 ulp is that quantum; the subtraction is exact. The sign bit
    is put back afterwards, so -0 and tiny negatives give -0 (then +0, by adding +0, in formats
    without -0). None where that does not apply.
    """
    if not fmt.subnormals or fmt.man_bits == 0 or fmt.emax + 24 - fmt.man_bits > 127:
        return None  # (with man_bits = 0 a tie goes to the even code, not to the even multiple)
    lo, hi = torch.aminmax(x)
    if not (float(lo) >= -fmt.max and float(hi) <= fmt.max):  # NaN fails too
        return None
    # two buffers, everything else in place: fresh large tensors cost page faults
    mag = x.view(torch.int32) & 0x7FFFFFFF
    c = mag & 0x7F800000                                             # 2^e as bits (0 for subnormal x)
    c.clamp_(min=(fmt.emin + 127) << 23).add_(((23 - fmt.man_bits) << 23) | 0x400000)
    cf = c.view(torch.float32)
    q = mag.view(torch.float32).add_(cf).sub_(cf)
    torch.copysign(q, x, out=q)                                      # sign back, -0 included
    return q if fmt.negative_zero else q.add_(0.0)                   # -0 + 0 = +0
