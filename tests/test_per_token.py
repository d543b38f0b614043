"""Dynamic per-token activation scales (``int_datapath.activation_scale: per_token``): every tier
bit-identical to golden.matmul, and each row really scaled by its own maximum."""

import pytest
import torch

from conftest import same_bits
from test_int_matmul import OVERFLOW_CONFIGS, TIERS, _operands
from vitaccel.arith import AcceleratorConfig, emulated_matmul, golden, matmul_tier
from vitaccel.arith.intpath import quantize_int
from vitaccel.configtools import ConfigError
from vitaccel.errors import UserError


def _config(**dp) -> AcceleratorConfig:
    return AcceleratorConfig.from_dict({"name": "tok", "datapath": "int",
                                        "int_datapath": {"activation_scale": "per_token", **dp}})


def _check_all_tiers(a, b, config, **scales):
    expected = golden.matmul(a, b, config, **scales)
    tiers = [t for t in TIERS if t != "fast" or matmul_tier(config, k=a.shape[-1]).name == "fast"]
    assert len(tiers) >= 2
    for tier in tiers:
        assert same_bits(emulated_matmul(a, b, config, tier=tier, **scales), expected), (config.name, tier)
    return expected


@pytest.mark.parametrize("preset", ["int8-dyn", "int8-lot4-dyn", "int8-lot4n-dyn"])
@pytest.mark.parametrize("shape", [(3, 150, 5), (4, 21, 3), (1, 1, 1), (5, 64, 2)])
def test_per_token_presets_equal_golden(preset, shape):
    config = AcceleratorConfig.preset(preset)
    assert config.int_datapath.activation_scale == "per_token"
    a, b = _operands(*shape, seed=sum(shape))
    _check_all_tiers(a, b, config)


@pytest.mark.parametrize("name", list(OVERFLOW_CONFIGS))
def test_per_token_with_overflowing_registers_equals_golden(name):
    a, b = _operands(3, 150, 4, seed=len(name), batch=(2,))
    _check_all_tiers(a, b, _config(**OVERFLOW_CONFIGS[name]))


def test_zero_rows_batches_and_activation_second_operands():
    a, b = _operands(4, 37, 3, seed=5, batch=(2, 1), b_batch=(3,))
    a[0, 0, 2] = 0.0                          # a zero row: scale 1, result +0
    b_act = torch.randn(2, 3, 37, 3, generator=torch.Generator().manual_seed(1))
    out = _check_all_tiers(a, b, _config(keep_bits=3, keep_rounding="nearest"))
    assert same_bits(out[0, 0, 2], torch.zeros(3))
    _check_all_tiers(a, b_act, _config())


def test_each_row_uses_its_own_scale():
    """Row i of the result is what a per-tensor datapath gives row i alone (its own max)."""
    a, b = _operands(4, 48, 3, seed=9)
    a[1] *= 1e-3                              # a quiet row: per tensor it would be mostly zeros
    tok = emulated_matmul(a, b, "int8-dyn")
    for i in range(a.shape[0]):
        assert same_bits(tok[i:i + 1], emulated_matmul(a[i:i + 1], b, "int8"))
    tensor = emulated_matmul(a, b, "int8")
    ref = a @ b
    assert (tok[1] - ref[1]).abs().max() < (tensor[1] - ref[1]).abs().max() / 10
    _, scale = quantize_int(a, axis=0)        # the scales golden uses are these rows' maxima / 127
    assert same_bits(scale.flatten(), (a.abs().amax(1) / 127).float())


def test_per_token_refuses_a_given_activation_scale_and_bad_values():
    a, b = _operands(2, 16, 2, seed=0)
    with pytest.raises(UserError, match=r"a_scale: a per_token datapath .*activation_scale.*a_scale=None"):
        emulated_matmul(a, b, "int8-dyn", a_scale=torch.tensor(0.1))
    with pytest.raises(ValueError, match="per_token datapath takes no a_scale"):
        golden.matmul(a, b, "int8-dyn", a_scale=torch.tensor(0.1))
    with pytest.raises(ConfigError, match=r"int_datapath\.activation_scale.*'per_row'.*per_tensor.*per_token"):
        _config(activation_scale="per_row")
    a[1, 3] = float("nan")
    with pytest.raises(UserError, match="a holds NaN or inf"):
        emulated_matmul(a, b, "int8-dyn")
