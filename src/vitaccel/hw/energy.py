"""Switching energy of a synthesized unit: gate-output toggles per operation on an operand stream,
times an energy per toggle pinned to the energy table (DESIGN.md section 12).

The scale: the exact int8 x int8 multiplier (``ExactMultiplier``), synthesized by the same flow and
driven with uniform random operands, costs the table's ``int8_mult``; every other unit's energy
is its toggles per operation relative to that reference. Toggles come from the zero-delay
gate-level simulation of ``vitaccel.hw.netlist``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth import Module, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.errors import HardwareError
from vitaccel.hw.float_tree import formats, mx_sides
from vitaccel.hw.netlist import Netlist
from vitaccel.hw.synth import SynthResult, synth_element, synthesize

REFERENCE_UNIT = "mul8x8_exact"
DEFAULT_OPS = 1 << 16
ASSUMPTIONS = (
    "switching: zero-delay gate-level simulation of the generic-gate netlist (settled values per "
    "operation; glitches are not counted)",
    "every gate-output toggle costs the same energy (no fanout, wire or gate-type weighting); the "
    "unit's input ports are driven from outside and their toggles are not counted",
    "consecutive operations of the stream run back to back on the same unit",
    "registered units (accumulators) are simulated clock by clock; a flip-flop output toggle costs the "
    "same as a gate-output toggle; the clock net and the flip-flops' internal clock load are not counted",
    "scale pinned: the exact int8 x int8 multiplier on uniform random operands costs the energy "
    "table's int8_mult",
)


class ExactMultiplier(wiring.Component):
    """``p = a * b`` on signed operands: the reference unit of the energy scale."""

    def __init__(self, a_bits: int = 8, b_bits: int = 8) -> None:
        self.a_bits, self.b_bits = a_bits, b_bits
        super().__init__({"a": In(signed(a_bits)), "b": In(signed(b_bits)), "p": Out(signed(a_bits + b_bits))})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.d.comb += self.p.eq(self.a * self.b)
        return m


@dataclass(frozen=True)
class Calibration:
    """Energy per gate-output toggle, from the reference unit's toggles and the table's figure."""

    pj_per_toggle: float
    reference_unit: str
    reference_pj: float
    reference_toggles_per_op: float
    table_source: str
    n_ops: int
    seed: int
    yosys_version: str


@dataclass(frozen=True)
class EnergyEstimate:
    """Estimated switching energy of one operation of a unit, with what it rests on."""

    unit: str
    toggles_per_op: float
    energy_pj: float
    n_ops: int
    operands: str
    calibration: Calibration
    assumptions: tuple[str, ...] = ASSUMPTIONS
    flop_toggles_per_op: float = 0.0     # of toggles_per_op: flip-flop outputs (registered units)

    def row(self) -> dict:
        return {"unit": self.unit, "toggles_per_op": self.toggles_per_op, "energy_pj": self.energy_pj,
                "flop_toggles_per_op": self.flop_toggles_per_op, "n_ops": self.n_ops, "operands": self.operands,
                "pj_per_toggle": self.calibration.pj_per_toggle, "source": "synthesized"}


def uniform_operands(netlist: Netlist, n: int = DEFAULT_OPS, seed: int = 0) -> dict[str, np.ndarray]:
    """A stream of ``n`` operations, every input port uniform over its full range, independently
    (ports drawn in name order, so the stream depends only on the ports and the seed)."""
    if not isinstance(n, int) or n < 2:
        raise HardwareError(f"n: value {n!r} is not allowed; at least 2 operations (toggles need a transition)")
    rng = np.random.default_rng(seed)
    ports = sorted(netlist.inputs.items())
    return {name: rng.integers(port.lo, port.hi, size=n, endpoint=True) for name, port in ports}


def toggles_per_op(netlist: Netlist, stream: Mapping[str, np.ndarray]) -> float:
    """Gate-output toggles per operation (mean over the stream's consecutive pairs)."""
    n = len(next(iter(stream.values()))) if stream else 0
    if n < 2:
        raise HardwareError(f"netlist {netlist.name}: the operand stream holds {n} operations; toggles need at least 2")
    return float(netlist.toggle_counts(stream).sum()) / (n - 1)


def calibrate(*, table_path: Path | str | None = None, n: int = DEFAULT_OPS, seed: int = 0,
              cache: Path | str | bool | None = None) -> Calibration:
    """Energy per toggle such that ``ExactMultiplier(8, 8)`` on uniform random operands costs the
    table's ``int8_mult`` (the shipped 45 nm table unless ``table_path`` names another)."""
    from vitaccel.measure.energy_table import EnergyTable

    table = EnergyTable.load(table_path)
    ref = synthesize(ExactMultiplier(8, 8), REFERENCE_UNIT, cache=cache)
    toggles = toggles_per_op(ref.netlist(), uniform_operands(ref.netlist(), n, seed))
    return Calibration(table.int8_mult / toggles, REFERENCE_UNIT, table.int8_mult, toggles,
                       table.source or str(table_path or "shipped horowitz45nm"), n, seed, ref.yosys_version)


def energy_per_op(unit: SynthResult, stream: Mapping[str, np.ndarray] | None = None, *,
                  calibration: Calibration, n: int = DEFAULT_OPS, seed: int = 0) -> EnergyEstimate:
    """Energy of one operation of ``unit`` on ``stream`` (port name -> integer array), or on ``n``
    uniform random operations when ``stream`` is None."""
    netlist = unit.netlist()
    operands = "given stream"
    if stream is None:
        stream = uniform_operands(netlist, n, seed)
        operands = f"uniform random over each port's range (seed {seed})"
    t = toggles_per_op(netlist, stream)
    return EnergyEstimate(unit.name, t, t * calibration.pj_per_toggle, len(next(iter(stream.values()))), operands,
                          calibration)


RANDOM_DOT_GROUPS = 16      # uniform random operands: one dot product every 16 groups (K = 16 G)
SEQUENCE_LANES = 64        # independent accumulators simulated side by side (whole dot products each)


def group_energies(config: object, a: np.ndarray | None = None, b: np.ndarray | None = None,
                   first: np.ndarray | None = None, *, calibration: Calibration, n: int = 4096, seed: int = 0,
                   tree: bool = True, accumulator: bool = True, scales: Mapping[str, np.ndarray] | None = None,
                   cache: Path | str | bool | None = None) -> dict[str, EnergyEstimate]:
    """Energy of a config's lane (per multiply), with ``tree`` its adder tree (per group of G
    products) and with ``accumulator`` its registered accumulator (per group sum added) on operand
    codes ``a``, ``b`` of shape (n, G): row t is the group the unit takes at step t, column i feeds
    lane i (integer codes, or float bit patterns); uniform random over the lane's port ranges when
    None. ``first`` (n,) marks the rows that start a dot product (every ``RANDOM_DOT_GROUPS``-th
    row when None). The tree is driven by the lanes' own simulated products and the accumulator,
    cycle by cycle, by the tree's simulated sums (``Netlist.run``). MX operands: ``scales`` maps the
    tree's scale ports (``a_scale``, ``b_scale``) to (n,) E8M0 codes, one per group; when None,
    ``random_scales``."""
    from vitaccel.hw.circuits import build

    circuits = build(config)
    cfg = circuits.config
    kind = "int" if cfg.datapath == "int" else "float"
    g = (cfg.int_datapath if kind == "int" else cfg.float_datapath).group_size
    lane = synth_element(circuits, f"{kind}_lane", cache=cache)
    lane_nl = lane.netlist()
    first_port, second = "a", next(p for p in lane_nl.inputs if p != "a")
    operands = "given operands"
    if a is None or b is None:
        a, b = random_codes(cfg, lane_nl, (first_port, second), n, seed)
        operands = (f"uniform random over each lane port's range (seed {seed})" if kind == "int" else
                    f"uniform random finite codes of each format (seed {seed})")
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] != g or a.shape[0] < 2:
        raise HardwareError(f"operands: shapes {a.shape} and {b.shape} are not allowed; both (n, {g}) with n >= 2 "
                            f"(G = group_size of {cfg.name!r})")
    if first is None:
        first = np.arange(a.shape[0]) % RANDOM_DOT_GROUPS == 0
        dots = f"one dot product every {RANDOM_DOT_GROUPS} groups"
    else:
        first = np.asarray(first, dtype=bool).copy()
        if first.shape != (a.shape[0],):
            raise HardwareError(f"first: shape {first.shape} is not allowed; ({a.shape[0]},), one flag per row")
        dots = "the recorded dot products"
    first[0] = True
    scale_ports = [f"{side}_scale" for side in mx_sides(cfg.float_datapath)] if kind == "float" else []
    if scales is None:
        scales = random_scales(scale_ports, a.shape[0], seed)
        if scale_ports:
            operands += f", random block scales 2^-{SCALE_SPREAD} .. 2^{SCALE_SPREAD}"
    if sorted(scales) != scale_ports or any(np.shape(v) != (a.shape[0],) for v in scales.values()):
        raise HardwareError(f"scales: {sorted(scales)} is not allowed; {cfg.name!r} takes {scale_ports or 'none'}"
                            f"{f', each ({a.shape[0]},): one E8M0 code per group' if scale_ports else ''}")
    lane_toggles, products = 0, {k: np.asarray(v) for k, v in scales.items()}
    for i in range(g):
        stream = {first_port: a[:, i], second: b[:, i]}
        lane_toggles += int(lane_nl.toggle_counts(stream).sum())
        if tree or accumulator:
            products[f"p__{i}"] = lane_nl.simulate(stream)["p"]
    per_lane = lane_toggles / (g * (a.shape[0] - 1))
    out = {"lane": EnergyEstimate(lane.name, per_lane, per_lane * calibration.pj_per_toggle, g * a.shape[0],
                                  operands, calibration)}
    if tree or accumulator:
        unit = synth_element(circuits, f"{kind}_tree", cache=cache)
        tree_nl = unit.netlist()
        if tree:
            per_tree = toggles_per_op(tree_nl, products)
            out["tree"] = EnergyEstimate(unit.name, per_tree, per_tree * calibration.pj_per_toggle, a.shape[0],
                                         f"{operands}, through the lanes", calibration)
    if accumulator:
        sums = tree_nl.simulate(products)["psum" if kind == "int" else "sum"]
        out["accumulator"] = accumulator_energy(circuits, sums, first, calibration=calibration, cache=cache,
                                                operands=f"{operands}, through the lanes and tree ({dots})")
    return out


SCALE_SPREAD = 8        # random MX block scales: E8M0 codes 127 +- 8 (2^-8 .. 2^8)


def random_scales(ports: list[str], n: int, seed: int) -> dict[str, np.ndarray]:
    """(n,) random E8M0 block scale codes per scale port, uniform over 127 +- ``SCALE_SPREAD`` (no NaN:
    a NaN group would idle the tree and accumulator)."""
    rng = np.random.default_rng([seed, 1])
    return {p: rng.integers(127 - SCALE_SPREAD, 127 + SCALE_SPREAD, size=n, endpoint=True) for p in ports}


def random_codes(cfg: object, lane: Netlist, ports: tuple[str, str], n: int, seed: int) -> tuple[np.ndarray, ...]:
    """(n, G) uniform random codes of the lane's two ports: integers over the port's range; for a
    float config the finite codes of each format, so that a group rarely holds a NaN or inf (with
    every code, 2 in 3 groups of 16 FP13 products would, and the tree and accumulator would idle);
    MX operands: finite element codes."""
    rng = np.random.default_rng(seed)
    if cfg.datapath == "int":
        g = cfg.int_datapath.group_size
        return tuple(rng.integers(lane.inputs[p].lo, lane.inputs[p].hi, size=(n, g), endpoint=True) for p in ports)
    fp = cfg.float_datapath
    out = []
    for fmt in formats(fp):
        magnitude = rng.integers(0, fmt.max_code, size=(n, fp.group_size), endpoint=True)
        out.append(magnitude | (rng.integers(0, 2, size=(n, fp.group_size)) << (fmt.bits - 1)))
    return tuple(out)


def accumulator_energy(circuits: object, sums: np.ndarray, first: np.ndarray, *, calibration: Calibration,
                       operands: str, cache: Path | str | bool | None = None) -> EnergyEstimate:
    """Energy per group sum added of the registered accumulator of ``circuits`` fed ``sums`` (the
    tree's outputs, one per clock) with ``first`` starting each dot product: whole dot products are
    dealt to ``SEQUENCE_LANES`` accumulators simulated side by side (each takes its dot products back
    to back; idle cycles at the end hold their inputs, so after the last add's register settles they
    toggle nothing). Gate-output and flip-flop-output toggles count alike; per add = all toggles / adds
    (each lane's first add has no predecessor to toggle from: a slight underestimate, at most the
    lanes used / adds)."""
    unit = synth_element(circuits, "accumulator_unit", cache=cache)
    netlist = unit.netlist()
    data = "psum" if "psum" in netlist.inputs else "sum"
    port = netlist.inputs[data]
    sums = np.asarray(sums, dtype=np.int64)
    if not port.signed:
        sums = sums & ((1 << len(port.rows)) - 1)
    index, _ = dot_lanes(first, SEQUENCE_LANES)
    valid = index >= 0
    held = np.maximum.accumulate(np.where(valid, index, 0), axis=0)     # idle cycles repeat the last group
    inputs = {data: sums[held], "first": first[held].astype(np.int64), "en": valid.astype(np.int64)}
    inputs.update({k: np.zeros_like(held) for k in netlist.inputs if k not in inputs and k != netlist.clock()})
    run = netlist.run(inputs)
    per_add = run.toggles / len(sums)
    return EnergyEstimate(unit.name, per_add, per_add * calibration.pj_per_toggle, len(sums), operands, calibration,
                          flop_toggles_per_op=float(run.flop_toggles.sum()) / len(sums))


def dot_lanes(first: np.ndarray, lanes: int) -> tuple[np.ndarray, int]:
    """Row indices (cycles, lanes) dealing the dot products that ``first`` delimits to at most
    ``lanes`` sequences, each dot product whole and in order, to the least loaded lane; -1 pads. Also
    the number of lanes used."""
    starts = np.flatnonzero(first)
    if len(starts) == 0 or starts[0] != 0:
        starts = np.concatenate([[0], starts])
    ends = np.append(starts[1:], len(first))
    load = [0] * min(lanes, len(starts))
    rows: list[list[int]] = [[] for _ in load]
    for s, e in zip(starts, ends):
        k = min(range(len(load)), key=load.__getitem__)
        rows[k].extend(range(s, e))
        load[k] += e - s
    index = np.full((max(load), len(load)), -1, dtype=np.int64)
    for k, r in enumerate(rows):
        index[:len(r), k] = r
    return index, len(load)
