"""Clocked gate-level simulation (Netlist.run): every flip-flop kind against a reference model,
the synthesized registered accumulators against Amaranth's simulator, and accumulator energy."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from vitaccel.arith.config import AcceleratorConfig
from vitaccel.errors import HardwareError
from vitaccel.hw import build
from vitaccel.hw import energy as energy_mod
from vitaccel.hw.energy import Calibration, dot_lanes, group_energies
from vitaccel.hw.netlist import Netlist
from vitaccel.hw.synth import synth_element

CAL = Calibration(0.001, "mul8x8_exact", 0.2, 200.0, "test table", 64, 0, "Yosys 0.0 (test)")


def one_flop(kind: str) -> dict:
    """A netlist of one flip-flop of ``kind`` whose D is NOT(Q) XOR d (so it toggles unless d)."""
    conns = {"C": [2], "D": [10], "Q": [11]}
    if "E" in kind.split("_")[1]:
        conns["E"] = [4]
    if kind.startswith("$_SDFF"):
        conns["R"] = [5]
    ports = {"clk": {"direction": "input", "bits": [2]}, "d": {"direction": "input", "bits": [3]},
             "e": {"direction": "input", "bits": [4]}, "r": {"direction": "input", "bits": [5]},
             "q": {"direction": "output", "bits": [11]}}
    cells = {"ff": {"type": kind, "connections": conns},
             "g": {"type": "$_XNOR_", "connections": {"A": [11], "B": [3], "Y": [10]}}}
    return {"ports": ports, "cells": cells}


def reference(kind: str, d, e, r) -> list[int]:
    """Q per cycle from the Yosys cell library's definition of each kind."""
    parts = kind.strip("$_").split("_")
    pol = parts[1]
    enable = "E" in parts[0]
    reset = parts[0].startswith("SDFF")
    gated = parts[0] == "SDFFCE"
    en_low = enable and pol[-1] == "N"
    r_low = reset and pol[1] == "N"
    value = int(pol[2]) if reset else 0
    q, out = 0, []
    for t in range(len(d)):
        out.append(q)
        nxt = int(not (q ^ d[t]))
        en = (e[t] ^ en_low) if enable else 1
        rst = (r[t] ^ r_low) if reset else 0
        if rst and (en or not gated):
            q = value
        elif en:
            q = nxt
    return out


KINDS = ["$_DFF_P_", "$_DFF_N_", "$_DFFE_PP_", "$_DFFE_NN_", "$_SDFF_PP0_", "$_SDFF_PN1_", "$_SDFFE_PP0P_",
         "$_SDFFE_PN1N_", "$_SDFFCE_PP1P_", "$_SDFFCE_NN0N_"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_flip_flop_kind_against_its_definition(kind):
    rng = np.random.default_rng(len(kind))
    d, e, r = (rng.integers(0, 2, (200, 3)) for _ in range(3))
    nl = Netlist(one_flop(kind), "one")
    assert nl.clock() == "clk" and [f.kind for f in nl.flops] == [kind]
    run = nl.run({"d": d, "e": e, "r": r})
    for lane in range(3):
        want = reference(kind, d[:, lane], e[:, lane], r[:, lane])
        assert run.outputs["q"][:, lane].tolist() == want
    final = (run.final_state[0, 0] >> np.arange(3, dtype=np.uint64)) & np.uint64(1)    # after the last edge
    states = np.vstack([run.outputs["q"], final.astype(np.int64)[None]])
    assert run.flop_toggles.sum() == np.count_nonzero(np.diff(states, axis=0)) and run.transitions == 199 * 3


def test_refuses_latches_async_resets_and_the_clock_as_data():
    module = one_flop("$_DFF_P_")
    module["cells"]["ff"]["type"] = "$_DFF_PP0_"                     # asynchronous reset
    module["cells"]["ff"]["connections"]["R"] = [5]
    with pytest.raises(HardwareError, match="asynchronous"):
        Netlist(module, "async").run({"d": np.zeros(3, dtype=np.int64), "e": np.zeros(3, dtype=np.int64),
                                      "r": np.zeros(3, dtype=np.int64)})
    nl = Netlist(one_flop("$_DFF_P_"), "one")
    with pytest.raises(HardwareError, match="'clk' is the clock"):
        nl.run({"clk": np.zeros(3, dtype=np.int64), "d": np.zeros(3, dtype=np.int64),
                "e": np.zeros(3, dtype=np.int64), "r": np.zeros(3, dtype=np.int64)})
    with pytest.raises(HardwareError, match="missing \\['r'\\]"):
        nl.run({"d": np.zeros(3, dtype=np.int64), "e": np.zeros(3, dtype=np.int64)})


def amaranth_accumulator(dut, inputs: dict, cycles: int) -> list[int]:
    """``acc`` per cycle (before the clock edge) from Amaranth's simulator."""
    out = []

    async def bench(ctx):
        for t in range(cycles):
            for k, v in inputs.items():
                ctx.set(getattr(dut, k), int(v[t]))
            out.append(ctx.get(dut.acc))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


SMALL = AcceleratorConfig.from_dict({
    "name": "small-acc", "datapath": "int",
    "int_datapath": {"a_bits": 4, "b_bits": 4, "group_size": 2, "acc_bits": 12, "overflow": "saturate",
                     "psum_storage": {"tile_k": 4, "codec": {"kind": "float", "exp_bits": 3, "man_bits": 5,
                                                             "rounding": "nearest_even"}}}})


@pytest.fixture(scope="module")
def small_unit(tmp_path_factory):
    return synth_element(build(SMALL), "accumulator_unit", cache=tmp_path_factory.mktemp("cache"))


def test_int_accumulator_netlist_equals_amaranth(small_unit):
    nl = small_unit.netlist()
    assert {f.kind for f in nl.flops} <= {"$_SDFFE_PP0P_", "$_SDFF_PP0_", "$_DFFE_PP_", "$_DFF_P_"} and nl.flops
    rng = np.random.default_rng(3)
    cycles, port = 400, nl.inputs["psum"]
    psum = rng.integers(port.lo, port.hi, cycles, endpoint=True)
    first = (rng.random(cycles) < 0.1).astype(np.int64)
    en = (rng.random(cycles) < 0.85).astype(np.int64)
    run = nl.run({"psum": psum, "first": first, "en": en, "rst": np.zeros(cycles, dtype=np.int64)})
    want = amaranth_accumulator(build(SMALL).accumulator_unit(), {"psum": psum, "first": first, "en": en}, cycles)
    assert run.outputs["acc"][:, 0].tolist() == want
    assert len(set(want)) > 50 and max(want) == 2 ** 11 - 1          # saturates: the stream exercises it
    assert run.flop_toggles.sum() > 0 and run.gate_toggles.sum() > 0


def test_lanes_are_independent_sequences(small_unit):
    nl = small_unit.netlist()
    rng = np.random.default_rng(4)
    port = nl.inputs["psum"]
    streams = {"psum": rng.integers(port.lo, port.hi, (60, 70), endpoint=True),
               "first": (rng.random((60, 70)) < 0.2).astype(np.int64), "en": np.ones((60, 70), dtype=np.int64),
               "rst": np.zeros((60, 70), dtype=np.int64)}
    together = nl.run(streams)
    flops = gates = 0
    for lane in (0, 63, 64, 69):                                      # across the 64-lane word boundary
        alone = nl.run({k: v[:, lane] for k, v in streams.items()})
        assert np.array_equal(alone.outputs["acc"][:, 0], together.outputs["acc"][:, lane])
        flops, gates = flops + alone.flop_toggles.sum(), gates + alone.gate_toggles.sum()
    assert 0 < flops <= together.flop_toggles.sum() and 0 < gates <= together.gate_toggles.sum()


def test_dot_lanes_deal_whole_dot_products_in_order():
    first = np.zeros(40, dtype=bool)
    first[[0, 5, 7, 20, 21, 30]] = True
    index, used = dot_lanes(first, 3)
    assert used == 3 and sorted(index[index >= 0].tolist()) == list(range(40))
    for k in range(3):
        rows = index[index[:, k] >= 0, k]
        assert np.all(np.diff(rows) >= 1)                             # in order within each lane
        starts = [r for r in rows if first[r]]
        assert rows[0] in starts                                      # each lane starts a dot product
    assert dot_lanes(first, 100)[1] == 6


@pytest.mark.slow
def test_side_by_side_accumulators_measure_what_one_does(tmp_path, monkeypatch):
    rng = np.random.default_rng(5)
    a, b = rng.integers(-8, 8, (3000, 2)), rng.integers(-8, 8, (3000, 2))
    first = np.arange(3000) % 6 == 0
    acc = group_energies(SMALL, a, b, first, calibration=CAL, cache=tmp_path)["accumulator"]
    monkeypatch.setattr(energy_mod, "SEQUENCE_LANES", 1)              # one accumulator, all back to back
    single = group_energies(SMALL, a, b, first, calibration=CAL, cache=tmp_path)["accumulator"]
    assert single.flop_toggles_per_op == pytest.approx(acc.flop_toggles_per_op, rel=0.03)
    assert single.toggles_per_op == pytest.approx(acc.toggles_per_op, rel=0.03)


def test_accumulator_energy_on_a_stream(tmp_path):
    rng = np.random.default_rng(5)
    a, b = rng.integers(-8, 8, (300, 2)), rng.integers(-8, 8, (300, 2))
    first = np.arange(300) % 6 == 0
    e = group_energies(SMALL, a, b, first, calibration=CAL, cache=tmp_path)
    acc = e["accumulator"]
    assert acc.toggles_per_op > acc.flop_toggles_per_op > 0 and acc.energy_pj == pytest.approx(
        acc.toggles_per_op * CAL.pj_per_toggle)
    quiet = group_energies(SMALL, np.zeros_like(a), b, first, calibration=CAL, cache=tmp_path)["accumulator"]
    assert acc.n_ops == 300
    # zero products: the sum register stays 0; only the tile counter and the logic `first` drives toggle
    assert quiet.flop_toggles_per_op <= 2 < acc.flop_toggles_per_op and quiet.toggles_per_op < acc.toggles_per_op / 2
    with pytest.raises(HardwareError, match="first: shape"):
        group_energies(SMALL, a, b, first[:-1], calibration=CAL, cache=tmp_path)


@pytest.mark.slow
def test_float_accumulator_netlist_equals_amaranth(tmp_path):
    circuits = build("fp13")
    unit = synth_element(circuits, "accumulator_unit", cache=tmp_path)
    assert unit.name == "u_f32_accumulator_unit"                      # one unit for every float preset
    nl = unit.netlist()
    rng = np.random.default_rng(6)
    cycles = 400
    x = (rng.standard_normal(cycles) * 2.0 ** rng.integers(-130, 128, cycles)).astype(np.float32)
    bits = x.view(np.uint32).astype(np.int64)
    bits[rng.random(cycles) < 0.03] = 0x7F800000                      # infinities of both signs
    bits[rng.random(cycles) < 0.03] = 0xFF800000
    first = (rng.random(cycles) < 0.1).astype(np.int64)
    en = (rng.random(cycles) < 0.9).astype(np.int64)
    run = nl.run({"sum": bits, "first": first, "en": en, "rst": np.zeros(cycles, dtype=np.int64)})
    want = amaranth_accumulator(circuits.accumulator_unit(), {"sum": bits, "first": first, "en": en}, cycles)
    assert run.outputs["acc"][:, 0].tolist() == want
    assert len(set(want)) > 50 and 0x7FC00000 in want and 0x7F800000 in want    # finite sums, inf and NaN


def dot_unit_accumulators(config: AcceleratorConfig, pairs, cache) -> tuple[list[list[int]], list[list[int]]]:
    """Per dot product, ``acc`` after every group from the synthesized dot unit's netlist (one dot
    product per lane, idle cycles after it) and from golden."""
    from vitaccel.hw.export import golden_accumulators
    from vitaccel.hw.sim import group_stream

    circuits = build(config)
    unit = synth_element(circuits, "dot_unit", cache=cache)
    assert unit.flow == ("hierarchical" if circuits.hierarchical("dot_unit") else "flat")
    nl = unit.netlist()
    streams = [group_stream(a, b, (config.int_datapath or config.float_datapath).group_size) for a, b in pairs]
    cycles = max(len(s) for s in streams) + 1
    names = {k for s in streams for v in s for k in v}
    inputs = {k.replace("[", "__").rstrip("]"): np.zeros((cycles, len(streams)), dtype=np.int64) for k in names}
    inputs["rst"] = np.zeros((cycles, len(streams)), dtype=np.int64)
    for lane, s in enumerate(streams):
        for t, vec in enumerate(s):
            for k, v in vec.items():
                inputs[k.replace("[", "__").rstrip("]")][t, lane] = v
    run = nl.run(inputs)
    width = config.int_datapath.acc_bits if config.datapath == "int" else 32
    acc = run.outputs["acc"] & (2 ** width - 1)
    got = [acc[1:len(s) + 1, lane].tolist() for lane, s in enumerate(streams)]
    return got, [golden_accumulators(config, a, b) for a, b in pairs]


@pytest.mark.slow
@pytest.mark.parametrize("config", [SMALL, AcceleratorConfig.from_dict({
    "name": "small-float", "datapath": "float",
    "float_datapath": {"a_format": "e5m2", "b_format": "e5m2", "group_size": 4}})], ids=lambda c: c.name)
def test_dot_unit_netlist_equals_golden(config, tmp_path):
    import random

    from vitaccel.hw.export import _float_operands, _int_operands

    rng = random.Random(7)
    pairs = _int_operands(config, rng) if config.datapath == "int" else _float_operands(config, rng)
    got, want = dot_unit_accumulators(config, pairs, tmp_path)
    assert sum(g != w for g, w in zip(got, want)) == 0 and len(pairs) > 10


def test_registers_start_from_their_init_values(tmp_path):
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    class Counter(wiring.Component):
        a: In(4)
        acc: Out(4, init=5)

        def elaborate(self, platform):
            m = Module()
            m.d.sync += self.acc.eq(self.acc + self.a)
            return m

    from vitaccel.hw.synth import synthesize

    nl = synthesize(Counter(), "counter", cache=tmp_path).netlist()
    assert sorted(nl.initial) == [0, 0, 1, 1]                           # init 5 = 0b0101
    a = np.random.default_rng(8).integers(0, 16, 50)
    got = nl.run({"a": a, "rst": np.zeros(50, dtype=np.int64)}).outputs["acc"][:, 0].tolist()
    assert got == amaranth_accumulator(Counter(), {"a": a}, 50) and got[0] == 5
