"""Bit reinterpretation of scalars inside numba kernels (LLVM bitcasts, kept in registers):
``f32_bits``/``bits_f32`` between float32 and a 32-bit integer, ``f64_bits``/``bits_f64`` between
float64 and a 64-bit integer. The fused CPU routes (``_fastround``, ``_fastacc``) share them."""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _bitcast(to_float: bool, width: int):
    """An intrinsic from a ``width``-bit float to int32/int64 (``to_float=False``) or from a
    ``width``-bit integer to the float (``to_float=True``); other argument types do not type."""
    floats = {32: (types.float32, ir.FloatType()), 64: (types.float64, ir.DoubleType())}
    ints = {32: types.int32, 64: types.int64}

    @intrinsic
    def cast(typingctx, x):
        if to_float and isinstance(x, types.Integer) and x.bitwidth == width:
            return floats[width][0](x), lambda context, builder, sig, args: builder.bitcast(args[0], floats[width][1])
        if not to_float and isinstance(x, types.Float) and x.bitwidth == width:
            return ints[width](x), lambda context, builder, sig, args: builder.bitcast(args[0], ir.IntType(width))
        return None

    return cast


f32_bits = _bitcast(False, 32)
bits_f32 = _bitcast(True, 32)
f64_bits = _bitcast(False, 64)
bits_f64 = _bitcast(True, 64)
