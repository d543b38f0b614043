"""TensorError: SQNR and max relative error accumulated over calls, non-finite outputs handled."""

import math

import pytest
import torch

from vitaccel.emulate.tensor_error import TensorError


def test_sqnr_and_max_relative_error_over_several_calls():
    stats = TensorError()
    ref1, ref2 = torch.tensor([3.0, -4.0]), torch.tensor([0.0, 10.0])
    stats.update(ref1 + torch.tensor([0.1, 0.0]), ref1)
    stats.update(ref2 + torch.tensor([0.0, -0.2]), ref2)
    assert stats.sqnr_db == pytest.approx(10 * math.log10((9 + 16 + 100) / (0.01 + 0.04)), rel=1e-5)
    assert stats.max_rel_err == pytest.approx(0.2 / 10, rel=1e-5)


def test_equal_outputs_and_non_finite_outputs():
    same = TensorError()
    same.update(torch.ones(3), torch.ones(3))
    assert same.sqnr_db == math.inf and same.max_rel_err == 0.0
    overflow = TensorError()
    overflow.update(torch.tensor([math.inf, 1.0]), torch.ones(2))
    assert overflow.sqnr_db == -math.inf and overflow.max_rel_err == math.inf
    nan = TensorError()
    nan.update(torch.tensor([math.nan, 1.0]), torch.ones(2))
    nan.update(torch.ones(2), torch.ones(2))  # a later clean call does not hide the NaN
    assert math.isnan(nan.sqnr_db) and math.isnan(nan.max_rel_err)
