"""Hierarchical synthesis (each distinct block once, then composed): module deduplication, the
composed float tree against flat synthesis and against golden, determinism."""

import random
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import AcceleratorConfig, FloatDatapath
from vitaccel.arith.formats import FloatFormat
from vitaccel.errors import HardwareError
from vitaccel.hw import build
from vitaccel.hw.synth import dedupe_modules, synth_element, synthesize, to_rtlil

sys.path.insert(0, str(Path(__file__).parent))
from hw_helpers import Mul  # noqa: E402
from test_hw_float import random_groups, special_codes, tree_reference  # noqa: E402


class Pair(wiring.Component):
    """Two identical 4-bit multipliers wired alike (one block), a 3-bit one (another)."""

    x: In(signed(8))
    y: In(signed(8))
    p: Out(signed(12))

    def elaborate(self, platform):
        m = Module()
        m.submodules.m1 = m1 = Mul(4)
        m.submodules.m2 = m2 = Mul(4)
        m.submodules.m3 = m3 = Mul(3)
        m.d.comb += [m1.a.eq(self.x[:4]), m1.b.eq(self.x[4:]), m2.a.eq(self.y[:4]), m2.b.eq(self.y[4:]),
                     m3.a.eq(self.x[:3]), m3.b.eq(self.y[5:]), self.p.eq(m1.p + m2.p + m3.p)]
        return m


def small_config(**options) -> AcceleratorConfig:
    fp = FloatDatapath(a_format=options.pop("fmt", "e4m3"), b_format="e4m3", group_size=4, **options)
    return AcceleratorConfig(name="small", datapath="float", float_datapath=fp)


def test_dedupe_keeps_one_module_per_distinct_block():
    text, counts = dedupe_modules(to_rtlil(Pair(), "pair"))
    assert counts == {"pair": 1, "pair.m1": 2, "pair.m3": 1}
    assert text.count("\nmodule ") + text.startswith("module ") == 3 and "pair.m2" not in text
    assert dedupe_modules(text) == (text, counts)                     # already deduplicated: unchanged


def test_dedupe_of_the_float_tree_counts_every_instance():
    _, counts = dedupe_modules(to_rtlil(build(small_config()).makers["float_tree"](), "t"))
    assert counts == {"t": 1, "t.fixed0": 4, "t.sum_add_l0_0": 2, "t.sum_add_l1_0": 1, "t.normalise": 1}
    _, counts = dedupe_modules(to_rtlil(build("fp13").makers["float_tree"](), "t"))
    assert counts["t.fixed0"] == 16 and counts["t.sum_add_l0_0"] == 8 and len(counts) == 7


def test_composed_unit_is_the_sum_of_its_blocks_and_exact(tmp_path):
    unit = synthesize(Pair(), "pair", cache=tmp_path, hierarchical=True)
    assert unit.flow == "hierarchical" and unit.blocks["pair.m1"]["instances"] == 2
    assert unit.n_cells == sum(b["instances"] * b["cells"] for b in unit.blocks.values())
    assert unit.netlist().cell_counts() == unit.cells
    x, y = (v.ravel() for v in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)))

    def low(v, bits):
        return ((v & (2 ** bits - 1)) ^ 2 ** (bits - 1)) - 2 ** (bits - 1)

    want = low(x, 4) * (x >> 4) + low(y, 4) * (y >> 4) + low(x, 3) * (y >> 5)
    assert np.array_equal(unit.netlist().simulate({"x": x, "y": y})["p"], want)
    with pytest.raises(HardwareError, match="liberty"):
        synthesize(to_rtlil(Pair(), "pair"), "pair", liberty=tmp_path / "cells.lib", cache=False, hierarchical=True)


def lane_then_tree(config: AcceleratorConfig, tree, groups, cache) -> np.ndarray:
    """Group sums of the gate-level lane netlist feeding the gate-level tree netlist."""
    circuits = build(config)
    lane = synth_element(circuits, "float_lane", cache=cache).netlist()
    a = np.array([g[0] for g in groups])
    b = np.array([g[1] for g in groups])
    products = {f"p__{i}": lane.simulate({"a": a[:, i], "b": b[:, i]})["p"] for i in range(a.shape[1])}
    return tree.netlist().simulate(products)["sum"]


def tree_groups(fmt: FloatFormat, g: int, seed: int) -> list:
    rng = random.Random(seed)
    top = fmt.max_code >> fmt.man_bits
    groups = (random_groups(fmt, g, 200, rng, 0, top) + random_groups(fmt, g, 40, rng, 0, 2)
              + random_groups(fmt, g, 40, rng, top - 1, top))
    one = fmt.bias << fmt.man_bits
    groups.append(([one] * g, [one | (1 << (fmt.bits - 1))] + [one] * (g - 1)))       # cancels to 0
    specials = special_codes(fmt)
    return groups + [([rng.choice(specials) for _ in range(g)], [rng.choice(specials) for _ in range(g)])
                     for _ in range(40)]


def golden_sums(config: AcceleratorConfig, groups) -> np.ndarray:
    return np.array([tree_reference(config.float_datapath, a, b) for a, b in groups])


def canonical(sums: np.ndarray) -> np.ndarray:
    """The tree's float32 bits as the accumulator reads them (-0 -> +0, every NaN canonical)."""
    s = sums & 0xFFFFFFFF
    s = np.where(s == 0x80000000, 0, s)
    return np.where(((s >> 23) & 0xFF == 0xFF) & (s & 0x7FFFFF != 0), 0x7FC00000, s)


def test_composed_exact_tree_equals_golden(tmp_path):
    config = small_config(fmt="e5m2")
    circuits = build(config)
    assert circuits.hierarchical("float_tree") and not circuits.hierarchical("float_lane")
    tree = synth_element(circuits, "float_tree", cache=tmp_path)
    assert tree.flow == "hierarchical" and tree.blocks["u_small_float_tree.fixed0"]["instances"] == 4
    groups = tree_groups(FloatFormat.named("e5m2"), 4, 1)
    mismatches = canonical(lane_then_tree(config, tree, groups, tmp_path)) != golden_sums(config, groups)
    assert int(mismatches.sum()) == 0


@pytest.mark.slow
def test_composition_matches_flat_synthesis_on_a_small_tree(tmp_path):
    config = small_config()
    make = build(config).makers["float_tree"]
    flat = synthesize(make(), "small_tree", cache=False)
    composed = synthesize(make(), "small_tree", cache=False, hierarchical=True)
    again = synthesize(make(), "small_tree", cache=False, hierarchical=True)
    assert (again.cells, again.depth, again.netlist_json) == (composed.cells, composed.depth, composed.netlist_json)
    # no optimisation across block boundaries: a little larger than flat, never smaller by much
    assert 0.97 * flat.n_cells <= composed.n_cells <= 1.05 * flat.n_cells
    assert 0.97 * flat.transistors <= composed.transistors <= 1.05 * flat.transistors
    groups = tree_groups(FloatFormat.named("e4m3"), 4, 2)
    want = golden_sums(config, groups)
    for unit in (flat, composed):
        assert int((canonical(lane_then_tree(config, unit, groups, tmp_path)) != want).sum()) == 0
