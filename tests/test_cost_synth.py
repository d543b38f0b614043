"""cost(..., source="synthesized"): per-MAC multiply, tree and accumulator energies from the
synthesized units, every figure labelled with its source; SRAM stays table-based."""

import dataclasses

import pytest

from vitaccel.configtools import ConfigError
from vitaccel.hw.costs import MacEnergies
from vitaccel.hw.energy import Calibration
from vitaccel.measure.hardware import EnergyTable, MatmulShape, cost

SHAPES = [MatmulShape(10, 130, 7, count=3)]
CAL = Calibration(0.001, "mul8x8_exact", 0.2, 200.0, "test table", 64, 0, "Yosys 0.0 (test)")


def energies(config: str = "int8-lot4") -> MacEnergies:
    return MacEnergies(config, 16, multiply_pj=0.05, tree_pj_per_group=0.3, operands="test operands",
                       yosys_version="Yosys 0.0 (test)", calibration=CAL)


def test_synthesized_energies_replace_multiply_and_tree():
    table = EnergyTable.load()
    t = cost(SHAPES, "int8-lot4", table)
    s = cost(SHAPES, "int8-lot4", table, source="synthesized", energies=energies())
    outputs, groups = 10 * 7 * 3, 9
    assert s.energy_pj["multiply"] == pytest.approx(s.macs * 0.05)
    acc = outputs * groups * table.int32_add                  # 32-bit accumulator: table
    assert s.energy_pj["add"] == pytest.approx(outputs * groups * 0.3 + acc)
    assert s.energy_pj["psum"] == t.energy_pj["psum"] and s.energy_pj["operands"] == t.energy_pj["operands"]
    assert (s.mults, s.adds, s.psum_bits_written) == (t.mults, t.adds, t.psum_bits_written)
    assert "synthesized" in s.sources["multiply"] and "Yosys 0.0" in s.sources["multiply"]
    assert "accumulator: table" in s.sources["add"]
    assert all(v.startswith("table") for k, v in s.sources.items() if k in ("psum", "operands"))
    assert all(v.startswith("table") for v in t.sources.values())
    assert s.scaled(0.5).sources == s.sources


def test_native_has_no_circuit_and_bad_arguments():
    n = cost(SHAPES, "fp32", source="synthesized")
    assert n.energy_pj == cost(SHAPES, "fp32").energy_pj and "no circuit" in n.sources["multiply"]
    with pytest.raises(ConfigError, match="source"):
        cost(SHAPES, "int8", source="measured")
    with pytest.raises(ConfigError, match="int8-lot4"):
        cost(SHAPES, "int8", source="synthesized", energies=energies())
    assert dataclasses.replace(energies(), config="int8").source.startswith("synthesized (Yosys 0.0")


def test_lane_only_energies_keep_the_table_tree():
    table = EnergyTable.load()
    t = cost(SHAPES, "fp13", table)
    lane_only = dataclasses.replace(energies("fp13"), tree_pj_per_group=None)
    s = cost(SHAPES, "fp13", table, source="synthesized", energies=lane_only)
    assert s.energy_pj["add"] == t.energy_pj["add"] and s.energy_pj["multiply"] == pytest.approx(s.macs * 0.05)
    assert s.sources["add"].startswith("adder tree: table") and "accumulator: table" in s.sources["add"]
    assert "synthesized" not in s.sources["add"]


def test_synthesized_accumulator_replaces_the_table_add():
    table = EnergyTable.load()
    s = cost(SHAPES, "fp13", table, source="synthesized",
             energies=dataclasses.replace(energies("fp13"), accumulate_pj=0.4))
    outputs, groups = 10 * 7 * 3, 9
    assert s.energy_pj["add"] == pytest.approx(outputs * groups * (0.3 + 0.4))
    assert s.sources["add"].startswith("adder tree: synthesized; accumulator: synthesized -- synthesized (Yosys 0.0")
