"""The fused CPU accumulator route (``arith/_fastacc.py``) against the tensor route it replaces
(``floatpath.accumulate`` after ``floatpath.round_to``), bit for bit, for every accumulator format
narrower than float32; the float tiers built on both are checked against golden elsewhere
(tests/test_float_accumulators.py)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import random_float32, same_bits
from vitaccel.arith import _fastacc, floatpath
from vitaccel.arith.config import ACCUMULATORS
from vitaccel.arith.formats import FloatFormat

NARROW = [n for n in ACCUMULATORS if FloatFormat.named(n).man_bits != 23]


def _both(fmt: FloatFormat, acc: torch.Tensor, sums: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    expected = floatpath.accumulate(acc, floatpath.round_to(fmt, sums), fmt)
    got = acc.clone()
    _fastacc.add_group(got, sums, fmt)
    return got, expected


def _accumulator_values(fmt: FloatFormat, n: int, seed: int) -> torch.Tensor:
    """Values of ``fmt``: over every float32 binade (overflow to inf, subnormals, zeros) and its own."""
    g = torch.Generator().manual_seed(seed)
    spread = torch.randn(n, generator=g) * torch.exp2(torch.randint(-150, 130, (n,), generator=g).float())
    return fmt.quantize(torch.cat([random_float32(n, seed=seed)[:n], spread]))


@pytest.mark.parametrize("name", NARROW)
def test_fused_accumulator_equals_the_tensor_route(name):
    fmt = FloatFormat.named(name)
    acc = _accumulator_values(fmt, 40_000, seed=1)
    g = torch.Generator().manual_seed(2)
    n = len(acc)
    sums = torch.randn(n, generator=g, dtype=torch.float64) * torch.exp2(torch.randint(-160, 140, (n,), generator=g)
                                                                         .double())
    sums[::5] = random_float32(n, seed=3)[:n][::5].double()   # inf, NaN, float32 extremes
    sums[1::5] = -acc[1::5].double() + torch.randn(len(sums[1::5]), generator=g, dtype=torch.float64) * 2.0 ** -70
    sums[2::5] = -acc[2::5].double()                              # exact cancellation: +0
    sums[3::5] = acc[3::5].double() * (1 + 2.0 ** -(fmt.man_bits + 1))  # ties of the add
    got, expected = _both(fmt, acc, sums)
    assert same_bits(got, expected), name


@pytest.mark.parametrize("name", NARROW)
def test_fused_accumulator_on_specials_and_signed_zeros(name):
    fmt = FloatFormat.named(name)
    special = [0.0, -0.0, float("inf"), -float("inf"), float("nan"), fmt.max, -fmt.max, fmt.min_subnormal,
               -fmt.min_subnormal, fmt.min_normal, fmt.max * (1 + 2.0 ** -(fmt.man_bits + 2))]
    acc = fmt.quantize(torch.tensor(special)).repeat_interleave(len(special))
    sums = torch.tensor(special, dtype=torch.float64).repeat(len(special))
    got, expected = _both(fmt, acc, sums)
    assert same_bits(got, expected), name


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(NARROW), st.lists(st.floats(width=32, allow_nan=True), min_size=1, max_size=40),
       st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=40, max_size=40))
def test_fused_accumulator_property(name, accs, sums):
    fmt = FloatFormat.named(name)
    acc = fmt.quantize(torch.tensor(accs, dtype=torch.float32))
    got, expected = _both(fmt, acc, torch.tensor(sums[:len(accs)], dtype=torch.float64))
    assert same_bits(got, expected)
