"""Integer operands: quantisation, leading-one truncation, the multiplier, adder-tree registers, error stats."""

import math

import pytest
import torch

from vitaccel.arith import (
    AcceleratorConfig,
    dequantize_int,
    error_stats,
    golden,
    int_tiers,
    intpath,
    leading_one_truncate,
    quantize_int,
)

ALL_INT8 = torch.arange(-128, 128)
ROUNDINGS = ["truncate", "nearest", "unbiased"]


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_truncation_and_multiplier_equal_golden_on_every_int8_pair(rounding):
    """Every pair of signed 8-bit operands, every keep_bits from 1 to 8."""
    a = ALL_INT8.repeat_interleave(256)
    w = ALL_INT8.repeat(256)
    pairs = list(zip(a.tolist(), w.tolist()))
    for k in range(1, 9):
        expected_trunc = torch.tensor([golden.lot_fields(x, k, rounding) for x in ALL_INT8.tolist()])
        neg, t, s = intpath.leading_one_fields(ALL_INT8, k, rounding)
        assert torch.equal(torch.stack([neg.long(), t, s], dim=1), expected_trunc)
        got = intpath.multiply(a, w, k, rounding)
        expected = torch.tensor([golden.int_multiply(x, y, k, rounding) for x, y in pairs])
        assert torch.equal(got, expected), f"keep_bits={k}"
        # the shifter form (t * w) << s is the truncated value times w
        assert torch.equal(got, leading_one_truncate(a, k, rounding) * w)


def test_truncation_rules_on_examples():
    q = torch.tensor([0, 5, -5, 15, 16, 100, 127, -127, -128])
    assert leading_one_truncate(q, 4, "truncate").tolist() == [0, 5, -5, 15, 16, 96, 120, -120, -128]
    assert leading_one_truncate(q, 4, "unbiased").tolist() == [0, 5, -5, 15, 18, 104, 120, -120, -144]
    # nearest: 127 rounds up to 128 = 2^7 and renormalises (t = 8, s = 4)
    assert leading_one_truncate(q, 4, "nearest").tolist() == [0, 5, -5, 15, 16, 104, 128, -128, -128]
    neg, t, s = intpath.leading_one_fields(torch.tensor([127]), 4, "nearest")
    assert (t.item(), s.item()) == (8, 4)
    small = torch.arange(-15, 16)          # |q| < 2^keep_bits: used exactly, whatever the rounding
    for rounding in ROUNDINGS:
        assert torch.equal(leading_one_truncate(small, 4, rounding), small)


def test_unbiased_truncation_has_smaller_mean_error_than_truncate():
    q = torch.arange(1, 2 ** 15)
    err = {r: float((leading_one_truncate(q, 5, r) - q).double().div(q).mean()) for r in ROUNDINGS}
    assert err["truncate"] < -0.01 and abs(err["unbiased"]) < abs(err["truncate"]) / 10


def test_truncation_table_is_the_function():
    table = intpath.truncation_table(8, 3, "unbiased")
    q = torch.arange(-127, 128)
    assert torch.equal(table, leading_one_truncate(q, 3, "unbiased").float())
    assert int_tiers.product_max(AcceleratorConfig.preset("int8-lot4").int_datapath) == 120 * 127


def test_truncation_bad_arguments():
    with pytest.raises(TypeError, match="q must be an integer tensor"):
        leading_one_truncate(torch.ones(3), 4)
    with pytest.raises(ValueError, match="keep_bits: value 0 is not allowed"):
        leading_one_truncate(torch.ones(3, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="rounding: value 'up' is not allowed.*truncate"):
        leading_one_truncate(torch.ones(3, dtype=torch.long), 4, "up")


def test_quantize_int_rounds_half_even_and_clamps():
    scale = torch.tensor(0.5)
    x = torch.tensor([0.25, 0.75, 1.25, -0.25, -0.75, 63.0, 64.0, -200.0, 0.2499999])
    q, s = quantize_int(x, 8, scale=scale)
    assert q.dtype == torch.int8 and s.item() == 0.5
    assert q.tolist() == [0, 2, 2, 0, -2, 126, 127, -127, 0]
    q16, _ = quantize_int(x, 12, scale=scale)
    assert q16.dtype == torch.int16 and q16.tolist()[:8] == [0, 2, 2, 0, -2, 126, 128, -400]


def test_quantize_int_equals_golden_on_random_values_and_ties():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3000, generator=g) * torch.exp(torch.randn(3000, generator=g) * 4)
    q, s = quantize_int(x, 8)
    assert s.dtype == torch.float32 and s.item() == golden.int_scale(float(x.abs().max()), 8)
    assert q.tolist() == [golden.int_quantize(v, s.item(), 8) for v in x.tolist()]
    ties = (torch.arange(-40, 40) + 0.5) * 0.1                      # near-ties after the division
    qt, st = quantize_int(ties, 6, scale=torch.tensor(0.1))
    assert qt.tolist() == [golden.int_quantize(v, st.item(), 6) for v in ties.tolist()]


def test_quantize_int_per_channel_and_zero_data():
    w = torch.tensor([[1.5, -4.0, 0.0], [-2.0, 3.0, 0.0]])
    q, s = quantize_int(w, 8, axis=1)
    assert s.shape == (1, 3)
    assert torch.equal(s, torch.tensor([[2.0, 4.0, 127.0]]) / 127)      # all-zero column: scale 1
    assert q.tolist() == [[95, -127, 0], [-127, 95, 0]]
    assert torch.equal(quantize_int(w, 8, axis=0)[1], torch.tensor([[4.0], [3.0]]) / 127)
    back = dequantize_int(q, s)
    assert back.dtype == torch.float32 and float((back - w).abs().max()) <= float(s.max()) / 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_quantize_int_refuses_nan_and_inf_naming_the_tensor(bad):
    x = torch.ones(5)
    x[3] = bad
    with pytest.raises(ValueError, match="activations holds NaN or inf"):
        quantize_int(x, name="activations")
    with pytest.raises(ValueError, match="x holds NaN or inf"):
        quantize_int(x, axis=0)


def test_quantize_int_bad_arguments():
    with pytest.raises(ValueError, match="bits: value 1 is not allowed"):
        quantize_int(torch.ones(2), 1)
    with pytest.raises(ValueError, match="axis: value 2 is not allowed"):
        quantize_int(torch.ones(2, 2), axis=2)
    with pytest.raises(ValueError, match="scale must hold positive finite"):
        quantize_int(torch.ones(2), scale=torch.tensor(0.0))
    with pytest.raises(TypeError, match="x must be a real floating-point tensor"):
        quantize_int(torch.ones(2, dtype=torch.int32))


@pytest.mark.parametrize("dtype", [torch.int64, torch.float64, torch.float32])
def test_adder_tree_registers_equal_golden(dtype):
    x = torch.arange(-3000, 3000, 7)
    for drop in (0, 1, 3):
        for rounding in ROUNDINGS:
            got = intpath.drop_lsbs_(x.to(dtype, copy=True), drop, rounding)
            assert got.long().tolist() == [golden.drop_lsbs(v, drop, rounding) for v in x.tolist()]
    for bits in (4, 9, 12):
        for mode in ("saturate", "wrap"):
            got = intpath.overflow_(x.to(dtype, copy=True), bits, mode)
            assert got.long().tolist() == [golden.overflow(v, bits, mode) for v in x.tolist()]


def _int_config(**dp):
    return AcceleratorConfig.from_dict({"name": "t", "datapath": "int", "int_datapath": dp})


def test_error_stats():
    exact = error_stats("int8")
    assert exact == (0.0, 0.0, 0.0, 127)
    stats = {k: error_stats(_int_config(a_bits=16, keep_bits=k, keep_rounding="unbiased"), operand_bits=17)
             for k in range(4, 9)}
    for k in range(4, 8):     # one more kept bit halves the spread
        assert stats[k + 1].std == pytest.approx(stats[k].std / 2, rel=0.02)
    assert all(abs(s.mean) < 0.003 for s in stats.values())
    truncate = error_stats(_int_config(a_bits=16, keep_bits=4), operand_bits=17)
    assert truncate.mean < -0.04 and truncate.max <= 2 ** -3
    # DRUM's arrangement (both operands, 16-bit): its published 0.45% (k=8) and 3.61% (k=5) std
    drum8 = error_stats(_int_config(a_bits=16, keep_bits=8, keep_rounding="unbiased"), 17, both_operands=True)
    drum5 = error_stats(_int_config(a_bits=16, keep_bits=5, keep_rounding="unbiased"), 17, both_operands=True)
    assert round(drum8.std * 100, 2) == 0.45 and round(drum5.std * 100, 2) == 3.61
    with pytest.raises(ValueError, match="needs an int datapath"):
        error_stats("fp13")
    with pytest.raises(ValueError, match="operand_bits: value 1 is not allowed"):
        error_stats("int8", operand_bits=1)
