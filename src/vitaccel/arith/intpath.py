"""The integer primitives of DESIGN.md section 4, vectorised: quantisation, leading-one truncation,
the multiplier, and the registers' LSB dropping and overflow. Every function is bit-identical to
``golden``; none reads a config (the tiers in ``int_tiers`` plan with these primitives).

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

import torch

from vitaccel.arith.bits import FLOAT32_EXACT, FLOAT64_EXACT, describe, exponent, integer_tensor, qmax
from vitaccel.errors import UserError

__all__ = ["FLOAT32_EXACT", "FLOAT64_EXACT", "OVERFLOWS", "ROUNDINGS", "check_scale", "dequantize_int", "describe",
           "drop_lsbs_", "finite_abs_max", "integer_tensor", "leading_one_fields", "leading_one_truncate", "multiply",
           "overflow_", "qmax", "quantize_int", "quantize_with_scale", "scale_from_max", "truncation_table"]

ROUNDINGS = ("truncate", "nearest", "unbiased")
OVERFLOWS = ("saturate", "wrap")


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
        raise UserError(f"{name} holds NaN or inf; integer quantisation needs finite values "
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
        raise UserError(f"{name} must hold positive finite scales, got {s.flatten()[:4].tolist()}...")
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
        raise UserError(f"bits: value {bits!r} is not allowed; an integer from 2 to 16 is required")
    if axis is not None and (not isinstance(axis, int) or not -x.dim() <= axis < x.dim()):
        raise UserError(f"axis: value {axis!r} is not allowed; None or a dim of x (rank {x.dim()})")
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
        raise UserError(f"keep_bits: value {keep_bits!r} is not allowed; an integer >= 1 is required")
    if rounding not in ROUNDINGS:
        raise UserError(f"rounding: value {rounding!r} is not allowed; choose one of {list(ROUNDINGS)}")


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
    if x.is_floating_point():  # exact: a power-of-two scaling, then floor (faster than a floor division)
        x.mul_(2.0 ** -drop).floor_()
    else:
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
