"""Switching energy from toggles (vitaccel.hw.energy), pinned to the energy table's int8_mult."""

import numpy as np
import pytest

from vitaccel.errors import HardwareError
from vitaccel.hw.energy import (
    ASSUMPTIONS,
    ExactMultiplier,
    calibrate,
    energy_per_op,
    group_energies,
    toggles_per_op,
    uniform_operands,
)
from vitaccel.hw.synth import synthesize
from vitaccel.measure.hardware import EnergyTable


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synth-cache")


@pytest.fixture(scope="module")
def cal(cache):
    return calibrate(n=20000, cache=cache)


def test_reference_costs_the_table_int8_mult(cal, cache):
    table = EnergyTable.load()
    assert cal.reference_pj == table.int8_mult and cal.table_source == table.source
    ref = synthesize(ExactMultiplier(8, 8), "mul8x8_exact", cache=cache)
    same = energy_per_op(ref, calibration=cal, n=20000)            # the calibration's own stream
    assert same.energy_pj == pytest.approx(table.int8_mult, rel=1e-12)
    other = energy_per_op(ref, calibration=cal, n=20000, seed=7)   # another uniform stream: close
    assert other.energy_pj == pytest.approx(table.int8_mult, rel=0.03) and other.energy_pj != same.energy_pj
    assert same.assumptions == ASSUMPTIONS and "uniform" in same.operands
    assert same.row()["source"] == "synthesized" and cal.yosys_version == ref.yosys_version


def test_scale_follows_the_table(tmp_path, cal, cache):
    table = tmp_path / "double.yaml"
    table.write_text("source: test table\nint8_mult: 0.4\n")
    doubled = calibrate(table_path=table, n=20000, cache=cache)
    assert doubled.pj_per_toggle == pytest.approx(2 * cal.pj_per_toggle) and doubled.table_source == "test table"


def test_smaller_and_quieter_units_cost_less(cal, cache):
    narrow = synthesize(ExactMultiplier(4, 8), "mul4x8_exact", cache=cache)
    ref = synthesize(ExactMultiplier(8, 8), "mul8x8_exact", cache=cache)
    assert energy_per_op(narrow, calibration=cal, n=20000).energy_pj < 0.6 * cal.reference_pj
    rng = np.random.default_rng(3)
    small = {"a": rng.integers(-3, 4, 20000) * (rng.random(20000) < 0.3), "b": rng.integers(-128, 128, 20000)}
    sparse = energy_per_op(ref, small, calibration=cal)
    assert sparse.energy_pj < 0.75 * cal.reference_pj and sparse.operands == "given stream" and sparse.n_ops == 20000
    still = {"a": np.full(100, 17), "b": np.full(100, -5)}
    assert energy_per_op(ref, still, calibration=cal).energy_pj == 0.0


def test_uniform_operands_cover_each_port(cache):
    nl = synthesize(ExactMultiplier(4, 8), "mul4x8_exact", cache=cache).netlist()
    ops = uniform_operands(nl, 5000, seed=1)
    assert (ops["a"].min(), ops["a"].max(), ops["b"].min(), ops["b"].max()) == (-8, 7, -128, 127)
    assert np.array_equal(ops["a"], uniform_operands(nl, 5000, seed=1)["a"])


def test_bad_streams(cache):
    nl = synthesize(ExactMultiplier(4, 8), "mul4x8_exact", cache=cache).netlist()
    with pytest.raises(HardwareError, match="at least 2"):
        toggles_per_op(nl, {"a": np.array([1]), "b": np.array([1])})
    with pytest.raises(HardwareError, match="n: value 1"):
        uniform_operands(nl, 1)


def test_group_energies_of_a_config(cal, cache):
    e = group_energies("int8-lot4", calibration=cal, n=600, cache=cache)
    lane, tree = e["lane"], e["tree"]
    assert lane.n_ops == 16 * 600 and tree.n_ops == 600 and "through the lanes" in tree.operands
    assert 0.5 * cal.reference_pj < lane.energy_pj < cal.reference_pj       # truncated lane: below the exact one
    assert tree.energy_pj > lane.energy_pj                                 # 16 wide products summed
    rng = np.random.default_rng(4)
    small = rng.integers(-2, 3, (600, 16))                                 # small activations: quieter
    quiet = group_energies("int8-lot4", small, rng.integers(-127, 128, (600, 16)), calibration=cal, cache=cache)
    assert quiet["lane"].energy_pj < 0.8 * lane.energy_pj and quiet["tree"].energy_pj < tree.energy_pj
    acc = e["accumulator"]
    assert acc.n_ops == 600 and "one dot product every 16 groups" in acc.operands
    assert 0 < acc.flop_toggles_per_op < acc.toggles_per_op and acc.energy_pj < tree.energy_pj
    lane_only = group_energies("int8-lot4", calibration=cal, n=600, tree=False, accumulator=False, cache=cache)
    assert set(lane_only) == {"lane"} and lane_only["lane"].energy_pj == lane.energy_pj
    zeros = np.zeros((50, 16), dtype=np.int64)
    assert group_energies("int8-lot4", zeros, zeros, calibration=cal, cache=cache)["tree"].energy_pj == 0
    with pytest.raises(HardwareError, match=r"shapes \(50, 8\)"):
        group_energies("int8-lot4", zeros[:, :8], zeros[:, :8], calibration=cal, cache=cache)


def test_random_float_codes_are_finite_and_cover_the_format():
    from vitaccel.arith import AcceleratorConfig
    from vitaccel.arith.formats import FloatFormat
    from vitaccel.hw.energy import random_codes

    for name in ("fp13", "bf16"):
        cfg = AcceleratorConfig.preset(name)
        fmt = FloatFormat.named(cfg.float_datapath.a_format)
        a, b = random_codes(cfg, None, ("a", "b"), 4000, 0)
        assert a.shape == b.shape == (4000, 16)
        magnitude = a & ((1 << (fmt.bits - 1)) - 1)
        assert magnitude.max() <= fmt.max_code and magnitude.max() > 0.99 * fmt.max_code and magnitude.min() == 0
        assert 0.45 < (a >> (fmt.bits - 1)).mean() < 0.55
        assert not np.array_equal(a, b)
