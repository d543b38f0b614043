"""Bit helpers shared by the datapaths: exponents, powers of two, integer checks, error wording.

Imports nothing of vitaccel, so every arith module can use it without an import cycle.
"""

from __future__ import annotations

import torch

FLOAT32_EXACT = 2 ** 24   # float32 holds every integer of magnitude <= 2^24
FLOAT64_EXACT = 2 ** 53


def exponent(x: torch.Tensor) -> torch.Tensor:
    """floor(log2|x|) of nonzero finite x (exact: frexp is bit manipulation); 0 where x == 0."""
    _, e = torch.frexp(x)
    return torch.where(x == 0, 0, e.long() - 1)


def pow2(e: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Exact 2^e (float64 or float32) for integer tensors e in that dtype's normal range, from bits."""
    if dtype == torch.float32:
        return ((e.int() + 127) << 23).view(torch.float32)
    return ((e.long() + 1023) << 52).view(torch.float64)


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


def is_int(v: object) -> bool:
    """True for a Python int that is not a bool (``True`` is not a bit count)."""
    return isinstance(v, int) and not isinstance(v, bool)
