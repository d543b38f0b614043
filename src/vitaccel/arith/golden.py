"""The scalar golden model: every datapath of DESIGN.md, one number or one dot product at a time.

Pure Python integers and ``fractions.Fraction``; slow on purpose and written to be obviously
correct. Every fast path in ``vitaccel.arith`` is tested for bit-exact equality against it.
Values are exact ``Fraction``s while finite; infinities and NaN are Python floats, and signed
zero is carried as ``-0.0`` where a result can be negative zero.
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Sequence

import torch

from vitaccel.arith.config import ZERO_WEIGHT_SCALE, AcceleratorConfig, FloatDatapath, IntDatapath
from vitaccel.arith.formats import FloatFormat
from vitaccel.arith.mx import (
    E8M0_BIAS,
    E8M0_NAN,
    INT8_FRACTION_BITS,
    INT8_MAX,
    SCALE_MAX,
    SCALE_MIN,
    MXFormat,
    operand_format,
)
from vitaccel.arith.psum import Codec, FloatCodec, TruncCodec

Number = Fraction | float

# float32 as (mantissa bits, min normal exponent, max exponent) for rounding Fractions
F32 = (23, -126, 127)


def exponent(v: Fraction) -> int:
    """floor(log2(|v|)) for v != 0, by exact comparisons (no float log2)."""
    v = abs(v)
    e = v.numerator.bit_length() - v.denominator.bit_length()
    if Fraction(2) ** e > v:
        e -= 1
    return e


def round_real(v: Fraction, man_bits: int, emin: int, max_value: Fraction, rounding: str = "nearest_even",
               u: Fraction | None = None, overflow: str = "inf", stochastic_bits: int | None = None,
               bias: int | None = None) -> Number:
    """Round the real ``v`` to a binary float with ``man_bits`` fraction bits and min normal 2^emin.

    The result is ``kept`` or ``kept + 1`` quanta, ``frac`` the fraction of a quantum between them:
    ``nearest_even`` goes up iff frac > 1/2, or frac = 1/2 and the code is odd (the even
    significand, or with ``man_bits=0`` (one value per binade) the even exponent field q + ``bias``,
    bias 1 - emin unless given, as P3109 and gfloat do); ``ties_away`` iff frac >= 1/2;
    ``toward_zero`` never; ``up`` / ``down`` iff frac > 0 and v > 0 / v < 0; ``stochastic`` iff
    frac + u >= 1 (``u`` in [0, 1) the draw), with
    ``stochastic_bits=n`` iff floor(frac * 2^n) / 2^n + u >= 1 (u = r / 2^n).
    Overflow beyond ``max_value`` gives +-inf (``overflow="inf"``), +-max (``"saturate"``, and
    whenever the rounding truncated the magnitude) or NaN (``"nan"``). A zero result keeps the
    sign of ``v`` (returned as -0.0 for negative v).
    """
    if v == 0:
        return Fraction(0)
    sign = -1 if v < 0 else 1
    a = abs(v)
    q = max(exponent(a), emin) - man_bits          # exponent of the quantum at |v|
    n = a / Fraction(2) ** q
    kept = math.floor(n)
    frac = n - kept
    if rounding == "nearest_even":
        field = q + (1 - emin if bias is None else bias)
        code = field if man_bits == 0 and kept else kept  # the code's parity is kept's for man_bits > 0
        up = frac > Fraction(1, 2) or (frac == Fraction(1, 2) and code % 2 == 1)
    elif rounding == "ties_away":
        up = frac >= Fraction(1, 2)
    elif rounding == "toward_zero":
        up = False
    elif rounding in ("up", "down"):
        up = frac > 0 and sign == (1 if rounding == "up" else -1)
    elif rounding == "stochastic":
        if stochastic_bits is not None:
            frac = Fraction(math.floor(frac * 2 ** stochastic_bits), 2 ** stochastic_bits)
        up = frac + u >= 1
    else:
        raise ValueError(f"rounding={rounding!r} is unknown")
    truncated = rounding == "toward_zero" or (rounding == "up" and sign < 0) or (rounding == "down" and sign > 0)
    r = (kept + up) * Fraction(2) ** q
    if r > max_value:
        if overflow == "saturate" or truncated:
            r = max_value
        elif overflow == "nan":
            return math.nan
        else:
            return sign * math.inf
    if r == 0:
        return -0.0 if sign < 0 else Fraction(0)
    return sign * r


# -- floating-point formats ---------------------------------------------------------------
def decode(fmt: FloatFormat, code: int) -> Number:
    """The value of one code, straight from the definition in DESIGN.md section 2."""
    m, e_bits = fmt.man_bits, fmt.exp_bits
    code &= 2 ** fmt.bits - 1
    s = code >> (e_bits + m) if fmt.signed else 0
    e_field = (code >> m) & (2 ** e_bits - 1)
    man = code & (2 ** m - 1)
    sign = -1 if s else 1
    if fmt.specials == "e8m0":  # no zero, no subnormal: every field but all ones is a power of two
        return math.nan if e_field == 2 ** e_bits - 1 else Fraction(2) ** (e_field - fmt.bias)
    if fmt.specials == "ieee" and e_field == 2 ** e_bits - 1:
        return math.nan if man else sign * math.inf
    if fmt.specials == "fn" and e_field == 2 ** e_bits - 1 and man == 2 ** m - 1:
        return math.nan
    if fmt.specials in ("fnuz", "p3109") and code == 2 ** (fmt.bits - 1):
        return math.nan  # the sign-bit-only code: no -0 in these formats
    if fmt.specials == "p3109" and code & (2 ** (fmt.bits - 1) - 1) == 2 ** (fmt.bits - 1) - 1:
        return sign * math.inf
    if e_field == 0:
        value = Fraction(man, 2 ** m) * Fraction(2) ** (1 - fmt.bias) if fmt.subnormals else Fraction(0)
    else:
        value = (1 + Fraction(man, 2 ** m)) * Fraction(2) ** (e_field - fmt.bias)
    if value == 0:
        return -0.0 if s else Fraction(0)
    return sign * value


@functools.lru_cache(maxsize=None)
def format_max(fmt: FloatFormat) -> Fraction:
    """Largest finite value, by scanning every non-negative code (above 16 bits, where that is too
    many, the codes of the two top binades' last 4 mantissas: ieee, fn and p3109 reserve at most
    the top binade or its top code)."""
    mags = 2 ** (fmt.exp_bits + fmt.man_bits)
    if fmt.bits <= 16:
        codes = range(mags)
    else:
        top = [(mags >> fmt.man_bits) - k for k in (1, 2)]
        mans = range(max(0, 2 ** fmt.man_bits - 4), 2 ** fmt.man_bits)
        codes = [(f << fmt.man_bits) + man for f in top for man in mans]
    return max(v for c in codes if isinstance(v := decode(fmt, c), Fraction))


def quantize(fmt: FloatFormat, x: float, rounding: str = "nearest_even", u: Fraction | None = None,
             stochastic_bits: int | None = None) -> Number:
    """One float (exact value of a float32/float64) rounded to ``fmt``, semantics of DESIGN.md 2."""
    if not fmt.signed and (x < 0 or math.isnan(x)):  # -0 is not below 0: it gives +0
        if fmt.nan_code is None:
            raise ValueError("a negative value or NaN cannot be stored in an unsigned format without NaN")
        return math.nan
    if math.isnan(x):
        if fmt.specials == "finite":
            if fmt.nan == "raise":
                raise ValueError("NaN cannot be stored in a finite format")
            return Fraction(0)
        return math.nan
    top = format_max(fmt)
    if math.isinf(x):
        if fmt.specials in ("ieee", "p3109"):
            return x
        if fmt.specials in ("fnuz", "e8m0") and not fmt.saturate:
            return math.nan
        return top if x > 0 else -top
    if fmt.saturate or fmt.specials in ("fn", "finite"):
        overflow = "saturate"
    else:
        overflow = "nan" if fmt.specials in ("fnuz", "e8m0") else "inf"
    if fmt.specials == "e8m0":  # no zero: below the smallest value 2^emin everything rounds to it
        if abs(Fraction(x)) <= Fraction(2) ** fmt.emin:
            return Fraction(2) ** fmt.emin
        return round_real(Fraction(x), 0, fmt.emin, top, rounding, u, overflow, stochastic_bits, bias=fmt.bias)
    # without subnormals the neighbours below min_normal are 0 and min_normal: round between them
    tiny = not fmt.subnormals and abs(Fraction(x)) < Fraction(2) ** fmt.emin
    r = round_real(Fraction(x), 0 if tiny else fmt.man_bits, fmt.emin, top, rounding, u, overflow, stochastic_bits)
    if x == 0:
        r = -0.0 if math.copysign(1.0, x) < 0 else Fraction(0)
    if not fmt.negative_zero and r == 0:
        return Fraction(0)  # the code that would be -0 is NaN: a zero is +0
    return r


# -- OCP MX block formats (the spec's text is in arith/mx.py) ----------------------------------
def mx_shared_exponent(fmt: MXFormat, block: Sequence[float]) -> int | None:
    """floor(log2(max |V|)) - emax_elem, clamped to E8M0's [-127, 127] (-127 for a block of zeros);
    None (the NaN scale) when the block holds NaN or infinity."""
    if any(math.isnan(v) or math.isinf(v) for v in block):
        return None
    amax = max((abs(Fraction(v)) for v in block), default=Fraction(0))
    if amax == 0:
        return SCALE_MIN
    return max(SCALE_MIN, min(SCALE_MAX, exponent(amax) - fmt.emax_elem))


def mx_element(fmt: MXFormat, v: float, rounding: str = "nearest_even") -> Number:
    """One scaled element V / X rounded to the element format, clamped to its max normal."""
    if fmt.element == "int8":
        n = Fraction(v) * 2 ** INT8_FRACTION_BITS
        k = round(n) if rounding == "nearest_even" else math.trunc(n)   # round(): half to even
        return Fraction(max(-INT8_MAX, min(INT8_MAX, k)), 2 ** INT8_FRACTION_BITS)
    return quantize(fmt.element_format, v, rounding)                # saturating element formats


def mx_block_elements(fmt: MXFormat, block: Sequence[float],
                      rounding: str = "nearest_even") -> tuple[int | None, list[Number]]:
    """One block's shared exponent (None: the NaN scale) and its elements P_i = V_i / X rounded to the
    element format (-0.0 where a negative value rounds to a zero element of a float element format;
    0 for every element of a NaN-scale block)."""
    shared = mx_shared_exponent(fmt, block)
    if shared is None:
        return None, [Fraction(0)] * len(block)
    x = Fraction(2) ** shared
    return shared, [mx_element(fmt, math.copysign(float(Fraction(v) / x), v), rounding) for v in block]  # exact


def mx_quantize(fmt: MXFormat, values: Sequence[float], rounding: str = "nearest_even") -> list[Number]:
    """Values ``X * P_i`` of one vector converted to ``fmt`` in blocks of ``fmt.block`` from index 0
    (the last block may be partial), OCP MX v1.0 section 6.3: NaN for every element of a NaN-scale
    block, -0.0 where a negative value rounds to a zero element of a float element format."""
    out: list[Number] = []
    for start in range(0, len(values), fmt.block):
        shared, elements = mx_block_elements(fmt, values[start:start + fmt.block], rounding)
        if shared is None:
            out += [math.nan] * len(elements)
            continue
        x = Fraction(2) ** shared
        out += [p if isinstance(p, float) else p * x for p in elements]              # -0.0 stays -0.0
    return out


def mx_value(fmt: MXFormat, code: int, scale: int) -> Number:
    """The exact value ``X * P`` of one element code under one E8M0 scale code (MX 5.1): NaN when
    the scale is 0xFF (whatever P is); an element NaN, infinity or -0 is kept."""
    if scale & 0xFF == E8M0_NAN:
        return math.nan
    if fmt.element == "int8":
        c = code & 0xFF
        p: Number = Fraction(c - 256 if c >= 128 else c, 2 ** INT8_FRACTION_BITS)
    else:
        p = decode(fmt.element_format, code)
    return p if isinstance(p, float) else p * Fraction(2) ** ((scale & 0xFF) - E8M0_BIAS)


def operand_values(fmt: FloatFormat | MXFormat, values: Sequence[float], rounding: str) -> list[Number]:
    """One operand vector (a row of a, a column of b: along K) rounded to its format."""
    if isinstance(fmt, MXFormat):
        return mx_quantize(fmt, values, rounding)
    return [quantize(fmt, x, rounding) for x in values]


def to_float(v: Number) -> float:
    """Exact Python float of a golden value (all golden values are float64-representable)."""
    return v if isinstance(v, float) else float(v)


# -- float datapath (DESIGN.md section 3) ---------------------------------------------------
def fp_mul(a: Number, b: Number) -> Number:
    """Exact product with IEEE special-value rules (the multiplier never rounds)."""
    if isinstance(a, float) or isinstance(b, float):
        return float(a) * float(b)  # inf/nan/-0 rules of IEEE; exact whenever finite here
    return a * b


def _special_sum(values: Sequence[Number]) -> float | None:
    """IEEE result of summing values that include inf or NaN; None when all are finite."""
    specials = [v for v in values if isinstance(v, float) and not math.isfinite(v)]
    if not specials:
        return None
    return math.fsum(specials) if not any(math.isnan(v) for v in specials) and \
        not (math.inf in specials and -math.inf in specials) else math.nan


def align(products: Sequence[Fraction], align_bits: int | None, rounding: str) -> list[Fraction]:
    """Align every product of one adder-tree group to the group's largest exponent."""
    if align_bits is None:
        return list(products)
    nonzero = [p for p in products if p != 0]
    if not nonzero:
        return [Fraction(0)] * len(products)
    quantum = Fraction(2) ** (max(exponent(p) for p in nonzero) - align_bits)
    out = []
    for p in products:
        n = p / quantum
        k = math.trunc(n)
        if rounding == "nearest_even":
            frac = abs(n - k)
            if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and k % 2):
                k += 1 if n > 0 else -1
        out.append(k * quantum)
    return out


def round_to(fmt: FloatFormat, v: Fraction) -> Number:
    """The exact ``v`` rounded to the accumulator format ``fmt`` (nearest even, overflow to inf)."""
    return round_real(v, fmt.man_bits, fmt.emin, format_max(fmt))


def acc_add(fmt: FloatFormat, acc: Number, x: Number) -> Number:
    """One accumulator add in format ``fmt``, correctly rounded (IEEE rules for specials and signed
    zeros: -0 + -0 = -0, any other exact zero sum +0)."""
    if isinstance(acc, float) or isinstance(x, float):
        if not (math.isfinite(float(acc)) and math.isfinite(float(x))):
            return float(acc) + float(x)
        if acc == 0 and x == 0 and math.copysign(1.0, float(acc)) < 0 and math.copysign(1.0, float(x)) < 0:
            return -0.0
        acc, x = Fraction(acc), Fraction(x)
    return round_to(fmt, acc + x)


def f32_add(acc: Number, x: Number) -> Number:
    """One float32 accumulator add, correctly rounded (IEEE rules for specials)."""
    return acc_add(FP32, acc, x)


F32_MAX = (2 - Fraction(1, 2 ** 23)) * Fraction(2) ** 127
FP32 = FloatFormat.named("fp32")


def dot_float(a: Sequence[float], b: Sequence[float], config: AcceleratorConfig) -> float:
    """One output of the float datapath: quantise, multiply exactly, adder tree, accumulate (each
    group sum and each accumulator add rounded to ``float_datapath.accumulator``)."""
    fp = config.float_datapath
    fa, fb = operand_format(fp.a_format, fp.mx_block), operand_format(fp.b_format, fp.mx_block)
    qa, qb = operand_values(fa, a, fp.operand_rounding), operand_values(fb, b, fp.operand_rounding)
    return dot_values(qa, qb, fp)


def dot_values(qa: Sequence[Number], qb: Sequence[Number], fp: FloatDatapath) -> float:
    """``dot_float`` of operands already in their formats (golden values, e.g. ``decode`` or
    ``mx_value`` of codes): exact products, adder tree, accumulation."""
    facc = FloatFormat.named(fp.accumulator)
    products = [fp_mul(x, y) for x, y in zip(qa, qb)]
    acc: Number = Fraction(0)
    for start in range(0, len(products), fp.group_size):
        group = products[start:start + fp.group_size]
        special = _special_sum(group)
        if special is not None:
            group_sum: Number = special
        else:
            exact = [Fraction(p) for p in group]  # -0.0 products are zeros here
            group_sum = round_to(facc, sum(align(exact, fp.align_bits, fp.align_rounding), Fraction(0)))
        acc = acc_add(facc, acc, group_sum)
    return to_float(acc)


# -- integer datapath (DESIGN.md sections 4 and 5) --------------------------------------------
F64_MAX = (2 - Fraction(1, 2 ** 52)) * Fraction(2) ** 1023


def int_qmax(bits: int) -> int:
    """Largest magnitude of a symmetric ``bits``-bit integer."""
    return 2 ** (bits - 1) - 1


def int_scale(amax: float, bits: int) -> float:
    """Dynamic symmetric scale: ``float32(amax / qmax)``, or 1 when that is 0."""
    s = round_real(Fraction(amax) / int_qmax(bits), *F32[:2], F32_MAX)
    return float(s) if s != 0 else 1.0


def int_quantize(x: float, scale: float, bits: int) -> int:
    """``clamp(round_half_even(x / scale), -qmax, qmax)`` on exact values (Fraction rounds half to even)."""
    m = int_qmax(bits)
    return max(-m, min(m, round(Fraction(x) / Fraction(scale))))


def lot_fields(a: int, keep_bits: int, rounding: str) -> tuple[bool, int, int]:
    """(negative, t, s) of leading-one truncation of ``a``, as DESIGN.md section 4 words it."""
    mag = abs(a)
    p = mag.bit_length() - 1                      # position of the leading one (-1 for zero)
    if p < keep_bits:
        return a < 0, mag, 0
    s = p - keep_bits + 1
    if rounding == "truncate":
        t = mag >> s
    elif rounding == "nearest":
        t = (mag + 2 ** (s - 1)) >> s
        if t == 2 ** keep_bits:
            t, s = 2 ** (keep_bits - 1), s + 1
    elif rounding == "unbiased":
        t = (mag >> s) | 1
    else:
        raise ValueError(f"rounding={rounding!r} is unknown")
    return a < 0, t, s


def int_multiply(a: int, w: int, keep_bits: int | None, rounding: str) -> int:
    """Small multiplier ``t * w``, shifter ``<< s``, sign of a."""
    if keep_bits is None:
        return a * w
    neg, t, s = lot_fields(a, keep_bits, rounding)
    p = (t * w) << s
    return -p if neg else p


def drop_lsbs(x: int, drop: int, rounding: str) -> int:
    """Two's complement x without its low ``drop`` bits: floor, half up, or floor with LSB forced to 1."""
    if drop == 0:
        return x
    if rounding == "nearest":
        return (x + 2 ** (drop - 1)) >> drop
    return (x >> drop) | 1 if rounding == "unbiased" else x >> drop


def overflow(x: int, bits: int, mode: str) -> int:
    """x in the signed ``bits``-bit range: clamp (``saturate``) or two's complement (``wrap``)."""
    lo, hi = -2 ** (bits - 1), 2 ** (bits - 1) - 1
    if mode == "saturate":
        return max(lo, min(hi, x))
    return (x - lo) % 2 ** bits + lo


def float_codec(codec: FloatCodec, v: Fraction) -> Fraction:
    """What a FloatCodec stores for v and reads back: sign, shift, man_bits from the leading one."""
    if v == 0:
        return Fraction(0)
    m, smax = codec.man_bits, 2 ** codec.exp_bits - 1
    s = min(max(exponent(v) - (m - 1) + codec.bias, 0), smax)
    n = abs(v) / Fraction(2) ** (s - codec.bias)
    t = round(n) if codec.rounding == "nearest_even" else math.floor(n)
    if t == 2 ** m and s < smax:
        t, s = 2 ** (m - 1), s + 1
    t = min(t, 2 ** m - 1)                        # saturate at the top shift
    r = t * Fraction(2) ** (s - codec.bias)
    return -r if v < 0 else r


def trunc_codec(codec: TruncCodec, v: int) -> int:
    """What a TruncCodec stores for the integer v and reads back."""
    kept = overflow(drop_lsbs(v, codec.drop_bits, codec.rounding), codec.bits, "saturate")
    return kept * 2 ** codec.drop_bits


def codec_apply(codec: Codec, v: Fraction | int) -> Fraction:
    """A FloatCodec or TruncCodec round trip of one value."""
    return float_codec(codec, Fraction(v)) if hasattr(codec, "man_bits") else Fraction(trunc_codec(codec, int(v)))


def dot_int(qa: Sequence[int], qb: Sequence[int], dp: IntDatapath) -> int:
    """The accumulator after one dot product of quantised operands (an ``IntDatapath`` dp)."""
    k, g = len(qa), dp.group_size
    products = [int_multiply(x, w, dp.keep_bits, dp.keep_rounding) for x, w in zip(qa, qb)]
    codec = dp.psum_codec()
    acc = 0
    for start in range(0, k, g):
        kept = drop_lsbs(sum(products[start:start + g]), dp.psum_drop_lsbs, dp.psum_rounding)
        if dp.psum_bits is not None:
            kept = overflow(kept, dp.psum_bits, dp.overflow)
        acc = overflow(acc + kept * 2 ** dp.psum_drop_lsbs, dp.acc_bits, dp.overflow)
        end = min(start + g, k)
        if codec is not None and end % dp.psum_storage.tile_k == 0 and end < k:
            decoded = codec_apply(codec, acc)
            assert decoded.denominator == 1, "partial-sum codecs store integers"
            acc = overflow(int(decoded), dp.acc_bits, dp.overflow)
    return acc


def int_dequantize(acc: int, a_scale: float, b_scale: float) -> float:
    """``float32(float64(acc * (a_scale * b_scale)))``: exact scale product, two roundings; +0 for zero."""
    r64 = round_real(acc * Fraction(a_scale) * Fraction(b_scale), 52, -1022, F64_MAX)
    if isinstance(r64, float):
        return r64 + 0.0
    return to_float(round_real(r64, *F32[:2], F32_MAX)) + 0.0


def _int_matrix(a: list, b: list, a_scale: float | None, b_scales: list[float], dp: IntDatapath) -> list:
    """One (M, K) @ (K, N) product of float32 values on the integer datapath; ``a_scale`` None
    gives each row its own scale ``int_scale(max|row|)`` (per_token)."""
    row_scales = activation_scales(a, dp, a_scale)
    qa = [[int_quantize(x, s, dp.a_bits) for x in row] for row, s in zip(a, row_scales)]
    cols = [[int_quantize(row[n], s, dp.b_bits) for row in b] for n, s in enumerate(b_scales)]
    return [[int_dequantize(dot_int(row, col, dp), s, b_scales[n]) for n, col in enumerate(cols)]
            for row, s in zip(qa, row_scales)]


def activation_scales(a: list, dp: IntDatapath, a_scale: float | None) -> list[float]:
    """The scale of every row of one (M, K) activation: ``a_scale`` for all (per_tensor), or, when
    None, each row's own ``int_scale(max|row|)`` (per_token)."""
    return [int_scale(max(abs(x) for x in row), dp.a_bits) if a_scale is None else a_scale for row in a]


def column_scales(b: list, dp: IntDatapath, b_scale: torch.Tensor | None) -> list[float]:
    """Weight scales of one (K, N) matrix: given (0-d or (N,)) or one per column; then the scale codec."""
    n = len(b[0])
    if b_scale is None:
        scales = [int_scale(max(abs(row[c]) for row in b), dp.b_bits) for c in range(n)]
    else:
        scales = [float(b_scale.float())] * n if b_scale.dim() == 0 else b_scale.float().tolist()
    codec = dp.weight_scale_codec()
    if codec is None:
        return scales
    coded = [float(float_codec(codec, Fraction(s))) for s in scales]
    if not all(s > 0 for s in coded):  # as emulated_matmul refuses it
        raise ValueError(ZERO_WEIGHT_SCALE)
    return coded


def matmul(a: torch.Tensor, b: torch.Tensor, config: "AcceleratorConfig | str | dict",
           a_scale: torch.Tensor | None = None, b_scale: torch.Tensor | None = None) -> torch.Tensor:
    """The golden model of ``emulated_matmul``: a (..., M, K) @ b (K, N) or (..., K, N), one dot
    product at a time, batch dims broadcast. Integer datapaths take the same optional scales."""
    config = AcceleratorConfig.load(config)
    if config.datapath == "native":
        raise ValueError("golden.matmul: the native datapath has no golden model; it is the host's float32 matmul")
    if config.datapath == "float" and (a_scale is not None or b_scale is not None):
        raise ValueError("golden.matmul: a_scale/b_scale are for integer datapaths")
    m, n = a.shape[-2], b.shape[-1]
    batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if config.datapath == "int":
        a, b = a.float(), b.float()
        dp = config.int_datapath
        if dp.activation_scale == "per_token":
            if a_scale is not None:
                raise ValueError("golden.matmul: a per_token datapath takes no a_scale (each row is scaled)")
            a_s = None
        else:
            a_s = int_scale(float(a.abs().max()), dp.a_bits) if a_scale is None else float(a_scale.float())
    mats_a = a.expand(*batch, *a.shape[-2:]).reshape(-1, m, a.shape[-1]).double().tolist()
    mats_b = b.expand(*batch, *b.shape[-2:]).reshape(-1, b.shape[-2], n).double().tolist()
    out = []
    for ma, mb in zip(mats_a, mats_b):
        if config.datapath == "int":
            out.append(_int_matrix(ma, mb, a_s, column_scales(mb, dp, b_scale), dp))
        else:
            cols = [list(c) for c in zip(*mb)]
            out.append([[dot_float(row, col, config) for col in cols] for row in ma])
    return torch.tensor(out, dtype=torch.float32).reshape(*batch, m, n)
