"""The integer datapath of DESIGN.md section 4, vectorised: quantisation, leading-one truncation,
multiplier, adder tree and accumulator. Every function is bit-identical to ``golden``.

Integers are held either in integer tensors (the operand functions) or in float tensors that
hold them exactly (the adder tree and accumulator: float32 below 2^24, float64 below 2^53), so
native matmuls can form exact sums. The in-place ``overflow_``/``drop_lsbs_`` accept both.

Symmetric quantisation: ``q = clamp(round_half_even(x / scale), -qmax, qmax)``,
``qmax = 2^(bits-1) - 1``, computed as ``round(float64(float32(x)) / float64(scale))``. That is the
exactly rounded quotient: x and scale are float32 (24-bit significands), so x / scale is either a
half-integer or at least 2^-34 (relative) away from every half-integer, far more than float64's
2^-53 rounding can cover. A dynamic scale is ``float32(max|x| / qmax)`` (1 where that is 0).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Callable

import torch

from vitaccel.arith.floatpath import exponent

if TYPE_CHECKING:
    from vitaccel.arith.config import IntDatapath

ROUNDINGS = ("truncate", "nearest", "unbiased")
OVERFLOWS = ("saturate", "wrap")
FLOAT32_EXACT = 2 ** 24   # float32 holds every integer of magnitude <= 2^24
FLOAT64_EXACT = 2 ** 53


def qmax(bits: int) -> int:
    """Largest magnitude of a symmetric ``bits``-bit integer."""
    return 2 ** (bits - 1) - 1


def describe(x: object) -> str:
    """A tensor's dtype or any other object's type name, for error messages."""
    return str(x.dtype) if isinstance(x, torch.Tensor) else type(x).__name__


def integer_tensor(q: torch.Tensor, name: str) -> torch.Tensor:
    """q as int64, or TypeError naming ``name`` unless it is an integer tensor."""
    if not isinstance(q, torch.Tensor) or q.dtype.is_floating_point or q.is_complex() or q.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor, got {describe(q)}")
    return q.long()


# -- quantisation -------------------------------------------------------------------------
def finite_abs_max(x: torch.Tensor, name: str, dim: int | list[int] | None = None) -> torch.Tensor:
    """max |x| (over all of x, or over ``dim`` with keepdim), or ValueError naming ``name`` when x
    holds NaN or inf (integer quantisation has no code for them). One ``aminmax`` pass where it
    can: NaN propagates into the extremes and an infinity is one."""
    if isinstance(dim, list):
        amax = x.abs().amax(dim=dim, keepdim=True) if dim else x.abs()
    else:
        lo, hi = torch.aminmax(x) if dim is None else torch.aminmax(x, dim=dim, keepdim=True)
        amax = torch.maximum(-lo, hi)
    if not bool(torch.isfinite(amax).all()):
        raise ValueError(f"{name} holds NaN or inf; integer quantisation needs finite values "
                         f"(found {int((~torch.isfinite(x)).sum())} of {x.numel()})")
    return amax


def scale_from_max(amax: torch.Tensor, bits: int) -> torch.Tensor:
    """Symmetric scale ``float32(amax / qmax)``; 1 where that is 0 (all-zero data)."""
    s = amax.float() / qmax(bits)
    return torch.where(s > 0, s, torch.ones_like(s))


def check_scale(scale: torch.Tensor, name: str) -> torch.Tensor:
    """A user scale as float32, refusing non-tensors and values that are not positive and finite."""
    if not isinstance(scale, torch.Tensor) or not scale.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating-point tensor, got {describe(scale)}")
    s = scale.float()
    if not bool(((s > 0) & torch.isfinite(s)).all()):
        raise ValueError(f"{name} must hold positive finite scales, got {s.flatten()[:4].tolist()}...")
    return s


def quantize_with_scale(x: torch.Tensor, scale: torch.Tensor, bits: int, dtype: torch.dtype = torch.float64
                        ) -> torch.Tensor:
    """``clamp(round_half_even(x / scale), -qmax, qmax)`` as a ``dtype`` tensor (exact; module docstring).

    The quotient is computed in float64, on a fresh copy of x.
    """
    m = qmax(bits)
    return x.float().double().div_(scale.double()).round_().clamp_(-m, m).to(dtype)


def quantize_int(x: torch.Tensor, bits: int = 8, axis: int | None = None, *, scale: torch.Tensor | None = None,
                 name: str = "x") -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantisation: ``(q, scale)`` with ``x ~ q * scale``.

    ``axis=None`` gives one scale for the tensor (0-d); ``axis=d`` one scale per index along dim
    d (max over the other dims; the scale keeps x's rank so it broadcasts). A given ``scale`` is
    used as is (float32). q is int8 for bits <= 8, else int16 (bits from 2 to 16).
    """
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a real floating-point tensor, got {describe(x)}")
    if not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits: value {bits!r} is not allowed; an integer from 2 to 16 is required")
    if axis is not None and (not isinstance(axis, int) or not -x.dim() <= axis < x.dim()):
        raise ValueError(f"axis: value {axis!r} is not allowed; None or a dim of x (rank {x.dim()})")
    others = None if axis is None else [d for d in range(x.dim()) if d != axis % x.dim()]
    amax = finite_abs_max(x, name, others)
    scale = scale_from_max(amax, bits) if scale is None else check_scale(scale, "scale")
    q = quantize_with_scale(x, scale, bits)
    return q.to(torch.int8 if bits <= 8 else torch.int16), scale


def dequantize_int(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``float32(float64(q) * float64(scale))``: one rounding for |q| < 2^29 and float32 scales."""
    return (q.double() * scale.double()).float().add_(0.0)


# -- leading-one truncation and the multiplier ------------------------------------------------
def _check_keep(keep_bits: int, rounding: str) -> None:
    if not isinstance(keep_bits, int) or isinstance(keep_bits, bool) or keep_bits < 1:
        raise ValueError(f"keep_bits: value {keep_bits!r} is not allowed; an integer >= 1 is required")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding: value {rounding!r} is not allowed; choose one of {list(ROUNDINGS)}")


def leading_one_fields(q: torch.Tensor, keep_bits: int, rounding: str = "truncate"
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(negative, t, s) of sign-magnitude leading-one truncation: ``|q| ~ t << s``, t < 2^keep_bits.

    p = position of the leading one of |q|; p < keep_bits: exact (t = |q|, s = 0). Otherwise
    s = p - keep_bits + 1 and ``truncate``: t = |q| >> s; ``nearest``: round half up, a carry to
    2^keep_bits renormalises (t = 2^(keep_bits-1), s + 1); ``unbiased``: (|q| >> s) | 1.
    """
    _check_keep(keep_bits, rounding)
    q = integer_tensor(q, "q")
    mag = q.abs()
    s = (exponent(mag.double()) - keep_bits + 1).clamp(min=0)
    if rounding == "truncate":
        t = mag >> s
    elif rounding == "nearest":
        t = (mag + ((1 << s) >> 1)) >> s
        carry = t == 2 ** keep_bits
        t = torch.where(carry, 2 ** (keep_bits - 1), t)
        s = s + carry.long()
    else:
        t = (mag >> s) | (s > 0).long()
    return q < 0, t, s


def leading_one_truncate(q: torch.Tensor, keep_bits: int, rounding: str = "truncate") -> torch.Tensor:
    """The signed value ``+-(t << s)`` the multiplier sees (int64); see ``leading_one_fields``."""
    neg, t, s = leading_one_fields(q, keep_bits, rounding)
    v = t << s
    return torch.where(neg, -v, v)


def multiply(a: torch.Tensor, w: torch.Tensor, keep_bits: int | None = None,
             rounding: str = "truncate") -> torch.Tensor:
    """The hardware product (int64): small multiplier ``t * w``, shifter ``<< s``, sign of a applied."""
    w = integer_tensor(w, "w")
    if keep_bits is None:
        return integer_tensor(a, "a") * w
    neg, t, s = leading_one_fields(a, keep_bits, rounding)
    p = (t * w) << s
    return torch.where(neg, -p, p)


@functools.lru_cache(maxsize=None)
def truncation_table(bits: int, keep_bits: int, rounding: str) -> torch.Tensor:
    """float32 table of ``leading_one_truncate(q)`` at index ``q + qmax(bits)``, for a one-gather lookup."""
    q = torch.arange(-qmax(bits), qmax(bits) + 1)
    return leading_one_truncate(q, keep_bits, rounding).float()


def product_max(dp: "IntDatapath") -> int:
    """Largest |product| the multiplier can form: max |truncated a| * qmax(b_bits)."""
    a_max = qmax(dp.a_bits)
    if dp.keep_bits is not None:
        a_max = int(truncation_table(dp.a_bits, dp.keep_bits, dp.keep_rounding).abs().max())
    return a_max * qmax(dp.b_bits)


# -- adder tree and accumulator --------------------------------------------------------------
def drop_lsbs_(x: torch.Tensor, drop: int, rounding: str = "truncate") -> torch.Tensor:
    """In place: ``x / 2^drop`` rounded to an integer, on two's complement integers held in x
    (an integer or float tensor). ``truncate``: floor (arithmetic shift right); ``nearest``: round
    half up; ``unbiased``: floor with the kept LSB forced to one. ``drop=0`` leaves x as it is.
    """
    if drop == 0:
        return x
    if rounding == "nearest":
        x.add_(2 ** (drop - 1))
    x.div_(2 ** drop, rounding_mode="floor")
    if rounding == "unbiased":
        x.sub_(torch.remainder(x, 2)).add_(1)
    return x


def overflow_(x: torch.Tensor, bits: int, mode: str) -> torch.Tensor:
    """In place: x brought into the signed ``bits``-bit range, ``saturate`` (clamp) or ``wrap``
    (two's complement)."""
    half = 2 ** (bits - 1)
    if mode == "saturate":
        return x.clamp_(-half, half - 1)
    return x.add_(half).remainder_(2 * half).sub_(half)


def partial_sum_(group_sum: torch.Tensor, dp: "IntDatapath") -> torch.Tensor:
    """In place: an exact adder-tree group sum as its ``psum_bits`` register keeps it (low bits
    dropped, then overflow), in units of 1."""
    d = dp.psum_drop_lsbs
    kept = drop_lsbs_(group_sum, d, dp.psum_rounding)
    if dp.psum_bits is not None:
        overflow_(kept, dp.psum_bits, dp.overflow)
    return kept.mul_(2 ** d) if d else kept


def group_passes_unchanged(dp: "IntDatapath") -> bool:
    """True when no group sum can be changed by the adder tree's register (no drop, no overflow)."""
    if dp.psum_drop_lsbs:
        return False
    return dp.psum_bits is None or dp.group_size * product_max(dp) <= qmax(dp.psum_bits)


def never_overflows(dp: "IntDatapath", k: int) -> bool:
    """True when a K-long dot product is the plain exact sum: nothing dropped, stored or overflowing."""
    storage = dp.psum_storage is not None and dp.psum_storage.codec is not None
    return not storage and group_passes_unchanged(dp) and k * product_max(dp) <= qmax(dp.acc_bits)


def _group_bound(dp: "IntDatapath") -> int:
    """Upper bound on |partial_sum| of one group."""
    raw = dp.group_size * product_max(dp) + (2 ** dp.psum_drop_lsbs if dp.psum_drop_lsbs else 0)
    if dp.psum_bits is None:
        return raw
    return min(raw, 2 ** (dp.psum_bits - 1 + dp.psum_drop_lsbs))


def step_length(dp: "IntDatapath", k: int, float32: bool) -> int:
    """K elements per native sum in the tiled tier: one group when the adder tree changes group
    sums, one storage tile when partial sums are stored, else as many as stay exact."""
    g = dp.group_size
    if not group_passes_unchanged(dp):
        return g
    if dp.psum_storage is not None:
        return dp.psum_storage.tile_k
    limit = FLOAT32_EXACT if float32 else FLOAT64_EXACT
    return max(g, min(k, limit // product_max(dp)) // g * g)


def accumulator_dtype(dp: "IntDatapath", step: int, float32: bool) -> torch.dtype:
    """float32 when every value the accumulator loop forms stays an exact float32 integer."""
    acc = 2 ** (dp.acc_bits - 1)
    peak = acc + max(step * product_max(dp), _group_bound(dp) + dp.group_size * product_max(dp))
    if dp.overflow == "wrap":
        peak += acc
    return torch.float32 if float32 and peak <= FLOAT32_EXACT else torch.float64


def accumulate(sums: Callable[[int, int], torch.Tensor], k: int, dp: "IntDatapath", acc: torch.Tensor,
               step: int) -> torch.Tensor:
    """The adder tree and accumulator over K, in K order, from exact sums of products.

    ``sums(k0, k1)`` is the exact sum of the products of elements k0..k1-1: a fresh tensor (it is
    modified) shaped like ``acc``, the zero accumulator in its working dtype (updated in place).
    With ``step == group_size`` every group goes through ``partial_sum_`` and the accumulator's
    overflow rule one by one; with longer steps (only when group sums pass unchanged) whole
    steps are added at once where that is provably the same: no overflow possible (a running
    bound), ``wrap`` (modular sums), or a ``saturate`` guard on the accumulator's current
    maximum; otherwise the step is redone per group. Every ``tile_k`` elements with more K to come, the accumulator goes through the
    storage codec (and its overflow rule if the decoded value may exceed the range).
    """
    g = dp.group_size
    acc_max = qmax(dp.acc_bits)
    codec = dp.psum_codec()
    tile = dp.psum_storage.tile_k if dp.psum_storage is not None else None
    pmax = product_max(dp)
    bound = 0                                              # upper bound on |acc|

    def add(acc: torch.Tensor, s: torch.Tensor, s_bound: int) -> tuple[torch.Tensor, int]:
        if bound + s_bound <= acc_max:
            return acc.add_(s), bound + s_bound
        return overflow_(acc.add_(s), dp.acc_bits, dp.overflow), acc_max + 1

    for k0 in range(0, k, step):
        k1 = min(k0 + step, k)
        if step == g:
            acc, bound = add(acc, partial_sum_(sums(k0, k1), dp), _group_bound(dp))
        elif bound + (k1 - k0) * pmax <= acc_max or dp.overflow == "wrap":
            acc, bound = add(acc, sums(k0, k1), (k1 - k0) * pmax)
        else:
            top = int(acc.abs().amax()) if acc.numel() else 0
            if top + (k1 - k0) * pmax <= acc_max:          # no prefix of this step can saturate
                acc, bound = acc.add_(sums(k0, k1)), top + (k1 - k0) * pmax
            else:
                for g0 in range(k0, k1, g):
                    bound = acc_max + 1
                    acc = overflow_(acc.add_(sums(g0, min(g0 + g, k1))), dp.acc_bits, dp.overflow)
        if codec is not None and k1 % tile == 0 and k1 < k:
            acc = codec.apply_(acc)                        # |acc| <= 2^(acc_bits-1) <= codec.max_value
            bound = int(codec.apply(torch.tensor(float(bound), dtype=torch.float64)))
            if bound > acc_max:
                acc, bound = overflow_(acc, dp.acc_bits, dp.overflow), acc_max + 1
    return acc
