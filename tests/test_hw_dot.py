"""Whole dot products through the dot-product units against golden.matmul / golden.dot_int, every preset;
build() and its refusals; the registered wrapper."""

import dataclasses
import random
import sys
from pathlib import Path

import pytest
import torch

from vitaccel import hw
from vitaccel.arith import AcceleratorConfig, emulated_matmul, golden
from vitaccel.errors import HardwareError
from vitaccel.hw.export import golden_accumulators
from vitaccel.hw.sim import run_streams

sys.path.insert(0, str(Path(__file__).parent))
from conftest import same_bits  # noqa: E402
from hw_helpers import circuit_presets  # noqa: E402

CIRCUIT_PRESETS = circuit_presets()
FAST = ["int8", "int8-lot4", "int8-lot4-psum", "int8-psum16", "fp13"]


@pytest.mark.parametrize("name", [pytest.param(p, marks=() if p in FAST else pytest.mark.slow)
                                  for p in CIRCUIT_PRESETS])
def test_preset_matmul_equals_golden(name):
    """K = 37: not a multiple of G = 16 (nor of tile_k = 64 for the storage presets)."""
    g = torch.Generator().manual_seed(len(name))
    a, b = torch.randn(2, 37, generator=g), torch.randn(37, 3, generator=g) * 4
    circuit = hw.simulate(name, a, b)
    assert same_bits(circuit, golden.matmul(a, b, name))
    assert same_bits(circuit, emulated_matmul(a, b, AcceleratorConfig.load(name)))


@pytest.mark.parametrize("name", ["fp13-align16", "fp16", "bf16"])
def test_float_preset_one_dot_product(name):
    g = torch.Generator().manual_seed(7)
    a, b = torch.randn(1, 21, generator=g), torch.randn(21, 1, generator=g)
    assert same_bits(hw.simulate(name, a, b), golden.matmul(a, b, name))


def int_config(**changes) -> AcceleratorConfig:
    base = AcceleratorConfig.preset("int8-psum16")
    return base.replace(int_datapath=dataclasses.replace(base.int_datapath, **changes))


OVERFLOWING = [int_config(), int_config(overflow="wrap"), int_config(acc_bits=16, psum_storage=None),
               int_config(acc_bits=16, overflow="wrap", psum_storage=None),
               int_config(keep_bits=3, keep_rounding="nearest", psum_storage=dataclasses.replace(
                   AcceleratorConfig.preset("int8-psum16").int_datapath.psum_storage, tile_k=32))]


@pytest.mark.parametrize("config", OVERFLOWING, ids=lambda c: f"{c.int_datapath.overflow}-acc{c.int_datapath.acc_bits}-"
                                                              f"k{c.int_datapath.keep_bits}")
def test_int_dot_products_overflow_both_modes(config):
    """Every accumulator value along K (one per clock) against golden dot_int on the prefix."""
    dp = config.int_datapath
    rng = random.Random(dp.acc_bits)
    pairs = [([127] * 150, [127] * 150), ([-127] * 83, [127] * 83), ([-128] * 70, [-128] * 70)]
    pairs += [([rng.randint(-127, 127) for _ in range(k)], [rng.randint(-127, 127) for _ in range(k)])
              for k in (1, 15, 17, 64, 65, 129, 200)]
    streams = [hw.sim.group_stream(a, b, dp.group_size) for a, b in pairs]
    outs = run_streams(hw.build(config).dot, streams)
    overflowed = False
    for (a, b), out in zip(pairs, outs):
        want = golden_accumulators(config, a, b)
        assert [o["acc"] & (2 ** dp.acc_bits - 1) for o in out] == want
        exact = sum(x * y for x, y in zip(a, b))
        overflowed |= golden.dot_int(a, b, dp) != exact
    assert overflowed


def test_first_restarts_and_idle_cycles_hold():
    config = AcceleratorConfig.preset("int8-lot4-psum")
    dp = config.int_datapath
    a, b = list(range(-60, 60)), [3] * 120
    stream = hw.sim.group_stream(a, b, 16)
    stream = stream[:3] + [{"en": 0, "first": 1}] + stream[3:] + stream     # an idle cycle, then a second product
    out = run_streams(hw.build(config).dot, [stream])[0]
    assert out[2]["acc"] == out[3]["acc"]                                   # en = 0 holds
    assert out[-1]["acc"] == golden.dot_int(a, b, dp) == out[len(stream) - 9]["acc"]


def test_build_elements_and_registered_wrapper():
    circuits = hw.build("int8-lot4-psum")
    assert set(circuits.makers) == {"int_lane", "int_tree", "accumulator", "codec_encoder", "codec_decoder",
                                    "codec_round_trip"}
    assert set(hw.build("fp13").makers) == {"float_lane", "float_tree", "acc_add"}
    vectors = [{"a": a, "w": w} for a, w in ((100, 3), (-77, 99), (5, -128))]
    out = run_streams(lambda: circuits.registered("int_lane"), [vectors + [{}, {}]])[0]
    want = [golden.int_multiply(v["a"], v["w"], 4, "unbiased") for v in vectors]
    assert [o["p"] for o in out[1:4]] == want       # captured at edge 0 (inputs), seen after edge 1 (outputs)


@pytest.mark.parametrize("config,key", [
    ("fp32", "datapath: value 'native'"),
    (AcceleratorConfig.preset("int8").replace(int_datapath=dataclasses.replace(
        AcceleratorConfig.preset("int8").int_datapath, group_size=512)), "int_datapath.group_size: value 512"),
    (AcceleratorConfig.preset("fp13").replace(float_datapath=dataclasses.replace(
        AcceleratorConfig.preset("fp13").float_datapath, group_size=1024)), "float_datapath.group_size: value 1024"),
    (AcceleratorConfig.from_dict({"datapath": "float", "float_datapath": {"a_format": "e4m3fnuz"}}),
     "float_datapath.a_format: value 'e4m3fnuz'"),
    (AcceleratorConfig.from_dict({"datapath": "float", "float_datapath": {"b_format": "binary8p3"}}),
     "float_datapath.b_format: value 'binary8p3'"),
])
def test_build_refuses_what_it_cannot_build(config, key):
    with pytest.raises(HardwareError, match="is not allowed for the circuits; .+") as err:
        hw.build(config)
    assert key in str(err.value)


def test_simulate_refuses_bad_shapes():
    with pytest.raises(HardwareError, match="a, b: shapes"):
        hw.simulate("int8", torch.ones(2, 3), torch.ones(4, 2))


def test_simulate_per_token_scales_equal_golden():
    # int8-dyn: every activation row gets its own scale (DESIGN.md section 8); the circuit sees the
    # same integers as golden, and dequantisation by row and column scale follows golden's
    g = torch.Generator().manual_seed(11)
    a = torch.randn(3, 21, generator=g) * torch.tensor([[0.01], [1.0], [30.0]])
    b = torch.randn(21, 2, generator=g)
    got = hw.simulate("int8-dyn", a, b)
    assert torch.equal(got, golden.matmul(a, b, "int8-dyn"))
    with pytest.raises(HardwareError, match="a_scale: not allowed with activation_scale per_token"):
        hw.simulate("int8-dyn", a, b, a_scale=torch.tensor(0.1))


@pytest.mark.parametrize("acc,rounding,operands", [("fp16", "ties_away", "e5m7"), ("bf16", "up", "e5m7"),
                                                   ("tf32", "down", "tf32"), ("fp24", "toward_zero", "e5m7")])
def test_dot_unit_with_a_narrow_accumulator_equals_golden(acc, rounding, operands):
    """The whole unit with the accumulator format and operand rounding of the config: lanes, tree
    rounding to the accumulator, the accumulator add; K = 45 over three groups, magnitudes spread
    so that the accumulator's rounding decides low bits; and the exported golden accumulators."""
    config = AcceleratorConfig.from_dict({"name": f"fp13-{acc}", "datapath": "float", "float_datapath": {
        "accumulator": acc, "operand_rounding": rounding, "a_format": operands, "b_format": operands,
        "align_bits": 20 if operands == "tf32" else None}})
    g = torch.Generator().manual_seed(len(acc))
    a = torch.randn(1, 45, generator=g) * torch.exp2(torch.randint(-8, 9, (1, 45), generator=g).float())
    b = torch.randn(45, 2, generator=g) * 30
    circuit = hw.simulate(config, a, b)
    assert same_bits(circuit, golden.matmul(a, b, config))
    assert same_bits(circuit, emulated_matmul(a, b, config))
    assert len(golden_accumulators(config, [0] * 20, [0] * 20)) == 2
