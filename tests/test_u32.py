"""The 32-bit intrinsics of the fused kernels (``arith/_u32.py``) against NumPy's uint32 arithmetic,
and the per-kernel vector-width attribute."""

import numba
import numpy as np
import pytest

from vitaccel.arith import FloatFormat, _fastround
from vitaccel.arith import _u32 as U


def _elementwise(op):
    """A kernel applying the intrinsic ``op`` to uint32 arrays a and b element by element."""
    @numba.njit
    def run(a, b):
        out = np.empty(a.size, np.uint32)
        for i in range(a.size):
            out[i] = op(a[i], b[i])
        return out
    return run


def test_intrinsics_are_uint32_arithmetic():
    """Wrapping add, sub and mul, bitwise ops, shifts below 32 and unsigned comparisons, on random
    words and the edges (0, 1, 2^31, all ones, equal pairs): NumPy's uint32 results."""
    g = np.random.default_rng(0)
    edges = np.array([0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1], np.uint32)
    a = np.concatenate([g.integers(0, 2 ** 32, 20000, dtype=np.uint32), np.repeat(edges, 5)])
    b = np.concatenate([g.integers(0, 2 ** 32, 20000, dtype=np.uint32), np.tile(edges, 5)])
    b[:100] = a[:100]
    shift = g.integers(0, 32, a.size).astype(np.uint32)
    with np.errstate(over="ignore"):
        cases = {U.add: (b, a + b), U.sub: (b, a - b), U.mul: (b, a * b), U.and_: (b, a & b), U.or_: (b, a | b),
                 U.xor: (b, a ^ b), U.shl: (shift, a << shift), U.shr: (shift, a >> shift), U.lt: (b, a < b),
                 U.le: (b, a <= b), U.eq: (b, a == b), U.ne: (b, a != b)}
    for op, (second, want) in cases.items():
        assert np.array_equal(_elementwise(op)(a, second), want.astype(np.uint32)), op


def test_intrinsics_take_wider_and_boolean_arguments_as_their_low_32_bits():
    @numba.njit
    def mixed(x, flag):
        return U.add(x, flag), U.xor(np.uint64(x) << np.uint64(32) | np.uint64(7), np.uint32(0))
    assert mixed(np.int64(2 ** 32 + 5), True) == (6, 7)


def test_each_kernel_asks_for_512_bit_vectors_in_its_own_function_only():
    @numba.njit
    def wide(x):
        U.prefer_wide_vectors()
        return x + 1

    @numba.njit
    def plain(x):
        return x + 1
    wide(1), plain(1)
    assert '"prefer-vector-width"="512"' in next(iter(wide.inspect_llvm().values()))
    assert "prefer-vector-width" not in next(iter(plain.inspect_llvm().values()))


@pytest.mark.parametrize("fmt, kind", [(FloatFormat.named("e4m3"), 0), (FloatFormat.named("bf16"), 0),
                                       (FloatFormat.named("binary8p3"), 1), (FloatFormat.named("e5m2fnuz"), 1),
                                       (FloatFormat(7, 8, bias=122), 2), (FloatFormat.named("e8m0"), 3),
                                       (FloatFormat.named("ue4m3"), 3)], ids=repr)
def test_format_kinds(fmt, kind):
    """What each kernel kind folds away: 0 plain signed formats, 1 without -0 or with NaN on
    overflow, 2 signed with a two-factor subnormal grid (2^-129 here), 3 unsigned."""
    assert _fastround._kind(fmt) == kind
