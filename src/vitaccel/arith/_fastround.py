"""The CPU speed route behind ``FloatFormat.quantize``: fused numba loops over the float32 bit
patterns, one pass per tensor, for every format and rounding (nearest_even too, unless
``_fastcast.faster`` picks a cast for a 16-bit result).

``quantize(fmt, x, rounding)`` gives the same bits as ``fmt.decode(fmt.encode(x, rounding))`` for
a contiguous float32 CPU ``x`` and every format (signed or not, up to 32 bits, every ``specials``).
With s the sign, a the magnitude bits of x, m = fmt.man_bits and d = 23 - m:

* **the common case** (``_fast``, a loop the compiler vectorises, one per mode so that each folds
  its mode): for |x| >= min_normal the rounding to fmt's quantum 2^(e - m) is an integer rounding
  of a at bit d (a carry out of the fraction lands in the exponent): toward_zero masks the low d
  bits, ties_away adds 2^(d-1) first, nearest_even 2^(d-1) - 1 plus the kept lowest bit (with
  m = 0 the exponent field's parity in fmt's bias), ``up`` / ``down`` 2^d - 1 on their side of
  zero; stochastic adds the draw's top d bits (or, with n < d bits, carries the top n dropped
  bits plus the draw). Below min_normal fmt's values are the multiples of q0 = 2^(emin - m)
  (2^emin without subnormals): x / q0 (exact) rounded to an integer by ``rint``/``trunc``/
  ``ceil``/``floor`` (ties_away: trunc plus one where the rest is at least 1/2; stochastic:
  floor plus the carry of the fraction's top n bits and the draw), times q0 (exact). A format
  whose emin is float32's and has subnormals needs no grid: every float32 subnormal is one of
  its values, the bit rounding holds there too. The sign comes back (+0 where fmt has no -0).
* **the rare values** (``_deterministic``, ``_stochastic``: the encoder of ``formats`` for one
  element, ending in the float32 pattern of the value instead of the code) where the common case
  does not decide: a result above max (overflow by mode, sign and ``saturate``; infinity; NaN and
  its canonical code), a negative into an unsigned format (its NaN), e8m0 below 2^-126 (its
  values go down to 2^-127, below float32's normals). |x| = sig * 2^(e - 23) is rounded at the
  quantum 2^(max(e, emin) - m) (or 2^emin below min_normal without subnormals): kept = sig >> fs,
  the dropped bits rem, up iff 2 rem + t > 2^fs, t by the mode (nearest_even the code's parity,
  ties_away 1, up/down 2^fs - 1 on their side of zero), the value kept * 2^(E - m) as a pattern.
  Where the encoder raises (NaN into a ``finite`` format with ``nan="raise"``, a negative into an
  unsigned format without NaN) the kernel counts the value and the caller runs the encoder.

Every format constant is a kernel argument (``_params``, ``_fast_params``: from fmt's decoded
codes), so a kernel compiles once (``cache=True``: once per machine) and not per format: one per
mode and ``_kind`` of format (``_kernel``, each the first time it is used), in 32-bit intrinsics
(``_u32``) and with 512-bit vectors asked of LLVM for that kernel alone. Stochastic draw i comes
from the caller's seed and i (``_keys``, ``_hash32``, ``_draw``; ``formats.stochastic_draws`` is
the same stream in torch): the loop hashes only the draw's high 32-bit word and leaves a carry
they cannot decide to the per-element path. Imports of vitaccel only ``_bitcast``, ``_u32`` and
the ``FormatLike`` protocol (``fmt`` brings its own methods).
"""

from __future__ import annotations

import functools

import numba
import numpy as np
import torch

from vitaccel.arith import _u32 as U
from vitaccel.arith._bitcast import bits_f32, f32_bits
from vitaccel.arith._formatlike import FormatLike

MODES = ("nearest_even", "ties_away", "toward_zero", "up", "down")

# the stream of formats.stochastic_draws (see ``_keys``, ``_hash32``, ``_draw``): splitmix64's
# constants for the keys, lowbias32's multipliers for the words
GAMMA, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
HASH1, HASH2 = 0x21F0AAAD, 0x735A2D97


# indices into the parameter tuple of _params
(_M, _EMIN, _SUB, _KMIN, _PAR, _MAXB, _PASTB, _PASTNAN, _INFB, _INFNAN, _NANMODE, _NANP, _NANN, _NEGZ,
 _SIGNED, _NEGBAD) = range(16)


@functools.lru_cache(maxsize=None)
def _params(fmt: FormatLike) -> tuple[int, ...]:
    """fmt as the kernels' integer arguments (bit patterns are float32 ones, from ``fmt.decode``)."""
    def bits(code: int) -> int:
        return int(fmt.decode(torch.tensor([code])).view(torch.int32)[0]) & 0xFFFFFFFF
    max_bits = bits(fmt.max_code)
    nan_free = fmt.specials in ("fnuz", "e8m0")  # overflow and infinity give NaN (unless saturate)
    inf_bits = 0x7F800000 if fmt.inf_code is not None else max_bits
    nan_pos = nan_neg = 0
    if fmt.nan_code is not None:
        nan_pos = bits(fmt.nan_code)
        sign_bit = 1 << (fmt.exp_bits + fmt.man_bits)
        nan_neg = bits(fmt.nan_code | sign_bit) if fmt.signed and fmt.specials in ("ieee", "fn") else nan_pos
    nan_mode = 0 if fmt.nan_code is not None else (1 if fmt.nan == "zero" else 2)  # NaN, +0, the encoder
    e8m0 = int(fmt.specials == "e8m0")
    return (fmt.man_bits, fmt.emin, int(fmt.subnormals), e8m0, e8m0, max_bits,
            max_bits if fmt.saturate else inf_bits, int(nan_free and not fmt.saturate),
            max_bits if nan_free else inf_bits, int(nan_free and not fmt.saturate), nan_mode, nan_pos, nan_neg,
            int(fmt.negative_zero), int(fmt.signed), int(fmt.nan_code is None))


_JIT = dict(cache=True, nogil=True)


@numba.njit(**_JIT)
def _problem(w, p):
    """(s, a, kept, rem, fs, shift, E, tiny) of the float32 pattern w (see the module doc)."""
    s = (w >> 31) & 1
    a = w & 0x7FFFFFFF
    if p[_SIGNED] == 0:
        s = 0
    f = a >> 23
    e = max(f, 1) - 127
    sig = (a & 0x7FFFFF) | (0x800000 if f > 0 else 0)
    emin = p[_EMIN]
    big = max(e, emin)
    tiny = (e < emin) | (f == 0)
    if f == 0:
        big = emin
    fs = big - p[_M] - (e - 23)
    if tiny and p[_SUB] == 0:
        fs += p[_M]
    shift = min(fs, 62)
    kept = sig >> shift
    rem = sig - (kept << shift)
    return s, a, kept, rem, fs, shift, big, tiny


@numba.njit(**_JIT)
def _value(w, s, a, kept, big, tiny, past_pos, past_neg, p):
    """(float32 pattern of kept * 2^(E - m) with fmt's specials, 1 where the encoder must decide)."""
    m = p[_M]
    if tiny and p[_SUB] == 0:
        kept = kept << m
    kept = max(kept, p[_KMIN])
    if tiny:  # kept * 2^(emin - m): float(kept) moved by emin - m binades, or a float32 subnormal
        k = big - m
        fb = np.int64(f32_bits(np.float32(np.int32(kept))))
        r = fb + (k << 23)
        if (fb >> 23) + k < 1:  # the pattern of kept * 2^(k + 149)
            r = kept << min(max(k + 149, 0), 31)
        if kept == 0:
            r = 0
    else:  # 1.fraction * 2^E: the kept fraction bits under the exponent field (a carry lands in it)
        r = ((big + 127) << 23) + ((kept - (np.int64(1) << m)) << (23 - m))
    over = r > p[_MAXB]
    past = over & ((past_neg if s == 1 else past_pos) == 1)
    nan = a > 0x7F800000
    if over:
        r = p[_MAXB]
    if past:
        r = p[_PASTB]
        nan |= p[_PASTNAN] == 1
    if a == 0x7F800000:
        r = p[_INFB]
        nan |= p[_INFNAN] == 1
    bad = 0
    if p[_SIGNED] == 0 and (w >> 31) & 1 == 1 and a != 0:  # a negative into an unsigned format: NaN
        nan = True
        bad = p[_NEGBAD]
    if nan and p[_NANMODE] != 0:  # a format without NaN: +0 (nan="zero") or the encoder's error
        bad |= p[_NANMODE] - 1
        nan = False
        r = 0
        s = 0
    if r == 0 and p[_NEGZ] == 0:
        s = 0
    out = r | (s << 31)
    if nan:
        out = p[_NANN] if s == 1 else p[_NANP]
    return out, bad


@numba.njit(**_JIT)
def _deterministic(w, mode, p):
    """(float32 pattern of fmt's rounding of the float32 pattern w by ``mode``, the encoder flag)."""
    s, a, kept, rem, fs, shift, big, tiny = _problem(w, p)
    top = np.int64(1) << shift
    if mode == 0:  # nearest_even: a tie to the even code (with m = 0 its exponent field's parity)
        t = (kept + (big - p[_EMIN] if p[_M] == 0 else 0) + p[_PAR]) & 1
    elif mode == 1:
        t = np.int64(1)
    elif mode == 2:
        t = -top
    else:  # up (3) moves positive magnitudes up, down (4) negative ones
        t = top - 1 if s == mode - 3 else -top
    kept += (2 * rem + t) > top
    past_pos = 1 if mode in (0, 1, 3) else 0
    past_neg = 1 if mode in (0, 1, 4) else 0
    return _value(w, s, a, kept, big, tiny, past_pos, past_neg, p)


@numba.njit(inline="always", **_JIT)
def _mix64(z):
    """splitmix64's finaliser (Steele, Lea and Flood) of the uint64 ``z``."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(MIX1)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(MIX2)
    return z ^ (z >> np.uint64(31))


@numba.njit(**_JIT)
def _keys(seed, h):
    """The four 32-bit keys of the 2^32 draws h * 2^32 .. of ``seed``'s stream: the halves of
    splitmix64(seed + (2h + 1) GAMMA) (the top words) and of splitmix64(seed + (2h + 2) GAMMA)."""
    z0 = _mix64(seed + np.uint64(2 * h + 1) * np.uint64(GAMMA))
    z1 = _mix64(seed + np.uint64(2 * h + 2) * np.uint64(GAMMA))
    mask = np.uint64(0xFFFFFFFF)
    return (np.uint32(z0 & mask), np.uint32(z0 >> np.uint64(32)),
            np.uint32(z1 & mask), np.uint32(z1 >> np.uint64(32)))


@numba.njit(inline="always", **_JIT)
def _hash32(c, k1, k2):
    """A 32-bit word of the stream: Wellons' lowbias32 of the counter word c xor k1, with k2 xored in
    between its two multiplies (so that streams of two seeds are no permutation of each other)."""
    u = np.uint32
    x = U.xor(c, k1)
    x = U.mul(U.xor(x, U.shr(x, u(16))), u(HASH1))
    x = U.xor(U.xor(x, U.shr(x, u(15))), k2)
    x = U.mul(x, u(HASH2))
    return U.xor(x, U.shr(x, u(15)))


@numba.njit(inline="always", **_JIT)
def _draw(top, low, bits):
    """The ``bits``-bit draw (bits <= 62) of the 64-bit word top * 2^32 + low: its top ``bits`` bits."""
    word = (np.uint64(top) << np.uint64(32)) | np.uint64(low)
    return np.int64(word >> np.uint64(64 - bits))


@numba.njit(**_JIT)
def _stochastic(w, draw, n, p):
    """As ``_deterministic`` for stochastic rounding with an n-bit ``draw``: up iff the top n bits
    of the dropped fraction plus the draw reach 2^n."""
    s, a, kept, rem, fs, shift, big, tiny = _problem(w, p)
    t = rem >> min(fs - n, 62) if fs >= n else rem << (n - fs)
    kept += (t + draw) >> n
    return _value(w, s, a, kept, big, tiny, 1, 1, p)


# the common case, vectorised: indices into _fast_params' int tuple and float tuple
(_D, _HALF, _LOW, _MASK, _PARITY, _TINYB, _RAREB, _FMAXB, _FNEGZ, _FSIGNED, _HALF1, _ODD, _FPASTB, _FPASTNAN, _FNANP,
 _FNEGBAD) = range(16)
_C1, _C2, _Q1, _Q2 = range(4)


@functools.lru_cache(maxsize=None)
def _fast_params(fmt: FormatLike) -> tuple[tuple[int, ...], tuple[np.float32, ...]]:
    """fmt as the common case's arguments: the bit rounding at d = 23 - m of patterns at least
    min_normal, the subnormal grid 2^k0 (k0 = emin - m, or emin without subnormals) by scaling
    with c1 c2 = 2^-k0 and back with q1 q2 = 2^k0 (each a float32 normal: every step exact) below
    min_normal (``_TINYB``), and magnitudes below ``_RAREB`` left to the generic path."""
    m, emin, p = fmt.man_bits, fmt.emin, _params(fmt)
    d = 23 - m
    k0 = emin - (m if fmt.subnormals else 0)
    tiny_bits = rare_bits = 0
    if fmt.specials == "e8m0":  # values down to 2^-127: float32 subnormals take the generic path
        rare_bits = 0x00800000
    elif not (emin == -126 and fmt.subnormals):  # (there every float32 subnormal is one of fmt's)
        tiny_bits = int(np.float32(2.0 ** emin).view(np.uint32))
    c1 = min(-k0, 127)
    q1 = max(k0, -126)
    parity = (fmt.bias - 127) & 1 if m == 0 else 0  # m = 0: the code's parity is the exponent field's
    ints = (d, 1 << (d - 1) if d else 0, (1 << d) - 1, (0xFFFFFFFF << d) & 0xFFFFFFFF, parity, tiny_bits,
            rare_bits, p[_MAXB], int(fmt.negative_zero), int(fmt.signed), max((1 << d) // 2 - 1, 0),
            int(d > 0), p[_PASTB], p[_PASTNAN], p[_NANP], p[_NEGBAD])  # (d = 0, fp32: nothing dropped, nothing added)
    floats = tuple(np.float32(2.0 ** k) for k in (c1, -k0 - c1, q1, k0 - q1))
    return ints, floats


@numba.njit(inline="always", **_JIT)
def _fast(w, mode, kind, top, n, sr, q, fq):
    """(pattern, 1 where the generic path must decide) of the float32 pattern w (uint32) rounded
    by ``mode`` (5: stochastic with n-bit draws, n >= d; 6: n < d; ``top`` the draw's 64-bit word's
    top 32 bits, ``sr`` = (the mask of the top n' bits, n' = min(n, 32))), overflow by mode and
    sign; the rare cases are infinity and NaN in, magnitudes below ``_RAREB``, negatives into an
    unsigned format without NaN, and (n > 32) a subnormal-grid carry that the top 32 bits leave
    undecided. ``kind`` (``_kind``, a constant): 0 where fmt is signed with -0, no magnitude is
    rare, overflow gives no NaN and the grid scales are single factors (those steps fold away), 1
    where only -0 or overflow's NaN differ from that, 2 for other signed formats, 3 unsigned ones.
    In uint32 arithmetic (``_u32``) and without branches, so that the loop runs on 8 or 16 lanes
    of 32 bits."""
    u = np.uint32
    sign = U.and_(w, u(0x80000000))
    a = U.and_(w, u(0x7FFFFFFF))
    rare = U.le(u(0x7F800000), a)  # (infinity and NaN in)
    negative = False
    if kind >= 2:
        rare |= U.lt(a, u(q[_RAREB]))
    if kind == 3:  # no sign bit: a negative value becomes its NaN (or an error), the sign 0
        negative = U.ne(sign, u(0)) & U.ne(a, u(0))
        rare |= negative & (q[_FNEGBAD] == 1)
        sign = u(0)
    d = u(q[_D])
    if mode == 5:  # the draw's top d bits added below the kept ones (two shifts: d may be 0)
        r = U.and_(U.add(a, U.shr(U.shr(top, u(1)), u(31 - q[_D]))), u(q[_MASK]))
    elif mode == 6:  # the top n dropped bits plus the n-bit draw, its carry into the kept ones
        r = U.shl(U.shr(U.add(U.shr(a, u(q[_D] - n)), U.shr(top, u(32 - n))), u(n)), d)
    else:
        if mode == 0:
            inc = U.add(u(q[_HALF1]), U.and_(U.add(U.shr(a, d), u(q[_PARITY])), u(q[_ODD])))
        elif mode == 1:
            inc = u(q[_HALF])
        elif mode == 2:
            inc = u(0)
        else:  # up (3) moves positive magnitudes up, down (4) negative ones: neg is all ones below 0
            neg = U.sub(u(0), U.shr(sign, u(31)))
            inc = U.and_(u(q[_LOW]), neg if mode == 4 else U.xor(neg, u(0xFFFFFFFF)))
        r = U.and_(U.add(a, inc), u(q[_MASK]))
    negative_x = U.ne(sign, u(0))
    if U.lt(a, u(q[_TINYB])):  # on the subnormal grid: v = |x| / 2^k0 rounded to an integer, times 2^k0
        v = bits_f32(np.int32(a)) * fq[_C1]
        if kind >= 2:
            v *= fq[_C2]
        if mode == 0:
            v = np.rint(v)
        elif mode == 1:
            t = np.trunc(v)
            v = t + np.float32(v - t >= np.float32(0.5))
        elif mode == 2:
            v = np.trunc(v)
        elif mode >= 5:  # carry iff the fraction's top n' bits plus the draw's overflow 32 bits
            t = np.floor(v)
            drawn = U.and_(top, sr)  # (the fraction's top 32 bits: float32 to uint32 truncates)
            total = U.add(U.and_(u((v - t) * np.float32(2.0 ** 32)), sr), drawn)
            rare |= U.eq(total, u(0xFFFFFFFF)) & (n > 32)  # all ones: the bits below the top 32 decide
            v = t + (np.float32(1.0) if U.lt(total, drawn) else np.float32(0.0))
        else:
            v = np.ceil(v) if negative_x == (mode == 4) else np.floor(v)
        v *= fq[_Q1]
        if kind >= 2:
            v *= fq[_Q2]
        r = u(f32_bits(v))
    over = U.lt(u(q[_FMAXB]), r)  # overflow: max, or past it (infinity, NaN) where the rounding moved up
    if mode == 2:
        past = False
    elif mode == 3 or mode == 4:
        past = over & (negative_x == (mode == 4))
    else:
        past = over
    if over:
        r = u(q[_FMAXB])
    if past:
        r = u(q[_FPASTB])
    if kind != 0 and U.eq(r, u(0)) & (q[_FNEGZ] == 0):
        sign = u(0)
    out = U.or_(r, sign)
    if kind != 0 and (past & (q[_FPASTNAN] == 1)) | negative:
        out = u(q[_FNANP])
    return out, rare


@functools.lru_cache(maxsize=None)
def _kind(fmt: FormatLike) -> int:
    """``_fast``'s ``kind`` of fmt: which of its rare steps fold away (0: all; 1: all but -0 and
    overflow's NaN, as in P3109 and fnuz formats; 2: signed formats with grid scales of two
    factors; 3: unsigned formats, e8m0 among them)."""
    q, fq = _fast_params(fmt)
    if not q[_FSIGNED]:
        return 3
    if q[_RAREB] or (q[_TINYB] and (fq[_C2] != 1 or fq[_Q2] != 1)):
        return 2
    return 0 if q[_FNEGZ] and not q[_FPASTNAN] else 1


@numba.njit(inline="always", **_JIT)
def _sr(n):
    """``_fast``'s ``sr`` for n-bit draws: the mask of the top min(n, 32) bits of a word."""
    return np.uint32((np.uint64(0xFFFFFFFF) << np.uint64(32 - min(n, 32))) & np.uint64(0xFFFFFFFF))


@numba.njit(inline="always", **_JIT)
def _round_loop(xb, out, mode, kind, seed, n, q, fq):
    """The common case over the whole array for one (constant) mode; whether it left values to
    the generic path."""
    rare = False
    sr = _sr(n)
    for base in range(0, xb.size, 1 << 32):  # one set of keys per 2^32 draws
        k1, k2, _, _ = _keys(seed, base >> 32)
        xs, outs = xb[base:base + (1 << 32)], out[base:base + (1 << 32)]
        count = np.uint32(0)  # the counter's low word, in 32 bits (a 64-bit one takes 512-bit vectors)
        for c in range(xs.size):  # (from 0: the loads and stores are seen to be contiguous)
            top = _hash32(count, k1, k2) if mode >= 5 else np.uint32(0)
            count = U.add(count, np.uint32(1))
            r, b = _fast(xs[c], mode, kind, top, n, sr, q, fq)
            outs[c] = r
            rare |= b
    return rare


@numba.njit(**_JIT)
def _mend(xb, out, mode, kind, seed, n, p, q, fq):
    """The values ``_round_loop`` left to the generic path, found again and rounded by it (``mode``
    and ``kind`` at run time: one compiled scalar loop for all kernels); the count of values the
    encoder must decide."""
    bad = 0
    sr = _sr(n)
    k1 = k2 = k3 = k4 = np.uint32(0)
    for i in range(xb.size):
        if mode >= 5 and i % (1 << 32) == 0:
            k1, k2, k3, k4 = _keys(seed, i >> 32)
        top = _hash32(np.uint32(i), k1, k2) if mode >= 5 else np.uint32(0)
        if _fast(xb[i], mode, kind, top, n, sr, q, fq)[1]:
            w = np.int64(xb[i])
            if mode >= 5:
                r, b = _stochastic(w, _draw(top, _hash32(np.uint32(i), k3, k4), n), n, p)
            else:
                r, b = _deterministic(w, mode, p)
            out[i] = r
            bad += b
    return bad


@functools.lru_cache(maxsize=None)
def _kernel(mode: int, kind: int):
    """The kernel of one mode (0-4: MODES, 5 and 6: stochastic with n-bit draws, n at least
    23 - m and below it) for one ``_kind`` of formats: ``kernel(xb, out, seed, n, p, q, fq)``
    sets out[i] to the rounding of xb[i] (uint32 float32 patterns; draw i of ``seed``'s stream)
    and gives the count of values the encoder must decide. Each of the 28 compiles the first time
    it is used (once per machine: numba's cache keeps it), its mode and kind constants in it."""
    @numba.njit(**_JIT)
    def kernel(xb, out, seed, n, p, q, fq):
        U.prefer_wide_vectors()
        if _round_loop(xb, out, mode, kind, seed, n, q, fq):
            return _mend(xb, out, mode, kind, seed, n, p, q, fq)
        return 0
    return kernel


@numba.njit(inline="always", **_JIT)
def _pow2_bits(k):
    """The float32 pattern of 2^k, k in [-127, 127] (2^-127 is a subnormal)."""
    return np.uint32(0x00400000) if k == -127 else np.uint32((k + 127) << 23)


@numba.njit(inline="always", **_JIT)
def _mx_blocks(xb, out, n, block, emax, mode, int8, q, fq):
    """``_mx_kernel`` for one mode and element kind (constants after inlining)."""
    u = np.uint32
    nan = np.float32(np.nan)
    sr = _sr(62)
    for row in range(0, xb.size, n):
        for start in range(row, row + n, block):
            stop = min(start + block, row + n)
            top = u(0)
            for i in range(start, stop):
                magnitude = U.and_(xb[i], u(0x7FFFFFFF))
                if U.lt(top, magnitude):
                    top = magnitude
            special = U.le(u(0x7F800000), top)
            shared = min(max(np.int64(top >> u(23)) - 127 - emax, -127), 127)
            inv = bits_f32(np.int32(_pow2_bits(-shared)))
            scale = nan if special else bits_f32(np.int32(_pow2_bits(shared)))
            for i in range(start, stop):
                v = bits_f32(np.int32(xb[i])) * inv
                if special:  # a NaN scale: its elements are 0
                    v = np.float32(0.0)
                if int8:
                    v = np.rint(v * np.float32(64.0)) if mode == 0 else np.trunc(v * np.float32(64.0))
                    p = (min(max(v, np.float32(-127.0)), np.float32(127.0)) + np.float32(0.0)) * np.float32(1 / 64)
                else:
                    w, _ = _fast(u(f32_bits(v)), mode, 2, u(0), 62, sr, q, fq)
                    if U.lt(u(q[_FMAXB]), U.and_(w, u(0x7FFFFFFF))):  # the spec's clamp to max normal
                        w = U.or_(U.and_(w, u(0x80000000)), u(q[_FMAXB]))
                    p = bits_f32(np.int32(w))
                out[i] = p * scale


@numba.njit(**_JIT)
def _mx_kernel(xb, out, n, block, emax, mode, int8, q, fq):
    """OCP MX quantize of each row of n values of xb (uint32 float32 patterns) in blocks of
    ``block`` along the row, as ``mx.MXFormat.quantize``: shared = clamp(floor(log2 max|V|) - emax,
    -127, 127) from the exponent bits of the largest magnitude (a NaN or infinity: the scale is NaN
    and every element +0), P = the element rounding (``mode`` 0 or 2) of V * 2^-shared, saturating
    (int8: rint or trunc of 64 V 2^-shared clamped to +-127, over 64), out = P * 2^shared."""
    U.prefer_wide_vectors()
    if int8:
        if mode == 0:
            _mx_blocks(xb, out, n, block, emax, 0, True, q, fq)
        else:
            _mx_blocks(xb, out, n, block, emax, 2, True, q, fq)
    elif mode == 0:
        _mx_blocks(xb, out, n, block, emax, 0, False, q, fq)
    else:
        _mx_blocks(xb, out, n, block, emax, 2, False, q, fq)


def mx_quantize(element: FormatLike | None, x: torch.Tensor, block: int, emax: int, rounding: str) -> torch.Tensor:
    """``MXFormat.quantize`` of a contiguous float32 CPU ``x`` in blocks of ``block`` along its last
    axis, float32: ``element`` the saturating element format (None: MXINT8), ``emax`` its emax_elem."""
    out = torch.empty(x.shape, dtype=torch.float32)
    if x.numel() == 0:
        return out
    n = x.shape[-1]
    xb = x.reshape(-1).numpy().view(np.uint32)
    q, fq = _fast_params(element) if element is not None else _fast_params_none()
    _mx_kernel(xb, out.reshape(-1).numpy(), n, block, emax, MODES.index(rounding), element is None, q, fq)
    return out


@functools.lru_cache(maxsize=None)
def _fast_params_none() -> tuple[tuple[int, ...], tuple[np.float32, ...]]:
    """Placeholder element parameters for MXINT8 (its elements are rounded without them)."""
    return (0,) * 16, (np.float32(1.0),) * 4


def applies(x: torch.Tensor) -> bool:
    """Whether this route takes ``x``: a contiguous float32 CPU tensor."""
    return x.is_cpu and x.dtype == torch.float32 and x.is_contiguous()


def quantize(fmt: FormatLike, x: torch.Tensor, rounding: str, seed: int | None = None,
             stochastic_bits: int | None = None) -> torch.Tensor | None:
    """``fmt.quantize(x, rounding)`` as float32 for a tensor ``applies`` takes (stochastic: with the
    draws of ``seed``), or None where the encoder must decide a value (it raises there). (A call
    costs a few microseconds besides the loop: the output, NumPy views, one cached lookup.)"""
    out = torch.empty(x.shape, dtype=torch.float32)
    if x.numel() == 0:
        return out
    p, q, fq, kind = _arguments(fmt)
    if rounding == "stochastic":
        n = 62 if stochastic_bits is None else stochastic_bits
        mode, seed = 5 if n >= q[_D] else 6, np.uint64(seed)
    else:
        mode, seed, n = MODES.index(rounding), np.uint64(0), 62
    bad = _kernel(mode, kind)(x.numpy().ravel().view(np.uint32), out.numpy().ravel().view(np.uint32), seed, n, p, q, fq)
    return None if bad else out


@functools.lru_cache(maxsize=None)
def _arguments(fmt: FormatLike) -> tuple:
    """(``_params``, ``_fast_params``' two tuples, ``_kind``) of fmt: one cached lookup a call."""
    return (_params(fmt), *_fast_params(fmt), _kind(fmt))
