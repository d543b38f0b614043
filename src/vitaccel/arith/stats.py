"""Error statistics of the integer multiplier, for comparison with published approximate multipliers.

DRUM (Hashemi et al., ICCAD 2015) keeps k bits from the leading one with the lowest forced to 1
(``keep_rounding: unbiased`` here), truncates both operands, and reports a near-zero mean
relative error with a standard deviation of 0.45-3.61% on uniform 16-bit operands. vitaccel
truncates only the first operand; ``both_operands=True`` gives the DRUM arrangement.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from vitaccel.arith import intpath
from vitaccel.arith.config import AcceleratorConfig
from vitaccel.errors import ConfigError


class MultiplierErrorStats(NamedTuple):
    """Relative error ``(approx - exact) / exact`` of the multiplier's products (not of a tensor:
    that is ``vitaccel.emulate.tensor_error.TensorError``)."""

    mean: float
    std: float
    max: float          # largest |relative error|
    operands: int       # distinct operand magnitudes evaluated


# The name ``vitaccel.arith`` exports.


def relative_errors(bits: int, keep_bits: int | None, rounding: str) -> torch.Tensor:
    """``(mult(a, 1) - a) / a`` (float64) of the leading-one multiplier keeping ``keep_bits`` with
    ``rounding``, for every magnitude ``a`` of a signed ``bits``-bit operand, 1 to qmax."""
    a = torch.arange(1, intpath.qmax(bits) + 1)
    approx = intpath.multiply(a, torch.ones_like(a), keep_bits, rounding)
    return (approx - a).double() / a.double()


def error_stats(config: AcceleratorConfig | str, operand_bits: int | None = None,
                both_operands: bool = False) -> MultiplierErrorStats:
    """Mean, standard deviation and max |.| of the multiplier's relative error over uniformly
    distributed nonzero operands, computed exactly (no sampling).

    The truncated operand is a; ``(mult(a, w) - a w) / (a w) = (trunc(a) - a) / a`` for every
    nonzero w, so the statistics over uniform (a, w) are those over uniform a, with the
    multiplier evaluated at w = 1 on every magnitude (sign-symmetric). ``both_operands`` truncates
    w the same way, independently: the error is ``(1 + e_a)(1 + e_w) - 1``, whose moments follow
    exactly from those of e. ``operand_bits`` overrides ``a_bits`` (17 gives DRUM's 16-bit
    unsigned magnitudes).
    """
    config = AcceleratorConfig.load(config)
    if config.datapath != "int":
        raise ConfigError(f"config: {config.name!r} has datapath {config.datapath!r}; error_stats needs an int "
                          "datapath")
    dp = config.int_datapath
    bits = dp.a_bits if operand_bits is None else operand_bits
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 32:
        raise ConfigError(f"operand_bits: value {operand_bits!r} is not allowed; an integer from 2 to 32 or None")
    e = relative_errors(bits, dp.keep_bits, dp.keep_rounding)
    if not both_operands:
        return MultiplierErrorStats(float(e.mean()), float(e.std(correction=0)), float(e.abs().max()), e.numel())
    m1, m2 = float((1 + e).mean()), float(((1 + e) ** 2).mean())     # E[1+e], E[(1+e)^2]
    worst = max(abs((1 + float(e.max())) ** 2 - 1), abs((1 + float(e.min())) ** 2 - 1))
    return MultiplierErrorStats(m1 * m1 - 1, max(m2 * m2 - m1 ** 4, 0.0) ** 0.5, worst, e.numel())
