"""One call for every format: ``quantize(x, "e4m3")``, ``quantize(x, "mxfp8_e4m3", axis=-1)``.

Lives apart from ``formats`` (which ``mx`` imports) so that it can reach both.
"""

from __future__ import annotations

import numpy as np
import torch

from vitaccel.arith.formats import NAMED, FloatFormat, _from_numpy
from vitaccel.arith.mx import MX_NAMES, MXFormat
from vitaccel.errors import UserError


def quantize(x: torch.Tensor | np.ndarray, fmt: str | FloatFormat | MXFormat, rounding: str = "nearest_even",
             generator: torch.Generator | None = None, *, stochastic_bits: int | None = None,
             dtype: torch.dtype = torch.float32, axis: int = -1, block: int = 32) -> torch.Tensor | np.ndarray:
    """``x`` (a tensor or a NumPy array; the same kind out) rounded to ``fmt``: a format name
    (``FloatFormat.named``'s, or an MX name such as ``"mxfp8_e4m3"``, blocks of ``block`` along
    ``axis``), a ``FloatFormat`` or an ``MXFormat``. ``FloatFormat.quantize`` and
    ``MXFormat.quantize`` say the rest (MX: nearest_even or toward_zero, float32 out)."""
    if isinstance(fmt, str):
        if fmt in MX_NAMES:
            fmt = MXFormat.named(fmt, block)
        elif fmt in NAMED:
            fmt = NAMED[fmt]
        else:
            raise UserError(f"format name {fmt!r} is unknown; choose one of {sorted(NAMED)} or the MX formats "
                            f"{list(MX_NAMES)}")
    if isinstance(fmt, FloatFormat):
        return fmt.quantize(x, rounding, generator, stochastic_bits=stochastic_bits, dtype=dtype)
    if not isinstance(fmt, MXFormat):
        raise TypeError(f"fmt must be a format name, a FloatFormat or an MXFormat, got {type(fmt).__name__}")
    if generator is not None or stochastic_bits is not None or dtype != torch.float32:
        raise UserError(f"{fmt.name}: MX formats take no generator, stochastic_bits or dtype (float32 out); "
                        "rounding is nearest_even or toward_zero")
    if isinstance(x, np.ndarray):
        return fmt.quantize(_from_numpy(x), axis, rounding).numpy()
    return fmt.quantize(x, axis, rounding)


__all__ = ["quantize"]
