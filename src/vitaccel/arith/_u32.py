"""uint32 arithmetic inside numba kernels, in 32 bits.

numba types an operation on two uint32 values as uint64 (and a comparison as one of int64s), so a
loop written with them runs on 64-bit vector lanes: half the lanes of 32-bit ones, with widening
and narrowing moves around every load and store. These intrinsics emit the 32-bit LLVM
instruction itself (arguments truncated or zero-extended to 32 bits first), so the fused loops of
``_fastround`` vectorise on 32-bit lanes. ``shl``/``shr`` need a shift below 32 (LLVM's rule).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

_I32 = ir.IntType(32)


def _to32(builder: ir.IRBuilder, v: ir.Value) -> ir.Value:
    width = v.type.width
    if width == 32:
        return v
    return builder.trunc(v, _I32) if width > 32 else builder.zext(v, _I32)


def _integral(t: types.Type) -> bool:
    return isinstance(t, (types.Integer, types.Boolean))


def _binary(method: str):
    """The uint32 result of LLVM's ``method`` on two integers (or booleans) taken as uint32."""
    @intrinsic
    def op(typingctx, a, b):
        if not (_integral(a) and _integral(b)):
            return None
        return types.uint32(a, b), lambda context, builder, sig, args: getattr(builder, method)(
            _to32(builder, args[0]), _to32(builder, args[1]))
    return op


def _compare(relation: str):
    """Unsigned 32-bit comparison ``a relation b`` of two integers taken as uint32."""
    @intrinsic
    def op(typingctx, a, b):
        if not (_integral(a) and _integral(b)):
            return None
        return types.boolean(a, b), lambda context, builder, sig, args: builder.icmp_unsigned(
            relation, _to32(builder, args[0]), _to32(builder, args[1]))
    return op


add, sub, mul, and_, or_, xor, shl, shr = (_binary(m) for m in
                                            ("add", "sub", "mul", "and_", "or_", "xor", "shl", "lshr"))
lt, le, eq, ne = (_compare(r) for r in ("<", "<=", "==", "!="))


@intrinsic
def prefer_wide_vectors(typingctx):
    """Let LLVM vectorise the calling kernel with 512-bit vectors where the CPU has them (the
    function attribute ``prefer-vector-width``; the host's tuning, e.g. Sapphire Rapids', asks for
    256 otherwise): for that function alone, unlike numba's process-wide CPU settings. Elsewhere
    the widest vectors the CPU has are used, as before."""
    def codegen(context, builder, sig, args):
        set.add(builder.function.attributes, '"prefer-vector-width"="512"')  # (llvmlite knows no key=value)
        return context.get_dummy_value()
    return types.none(), codegen
