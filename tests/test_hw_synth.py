"""Generic-gate synthesis (vitaccel.hw.synth) and the gate-level netlist simulator (hw.netlist)."""

import json

import numpy as np
import pytest
from amaranth import Module, Mux, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hw_helpers import Mul
from vitaccel.errors import HardwareError
from vitaccel.hw import netlist as netlist_mod
from vitaccel.hw.synth import _run, default_cache_dir, generic_script, synth_table, synthesize, to_rtlil

LIBERTY = """library(tiny) {
  cell(BUF) { area: %(buf)s; pin(A) { direction: input; } pin(Y) { direction: output; function: "A"; } }
  cell(INV) { area: %(inv)s; pin(A) { direction: input; } pin(Y) { direction: output; function: "A'"; } }
  cell(NAND2) { area: %(nand)s; pin(A) { direction: input; } pin(B) { direction: input; }
                pin(Y) { direction: output; function: "(A*B)'"; } }
  cell(NOR2) { area: %(nand)s; pin(A) { direction: input; } pin(B) { direction: input; }
               pin(Y) { direction: output; function: "(A+B)'"; } }
  cell(XOR2) { area: %(xor)s; pin(A) { direction: input; } pin(B) { direction: input; }
               pin(Y) { direction: output; function: "(A^B)"; } }
}
"""


class Mixed(wiring.Component):
    """Comparisons, muxes, a variable shift and an unsigned port: exercises every gate kind."""

    a: In(signed(6))
    b: In(signed(6))
    s: In(unsigned(3))
    y: Out(signed(14))
    z: Out(unsigned(4))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += [self.y.eq(Mux(self.a > self.b, (self.a - self.b) << self.s, self.a ^ ~self.b)),
                     self.z.eq((self.a[:4] | self.b[2:6]) & ~self.s)]
        return m


class Reg(wiring.Component):
    """A registered adder (has flip-flops: synthesizes, but is not a combinational netlist)."""

    a: In(unsigned(4))
    y: Out(unsigned(5))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.y.eq(self.a + 1)
        return m


class Wrapped(wiring.Component):
    """Two submodules: flattening leaves hierarchy notes that are not gates."""

    a: In(signed(4))
    b: In(signed(4))
    p: Out(signed(9))

    def elaborate(self, platform):
        m = Module()
        m.submodules.m1 = m1 = Mul(4)
        m.submodules.m2 = m2 = Mul(4)
        m.d.comb += [m1.a.eq(self.a), m1.b.eq(self.b), m2.a.eq(self.b), m2.b.eq(3), self.p.eq(m1.p + m2.p)]
        return m


@pytest.fixture(scope="module")
def mul8(tmp_path_factory):
    return synthesize(Mul(8), "mul8", cache=tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    return synthesize(Mixed(), "mixed", cache=tmp_path_factory.mktemp("cache"))


def test_figures_of_the_exact_multiplier(mul8):
    assert mul8.n_cells == sum(mul8.cells.values()) > 100
    assert set(mul8.cells) <= {f"$_{g}_" for g in ("AND", "NAND", "OR", "NOR", "XOR", "XNOR", "MUX", "NOT", "BUF")}
    assert mul8.transistors > 4 * mul8.n_cells          # stat -tech cmos: 2 (NOT) .. 12 (MUX) per gate
    assert mul8.netlist().cell_counts() == mul8.cells   # the netlist is the one that was counted
    assert mul8.transistors_complete and mul8.area_um2 is None and mul8.yosys_version.startswith("Yosys ")


def test_depth_equals_yosys_ltp(mul8, mixed):
    for unit, comp in ((mul8, Mul(8)), (mixed, Mixed())):
        script = generic_script(unit.name) + "tee -q -o ltp.txt ltp -noff\n"
        text = _run(script, {"design.il": to_rtlil(comp, unit.name)}, ("ltp.txt",), unit.name)["ltp.txt"]
        assert f"(length={unit.depth})" in text, text


def test_deterministic_without_cache():
    r1, r2 = (synthesize(Mixed(), "mixed", cache=False) for _ in range(2))
    assert not r1.cached and not r2.cached
    assert (r1.cells, r1.transistors, r1.depth) == (r2.cells, r2.transistors, r2.depth)


def test_cache_hit_and_version_check(tmp_path):
    first = synthesize(Mixed(), "mixed", cache=tmp_path)
    (record,) = tmp_path.glob("*.json")
    assert json.loads(record.read_text())["yosys_version"] == first.yosys_version
    again = synthesize(Mixed(), "mixed", cache=tmp_path)
    assert again.cached and not first.cached and again.row() == first.row()
    data = json.loads(record.read_text())
    data["yosys_version"] = "Yosys 0.0 (another)"        # a record of another tool version is not used
    record.write_text(json.dumps(data))
    assert not synthesize(Mixed(), "mixed", cache=tmp_path).cached


def test_default_cache_dir_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "vitaccel" / "synth"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "vitaccel" / "synth"


def test_liberty_area(tmp_path):
    lib1, lib2 = tmp_path / "one.lib", tmp_path / "two.lib"
    lib1.write_text(LIBERTY % {"buf": 1.0, "inv": 1.0, "nand": 1.5, "xor": 3.0})
    lib2.write_text(LIBERTY % {"buf": 2.0, "inv": 2.0, "nand": 3.0, "xor": 6.0})
    a1 = synthesize(Mixed(), "mixed", liberty=lib1, cache=tmp_path / "c")
    a2 = synthesize(Mixed(), "mixed", liberty=lib2, cache=tmp_path / "c")
    assert a1.area_um2 > 0 and a2.area_um2 == pytest.approx(2 * a1.area_um2)
    assert a1.liberty == str(lib1) and a1.cells == synthesize(Mixed(), "mixed", cache=tmp_path / "c").cells


def test_bad_liberty_names_the_file(tmp_path):
    bad = tmp_path / "broken.lib"
    bad.write_text("library(x) { cell(")
    with pytest.raises(HardwareError, match="broken.lib"):
        synthesize(Mixed(), "mixed", liberty=bad, cache=False)
    with pytest.raises(HardwareError, match="missing.lib"):
        synthesize(Mixed(), "mixed", liberty=tmp_path / "missing.lib", cache=False)
    nobuf = tmp_path / "nobuf.lib"               # parses, but abc cannot map to it
    nobuf.write_text("\n".join(ln for ln in (LIBERTY % {"buf": 1, "inv": 1, "nand": 1, "xor": 1}).splitlines()
                               if "BUF" not in ln))
    with pytest.raises(HardwareError, match="nobuf.lib"):
        synthesize(Mixed(), "mixed", liberty=nobuf, cache=False)


def test_bad_units():
    with pytest.raises(HardwareError, match="cannot be converted"):
        synthesize(object(), "thing", cache=False)
    with pytest.raises(HardwareError, match="unit 'broken'.*Yosys failed"):
        synthesize("module \\broken\n  cell $nosuchcell $1\n", "broken", cache=False)
    with pytest.raises(HardwareError, match="not allowed"):
        synthesize(to_rtlil(Mixed(), "mixed"), "two words", cache=False)


def test_netlist_exact_on_every_pair(mul8):
    a, b = (x.ravel() for x in np.meshgrid(np.arange(-128, 128), np.arange(-128, 128)))
    assert np.array_equal(mul8.netlist().simulate({"a": a, "b": b})["p"], a * b)


def test_hierarchical_unit(tmp_path):
    unit = synthesize(Wrapped(), "wrapped", cache=tmp_path)
    assert unit.netlist().cell_counts() == unit.cells and unit.transistors_complete
    a, b = (x.ravel() for x in np.meshgrid(np.arange(-8, 8), np.arange(-8, 8)))
    assert np.array_equal(unit.netlist().simulate({"a": a, "b": b})["p"], a * b + 3 * b)


def test_netlist_matches_amaranth_simulation(mixed):
    rng = np.random.default_rng(1)
    n = 300
    a, b, s = rng.integers(-32, 32, n), rng.integers(-32, 32, n), rng.integers(0, 8, n)
    got = mixed.netlist().simulate({"a": a, "b": b, "s": s})
    dut = Mixed()
    want = {"y": [], "z": []}
    sim = Simulator(dut)

    async def bench(ctx):
        for i in range(n):
            ctx.set(dut.a, int(a[i]))
            ctx.set(dut.b, int(b[i]))
            ctx.set(dut.s, int(s[i]))
            want["y"].append(ctx.get(dut.y))
            want["z"].append(ctx.get(dut.z))

    sim.add_testbench(bench)
    sim.run()
    assert got["y"].tolist() == want["y"] and got["z"].tolist() == want["z"]
    assert len(set(want["y"])) > 50                      # the vectors exercise the circuit


def test_toggles_match_output_changes_and_chunking(mul8, monkeypatch):
    rng = np.random.default_rng(2)
    stream = {"a": rng.integers(-128, 128, 1000), "b": rng.integers(-128, 128, 1000)}
    nl = mul8.netlist()
    counts = nl.toggle_counts(stream)
    p = nl.simulate(stream)["p"]
    for k, (_, y, _) in enumerate(nl.gates):            # gates driving an output bit: toggles seen there
        if y in nl.outputs["p"].rows:
            bit = (p >> nl.outputs["p"].rows.index(y)) & 1
            assert counts[k] == np.count_nonzero(np.diff(bit))
    monkeypatch.setattr(netlist_mod, "CHUNK", 70)        # chunk edges inside words and across them
    assert np.array_equal(nl.toggle_counts(stream), counts)
    assert np.array_equal(nl.simulate(stream)["p"], p)


def test_netlist_refuses_bad_input(mul8, tmp_path):
    nl = mul8.netlist()
    with pytest.raises(HardwareError, match="'a' holds values in \\[-200"):
        nl.simulate({"a": np.array([-200, 3]), "b": np.array([1, 2])})
    with pytest.raises(HardwareError, match="missing \\['b'\\]"):
        nl.simulate({"a": np.array([1])})
    with pytest.raises(HardwareError, match="differ in length"):
        nl.simulate({"a": np.array([1, 2]), "b": np.array([1])})
    reg = synthesize(Reg(), "reg", cache=tmp_path)          # registered: synthesizes, has a depth
    assert reg.n_cells > 0 and 1 <= reg.depth < reg.n_cells and not reg.transistors_complete
    with pytest.raises(HardwareError, match="flip-flops or latches"):
        reg.netlist().simulate({"a": np.array([1, 2])})


def test_synth_table_of_a_config(tmp_path):
    rows = synth_table("int8-lot4", cache=tmp_path, dot_unit=False)
    assert [r["element"] for r in rows] == ["int_lane", "int_tree", "accumulator", "accumulator_unit"]
    assert all(r["flow"] == "flat" for r in rows) and not rows[-1]["transistors_complete"]
    assert all(r["config"] == "int8-lot4" and r["cells"] > 0 and r["transistors"] > 0 and r["depth"] > 0
               and r["area_um2"] is None and not r["cached"] for r in rows)
    again = synth_table("int8-lot4", cache=tmp_path, dot_unit=False)
    assert all(r["cached"] for r in again) and [r["cells"] for r in again] == [r["cells"] for r in rows]
    with pytest.raises(HardwareError, match="datapath"):
        synth_table("fp32", cache=tmp_path)


def test_cache_does_not_depend_on_source_location(tmp_path):
    from vitaccel.hw.energy import ExactMultiplier

    # the same logic, written in another file: the same record
    assert not synthesize(Mul(8), "m8", cache=tmp_path).cached
    assert synthesize(ExactMultiplier(8, 8), "m8", cache=tmp_path).cached
