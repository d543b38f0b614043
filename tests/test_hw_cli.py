"""``vitaccel hw synth`` and ``vitaccel hw sweep``: tables, JSON, plot, and one-line errors."""

import json

import pytest

import vitaccel.hw.sweep as sweep_mod
import vitaccel.hw.synth as synth_mod
from vitaccel.cli import main

TINY = """name: tiny-int
datapath: int
int_datapath:
  a_bits: 4
  b_bits: 4
  keep_bits: 2
  keep_rounding: unbiased
  group_size: 2
  acc_bits: 16
"""


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(synth_mod, "default_cache_dir", lambda: tmp_path / "cache")
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


def test_synth_table_and_json(tiny, tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert main(["hw", "synth", "--accelerator", str(tiny), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "int_lane" in text and "int_tree" in text and "accumulator" in text and "Yosys" in text
    rows = json.loads(out.read_text())
    assert [r["element"] for r in rows] == ["int_lane", "int_tree", "accumulator", "accumulator_unit"]
    assert "flat" in text and [r["flow"] for r in rows] == ["flat"] * 4
    assert all(r["cells"] == sum(r["cells_by_type"].values()) > 0 and r["yosys"].startswith("Yosys") for r in rows)
    assert main(["hw", "synth", "--accelerator", str(tiny), "--json", str(out)]) == 0   # same cells, from cache
    again = json.loads(out.read_text())
    assert [r["cells"] for r in again] == [r["cells"] for r in rows] and all(r["cached"] for r in again)


def test_synth_errors_name_the_file_or_key(tiny, tmp_path, capsys):
    bad = tmp_path / "broken.lib"
    bad.write_text("library(x) { cell(")
    assert main(["hw", "synth", "--accelerator", str(tiny), "--liberty", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "broken.lib" in err
    assert main(["hw", "synth", "--accelerator", "fp32"]) == 2
    assert "datapath" in capsys.readouterr().err
    wide = tmp_path / "wide.yaml"
    wide.write_text(TINY.replace("group_size: 2", "group_size: 4096"))
    assert main(["hw", "synth", "--accelerator", str(wide)]) == 2
    assert "int_datapath.group_size" in capsys.readouterr().err
    assert main(["hw", "synth", "--accelerator", "no-such-preset"]) == 2
    assert "no-such-preset" in capsys.readouterr().err


def test_sweep_table_and_plot(tmp_path, monkeypatch, capsys):
    real = sweep_mod.sweep
    monkeypatch.setattr(sweep_mod, "sweep", lambda n: real(keep_bits=(3, 8), roundings=("unbiased",), n=256,
                                                           cache=tmp_path / "cache"))
    assert main(["hw", "sweep", "--out", str(tmp_path / "sw"), "--ops", "256"]) == 0
    text = capsys.readouterr().out
    assert "mul8x8_exact" in text and "drum_k4" in text and "lane_k3_unbiased" in text
    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert {r["unit"] for r in rows} == {"mul8x8_exact", "lane_k3_unbiased", "lane_k8_unbiased", "drum_k4"}
    assert (tmp_path / "sw" / "pareto.png").stat().st_size > 10_000
