"""The CPU speed route behind ``FloatFormat.quantize`` for every rounding (nearest_even where no
cast route of ``_fastcast`` applies; stochastic with the encoder's draws: ``stochastic``).

``quantize(fmt, x, rounding)`` gives the same bits as ``fmt.decode(fmt.encode(x, rounding))`` for
a contiguous float32 CPU ``x``, by integer operations on the float32 bit patterns and exact float
scalings, in cache-sized pieces, in NumPy (whose calls cost about a microsecond where torch's cost
several). Values its passes cannot decide (overflow, infinity, NaN) go to the integer encoder.
Imports nothing of vitaccel (``fmt`` brings its own methods).

The pieces, with m = fmt.man_bits and d = 23 - m the float32 fraction bits a rounding drops:

* **bit rounding** (``_round_bits``): on the bit pattern of a float32 of magnitude at least
  fmt.min_normal, the rounding to fmt's quantum 2^(e - m) is an integer rounding of the pattern
  at bit d (a carry out of the fraction lands in the exponent): toward_zero masks the low d bits,
  ties_away adds 2^(d-1) first, nearest_even adds 2^(d-1) - 1 and the kept lowest bit, ``up`` /
  ``down`` add 2^d - 1 to positive / negative patterns. The sign bit stays.
* **subnormal grid** (``_round_grid``): below min_normal fmt's values are the multiples of one
  quantum q0 = 2^(emin - m) (2^emin without subnormals), so the rounding there is
  ``R(x / q0) * q0``, both scalings exact, R NumPy's ``rint``/``trunc``/``ceil``/``floor``
  (ties_away: ``t + trunc(2 (v - t))`` with t = ``trunc(v)``, each step exact, v's sign kept).
* **directed modes** (toward_zero, up, down, with subnormals): ``R(x / q0) * q0`` on the whole
  piece, then the bit rounding of that: directed roundings on nested grids compose (q0 divides
  every quantum of fmt), and on values below min_normal the bit rounding keeps them (multiples of
  q0 have zero low d bits). No value is singled out.
* **nearest modes** (and directed ones without subnormals, whose grid below min_normal does not
  divide the one above): the bit rounding of x on the whole piece, then the few values below
  min_normal (found by one shift and ``min`` per piece) rounded on the subnormal grid and put back.
* **stochastic**: the encoder's draws added to the bit pattern before the toward_zero mask; values
  below min_normal take the encoder with their draws.

Where |x| <= fmt.max (checked per piece by ``min``/``max`` of x, or ``max`` of the shifted
patterns) the result is fmt's rounding, as every rounding of such x is a value of fmt; for the few
other values (overflow: infinity or max by the mode, sign and format; infinity; NaN and its
canonical code) the encoder is called once.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable, NamedTuple, Protocol

import numpy as np
import torch

_CHUNK = 2 ** 15  # elements per piece: the piece and its two scratch arrays stay in the core's L2
_MODES = ("nearest_even", "ties_away", "toward_zero", "up", "down")
_GRID_ROUND = {"nearest_even": np.rint, "toward_zero": np.trunc, "up": np.ceil, "down": np.floor}


class FloatFormat(Protocol):
    """What this route reads of a ``formats.FloatFormat`` (not imported: ``formats`` imports this)."""

    man_bits: int
    subnormals: bool

    @property
    def emin(self) -> int: ...
    @property
    def max(self) -> float: ...
    @property
    def negative_zero(self) -> bool: ...
    def encode(self, x: torch.Tensor, rounding: str = ...) -> torch.Tensor: ...
    def _encode(self, x: torch.Tensor, rounding: str, stochastic_bits: int | None,
                draws: torch.Tensor | None) -> torch.Tensor: ...
    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...


class _Plan(NamedTuple):
    """The constants of one format and rounding: ``directed`` selects the whole-piece subnormal
    grid; magnitudes (as doubled bit patterns, keys) below ``small`` take the subnormal grid,
    those above ``top`` (key ``top_key``) the encoder; ``grid`` is q0 (None: no value below
    min_normal needs it) and ``inv`` 1 / q0."""

    rounding: str
    directed: bool
    d: int
    mask: np.uint32
    small: np.uint32
    top: float
    top_key: np.uint32
    grid: np.float32 | None
    inv: np.float32 | None
    plus_zero: bool


@functools.lru_cache(maxsize=None)
def _plan(fmt: FloatFormat, rounding: str) -> _Plan | None:
    """How this route rounds fmt, or None where it does not apply: nearest_even with man_bits=0
    (its tie goes to the even exponent field, not the even pattern) and grids 1 / q0 does not hold."""
    m = fmt.man_bits
    if rounding not in _MODES or (rounding == "nearest_even" and m == 0):
        return None
    step = fmt.emin - (m if fmt.subnormals else 0)  # q0 = 2^step
    every = fmt.subnormals and fmt.emin == -126  # float32's own subnormals are fmt's: bit rounding is exact
    if not every and step < -127:  # 1 / q0 = 2^-step must be a float32
        return None
    grid = None if every else np.float32(2.0 ** step)
    inv = None if every else np.float32(2.0 ** -step)
    small = 0 if every else 2 * int(np.float32(2.0 ** fmt.emin).view(np.uint32))
    directed = rounding in ("toward_zero", "up", "down") and fmt.subnormals
    return _Plan(rounding, directed, 23 - m, np.uint32((0xFFFFFFFF << (23 - m)) & 0xFFFFFFFF), np.uint32(small),
                 float(fmt.max), np.uint32(2 * int(np.float32(fmt.max).view(np.uint32))), grid, inv,
                 not fmt.negative_zero)


def quantize(fmt: FloatFormat, x: torch.Tensor, rounding: str) -> torch.Tensor | None:
    """``fmt.quantize(x, rounding)`` (contiguous float32 CPU ``x``, a deterministic rounding) as
    float32, or None where this route does not apply (the caller then runs the integer encoder)."""
    plan = _plan(fmt, rounding)
    if plan is None or not x.is_cpu or x.dtype != torch.float32 or not x.is_contiguous():
        return None
    out = torch.empty(x.shape, dtype=torch.float32)
    n = x.numel()
    if n == 0:
        return out
    xv, ov = x.reshape(-1).numpy(), out.reshape(-1).numpy()
    xb, ob = xv.view(np.uint32), ov.view(np.uint32)
    tmp, key = _scratch()
    odd: list[np.ndarray] = []  # indices of the values the encoder decides
    with np.errstate(all="ignore"):  # inf * 0 and the like, in values the encoder redoes
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            k = stop - start
            xc = xv[start:stop]
            if plan.directed:
                _directed_piece(plan, xc, ov[start:stop], ob[start:stop], tmp[:k])
                inside = xc.max() <= plan.top and xc.min() >= -plan.top  # NaN fails too
            else:
                inside = _nearest_piece(plan, xc, xb[start:stop], ov[start:stop], ob[start:stop], tmp[:k], key[:k])
            if plan.plus_zero:
                np.add(ov[start:stop], np.float32(0.0), out=ov[start:stop])  # -0 + 0 = +0: fmt has no -0
            if not inside:
                odd.append(start + np.flatnonzero(~(np.abs(xc) <= plan.top)))
    if odd:
        at = np.concatenate(odd)
        ov[at] = fmt.decode(fmt.encode(torch.from_numpy(xv[at]), rounding)).numpy()
    return out


def stochastic(fmt: FloatFormat, x: torch.Tensor, make_draws: Callable[[], torch.Tensor],
               stochastic_bits: int | None) -> torch.Tensor | None:
    """``fmt.quantize(x, "stochastic")`` (contiguous float32 CPU ``x``) with the encoder's draws
    (``make_draws()``: int64, one per value, below 2^62 or 2^stochastic_bits; called only where
    this route applies, so the generator is not drawn from twice), as float32, or None where this
    route does not apply. Where |x| >= fmt.min_normal the encoder drops d = 23 - m bits, so its rule
    (up iff dropped + (draw mod 2^d) >= 2^d; with n bits, up iff (dropped >> (d - n)) + draw >= 2^n)
    is an integer addition to the bit pattern before the mask; the values below min_normal, or
    above max, infinities and NaN take the encoder with their own draws."""
    plan = _plan(fmt, "toward_zero")
    if plan is None or not x.is_cpu or x.dtype != torch.float32 or not x.is_contiguous():
        return None
    draws = make_draws()
    out = torch.empty(x.shape, dtype=torch.float32)
    n, d = x.numel(), plan.d
    if n == 0:
        return out
    xv, ov, dv = x.reshape(-1).numpy(), out.reshape(-1).numpy(), draws.reshape(-1).numpy()
    xb, ob = xv.view(np.uint32), ov.view(np.uint32)
    tmp, key = _scratch()
    odd: list[np.ndarray] = []
    for start in range(0, n, _CHUNK):
        stop = min(n, start + _CHUNK)
        k = stop - start
        oc, bc, dc, t, ky = ob[start:stop], xb[start:stop], dv[start:stop], tmp[:k], key[:k]
        if stochastic_bits is None:  # + (draw mod 2^d), then the mask (int64 work, uint32 result)
            np.bitwise_and(dc, np.int64((1 << d) - 1), out=t, casting="unsafe")
            np.add(bc, t, out=oc)
            np.bitwise_and(oc, plan.mask, out=oc)
        elif stochastic_bits >= d:  # the fraction's d bits against the draw's top d: + floor(draw / 2^(n - d))
            np.right_shift(dc, np.int64(stochastic_bits - d), out=t, casting="unsafe")
            np.add(bc, t, out=oc)
            np.bitwise_and(oc, plan.mask, out=oc)
        else:  # the top n dropped bits + draw, carried into the kept part
            np.right_shift(bc, np.uint32(d - stochastic_bits), out=oc)
            np.copyto(t, dc, casting="unsafe")
            np.add(oc, t, out=oc)
            np.right_shift(oc, np.uint32(stochastic_bits), out=oc)
            np.left_shift(oc, np.uint32(d), out=oc)
        np.left_shift(bc, 1, out=ky)
        if plan.plus_zero:
            with np.errstate(invalid="ignore"):  # NaN patterns, redone by the encoder
                np.add(ov[start:stop], np.float32(0.0), out=ov[start:stop])
        if ky.min() < plan.small or ky.max() > plan.top_key:  # NaN's key is above top_key too
            odd.append(start + np.flatnonzero((ky < plan.small) | (ky > plan.top_key)))
    if odd:
        at = np.concatenate(odd)
        codes = fmt._encode(torch.from_numpy(xv[at]), "stochastic", stochastic_bits, torch.from_numpy(dv[at]))
        ov[at] = fmt.decode(codes).numpy()
    return out


def _directed_piece(plan: _Plan, xc: np.ndarray, oc: np.ndarray, ob: np.ndarray, tmp: np.ndarray) -> None:
    """A directed rounding of one piece: the subnormal grid on every value, then the bit rounding."""
    if plan.grid is not None:
        np.multiply(xc, plan.inv, out=oc)
        _GRID_ROUND[plan.rounding](oc, out=oc)
        np.multiply(oc, plan.grid, out=oc)
        _round_bits(plan, ob, ob, tmp)
    else:
        _round_bits(plan, xc.view(np.uint32), ob, tmp)


def _nearest_piece(plan: _Plan, xc: np.ndarray, xb: np.ndarray, oc: np.ndarray, ob: np.ndarray, tmp: np.ndarray,
                   key: np.ndarray) -> bool:
    """The bit rounding of one piece, with its values below min_normal put on the subnormal grid
    (gathered where they are few, else the grid on the whole piece blended in by a bit mask: NumPy's
    masked copies cost ten passes); whether every |x| is at most fmt.max."""
    _round_bits(plan, xb, ob, tmp)
    np.left_shift(xb, 1, out=key)  # the magnitude, doubled: the sign bit drops out
    if plan.grid is not None and key.min() < plan.small:
        small = key < plan.small
        if np.count_nonzero(small) * 8 < len(key):
            at = np.flatnonzero(small)
            oc[at] = _round_grid(plan, xc[at])
            return bool(key.max() <= plan.top_key)
        mask = tmp.view(np.int32)  # all ones where |x| < min_normal: (|x| bits - min_normal bits) >> 31
        np.right_shift(key, 1, out=tmp)
        np.subtract(mask, np.int32(plan.small >> 1), out=mask)
        np.right_shift(mask, 31, out=mask)
        g = _round_grid(plan, xc).view(np.uint32)
        np.bitwise_xor(g, ob, out=g)  # ob ^ ((ob ^ g) & mask)
        np.bitwise_and(g, tmp, out=g)
        np.bitwise_xor(ob, g, out=ob)
    return bool(key.max() <= plan.top_key)


def _round_grid(plan: _Plan, x: np.ndarray) -> np.ndarray:
    """Float32 values below min_normal rounded on fmt's subnormal grid."""
    v = x * plan.inv
    if plan.rounding == "ties_away":  # trunc(v) + trunc(2 (v - trunc(v))), each step exact; v's sign (-0)
        whole = np.trunc(v)
        v = np.copysign(whole + np.trunc(2 * (v - whole)), v)
    else:
        _GRID_ROUND[plan.rounding](v, out=v)
    return v * plan.grid


def _round_bits(plan: _Plan, src: np.ndarray, dst: np.ndarray, tmp: np.ndarray) -> None:
    """``dst`` = the float32 patterns ``src`` (uint32) rounded at bit d by ``plan.rounding``,
    the sign bit kept (``tmp``: scratch of the same length; dst may be src)."""
    d, mask, rounding = plan.d, plan.mask, plan.rounding
    if rounding == "toward_zero":
        np.bitwise_and(src, mask, out=dst)
        return
    if rounding == "ties_away":
        np.add(src, np.uint32(1 << (d - 1)), out=dst)
    elif rounding == "nearest_even":  # + 2^(d-1) - 1 + the lowest kept bit: a tie goes to the even one
        np.right_shift(src, d, out=tmp)
        np.bitwise_and(tmp, np.uint32(1), out=tmp)
        np.add(tmp, np.uint32((1 << (d - 1)) - 1), out=tmp)
        np.add(src, tmp, out=dst)
    else:  # up: + 2^d - 1 where the sign bit is 0; down: where it is 1
        np.right_shift(src, 31, out=tmp)
        if rounding == "up":
            np.subtract(tmp, np.uint32(1), out=tmp)  # 0 -> all ones, 1 -> 0
        else:
            np.negative(tmp, out=tmp)  # 1 -> all ones
        np.bitwise_and(tmp, np.uint32((1 << d) - 1), out=tmp)
        np.add(src, tmp, out=dst)
    np.bitwise_and(dst, mask, out=dst)


_SCRATCH = threading.local()


def _scratch() -> tuple[np.ndarray, np.ndarray]:
    """Two uint32 arrays of one piece, kept per thread (fresh ones cost page faults)."""
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None:
        arrays = _SCRATCH.arrays = (np.empty(_CHUNK, np.uint32), np.empty(_CHUNK, np.uint32))
    return arrays
