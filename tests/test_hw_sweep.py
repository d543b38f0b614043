"""The multiplier design-space sweep (vitaccel.hw.sweep): circuits equal the golden arithmetic,
rows carry synthesized costs and exact error statistics, Pareto front and plot."""

import numpy as np
import pytest
import torch

from vitaccel.arith import intpath
from vitaccel.arith.config import AcceleratorConfig, IntDatapath
from vitaccel.arith.stats import error_stats
from vitaccel.errors import HardwareError
from vitaccel.hw.energy import calibrate
from vitaccel.hw.sweep import drum, hw_lane, pareto_front, plot_pareto, sweep
from vitaccel.hw.synth import synthesize

A, B = (x.ravel() for x in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)))


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("synth-cache")


def lane_matches_golden(keep_bits: int, rounding: str, cache) -> None:
    """The synthesized netlist of vitaccel.hw's lane, simulated here, equals intpath on every pair."""
    unit = synthesize(hw_lane(keep_bits, rounding), f"lane_k{keep_bits}_{rounding}", cache=cache)
    want = intpath.multiply(torch.from_numpy(A), torch.from_numpy(B), keep_bits, rounding).numpy()
    assert np.array_equal(unit.netlist().simulate({"a": A, "w": B})["p"], want)


@pytest.mark.parametrize("rounding", intpath.ROUNDINGS)
def test_lane_equals_intpath_on_every_pair(rounding, cache):
    lane_matches_golden(4, rounding, cache)


@pytest.mark.slow
@pytest.mark.parametrize("keep_bits", range(1, 9))
@pytest.mark.parametrize("rounding", intpath.ROUNDINGS)
def test_lane_equals_intpath_every_keep_bits(keep_bits, rounding, cache):
    lane_matches_golden(keep_bits, rounding, cache)


@pytest.mark.parametrize("keep_bits", [2, 4])
def test_drum_truncates_both_operands(keep_bits, cache):
    unit = synthesize(drum(keep_bits), f"drum_k{keep_bits}", cache=cache)
    ta, tb = (intpath.leading_one_truncate(torch.from_numpy(x), keep_bits, "unbiased").numpy() for x in (A, B))
    assert np.array_equal(unit.netlist().simulate({"a": A, "b": B})["p"], ta * tb)


def test_sweep_rows(cache):
    calls = []

    def factory(k, r):
        calls.append((k, r))
        return hw_lane(k, r)

    cal = calibrate(n=4096, cache=cache)
    rows = sweep(factory, keep_bits=(2, 4), roundings=("truncate", "unbiased"), drum_keep_bits=(4,),
                 calibration=cal, n=4096, cache=cache)
    assert calls == [(2, "truncate"), (2, "unbiased"), (4, "truncate"), (4, "unbiased")]
    assert [r["unit"] for r in rows] == ["mul8x8_exact", "lane_k2_truncate", "lane_k2_unbiased", "lane_k4_truncate",
                                         "lane_k4_unbiased", "drum_k4"]
    by = {r["unit"]: r for r in rows}
    exact = by["mul8x8_exact"]
    assert exact["energy_pj"] == pytest.approx(cal.reference_pj) and exact["max_rel_err"] == 0
    lane = by["lane_k4_unbiased"]
    stats = error_stats(AcceleratorConfig(datapath="int", int_datapath=IntDatapath(keep_bits=4,
                                                                                   keep_rounding="unbiased")))
    assert (lane["mean_rel_err"], lane["std_rel_err"], lane["max_rel_err"]) == (stats.mean, stats.std, stats.max)
    assert by["drum_k4"]["std_rel_err"] > lane["std_rel_err"]          # two truncated operands: more error
    assert by["lane_k2_truncate"]["transistors"] < lane["transistors"] < exact["transistors"]
    assert all(r["cells"] > 0 and r["depth"] > 0 and r["energy_pj"] > 0 for r in rows)


def test_pareto_front():
    rows = [{"unit": "a", "energy_pj": 1.0, "rms_rel_err": 0.3}, {"unit": "b", "energy_pj": 2.0, "rms_rel_err": 0.1},
            {"unit": "c", "energy_pj": 2.5, "rms_rel_err": 0.2}, {"unit": "d", "energy_pj": 1.0, "rms_rel_err": -0.4},
            {"unit": "e", "energy_pj": 3.0, "rms_rel_err": 0.05}]
    assert [r["unit"] for r in pareto_front(rows)] == ["a", "b", "e"]
    with pytest.raises(HardwareError, match="'area'"):
        pareto_front(rows, cost="area")


def test_plot_pareto(tmp_path):
    rows = [{"unit": "mul8x8_exact", "kind": "exact", "keep_bits": None, "rounding": None, "transistors": 2900,
             "energy_pj": 0.2, "rms_rel_err": 0.0}]
    rows += [{"unit": f"lane_k{k}_{r}", "kind": "lane", "keep_bits": k, "rounding": r, "transistors": 300 * k + i,
              "energy_pj": 0.02 * k + 0.001 * i, "rms_rel_err": 2.0 ** -k * (1 + i)}
             for k in range(1, 8) for i, r in enumerate(intpath.ROUNDINGS)]
    rows.append({"unit": "drum_k4", "kind": "drum", "keep_bits": 4, "rounding": "unbiased", "transistors": 1800,
                 "energy_pj": 0.1, "rms_rel_err": 0.03})
    out = plot_pareto(rows, tmp_path / "pareto.png")
    assert out.stat().st_size > 10_000 and out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("keep_bits", [0, 9, 2.5])
def test_bad_drum_keep_bits(keep_bits):
    with pytest.raises(HardwareError, match=f"keep_bits: value {keep_bits!r} is not allowed; an integer from 1 to 8"):
        drum(keep_bits)
