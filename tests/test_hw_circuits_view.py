"""The report's Circuits section (vitaccel.viz.circuits) on a tiny model and tiny datapaths."""

import pytest
import torch
import torch.nn as nn

from vitaccel.measure.hardware import EnergyTable, MatmulShape
from vitaccel.viz.circuits import circuits_section, measure_circuits, unit_table

TINY = """name: {name}
datapath: int
int_datapath:
  a_bits: 8
  b_bits: 4
  keep_bits: {keep}
  keep_rounding: unbiased
  group_size: 2
  acc_bits: 16
"""


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))
    x = torch.randn(4, 6)
    root = tmp_path_factory.mktemp("configs")
    tiny, exact = root / "tiny.yaml", root / "exact.yaml"
    tiny.write_text(TINY.format(name="tiny-int", keep=3))
    exact.write_text(TINY.format(name="tiny-exact", keep="null"))
    cc = measure_circuits(model, x, [str(tiny), "fp32"], references=(str(exact),), rows=8, ops=256,
                          keep_bits=(4,), cache=tmp_path_factory.mktemp("cache"), progress=False)
    return model, x, cc, str(tiny)


def test_units_energies_and_sweep(measured):
    _, _, cc, tiny = measured
    assert set(cc.model) == set(cc.random) == {"tiny-int", "tiny-exact"}          # fp32: no circuit
    assert [(r["config"], r["element"]) for r in cc.units] == [
        (c, e) for c in ("tiny-int", "tiny-exact") for e in ("int_lane", "int_tree", "accumulator_unit")]
    assert all(r["cells"] > 0 and r["energy_random_pj"] > 0 and r["energy_model_pj"] is not None for r in cc.units)
    assert {r["unit"] for r in cc.sweep} == {"mul8x8_exact", "lane_k4_truncate", "lane_k4_nearest",
                                             "lane_k4_unbiased", "drum_k4"}
    assert cc.cost_options(tiny)["energies"] is cc.model["tiny-int"]
    assert cc.cost_options("fp32") == {"source": "synthesized", "energies": None}
    header, rows = unit_table(cc)
    assert len(rows) == 6 and rows[0][header.index("transistors / fp16")] == "-"   # no fp16 reference here
    assert rows[2][header.index("transistors")].endswith("+")                    # flip-flops: a lower bound


def test_section(measured, tmp_path):
    _, _, cc, tiny = measured
    shapes = {"dense": [MatmulShape(256, 64, 256)]}
    points = [{"accelerator": tiny, "density": "dense", "top1": 50.0, "energy_uj": 1.0},
              {"accelerator": "fp32", "density": "dense", "top1": 60.0, "energy_uj": 2.0}]
    section = circuits_section(cc, points, shapes, 1, EnergyTable.load(), tmp_path)
    assert section.title == "Circuits" and "Yosys" in section.text[0]
    assert [f for f, _ in section.figures] == ["pareto.png", "accuracy_vs_energy_table.png",
                                               "accuracy_vs_energy_synthesized.png"]
    assert all((tmp_path / f).exists() for f, _ in section.figures)
    energy = section.tables[1][1]
    assert energy[0][0] == tiny and energy[0][-2] != energy[0][-1]      # table and synthesized differ
    assert energy[1][-2] == energy[1][-1]                               # fp32: table both ways
