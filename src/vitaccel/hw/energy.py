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
from vitaccel.hw.netlist import Netlist
from vitaccel.hw.synth import SynthResult, synthesize, unit_name

REFERENCE_UNIT = "mul8x8_exact"
DEFAULT_OPS = 1 << 16
ASSUMPTIONS = (
    "switching: zero-delay gate-level simulation of the generic-gate netlist (settled values per "
    "operation; glitches are not counted)",
    "every gate-output toggle costs the same energy (no fanout, wire or gate-type weighting); the "
    "unit's input ports are driven from outside and their toggles are not counted",
    "consecutive operations of the stream run back to back on the same unit",
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

    def row(self) -> dict:
        return {"unit": self.unit, "toggles_per_op": self.toggles_per_op, "energy_pj": self.energy_pj,
                "n_ops": self.n_ops, "operands": self.operands,
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


def group_energies(config: object, a: np.ndarray | None = None, b: np.ndarray | None = None, *,
                   calibration: Calibration, n: int = 4096, seed: int = 0, tree: bool = True,
                   cache: Path | str | bool | None = None) -> dict[str, EnergyEstimate]:
    """Energy of a config's lane (per multiply) and, with ``tree``, adder tree (per group of G
    products) on operand codes ``a``, ``b`` of shape (n, G): row t is the group the unit takes at
    step t, column i feeds lane i (integer codes, or float bit patterns); uniform random over the
    lane's port ranges when None. The tree is driven by the lanes' own simulated products."""
    from vitaccel.hw.circuits import build

    circuits = build(config)
    cfg = circuits.config
    kind = "int" if cfg.datapath == "int" else "float"
    g = (cfg.int_datapath if kind == "int" else cfg.float_datapath).group_size
    lane = synthesize(circuits.makers[f"{kind}_lane"](), unit_name(cfg.name, f"{kind}_lane"), cache=cache)
    lane_nl = lane.netlist()
    first, second = "a", next(p for p in lane_nl.inputs if p != "a")
    operands = "given operands"
    if a is None or b is None:
        rng = np.random.default_rng(seed)
        pa, pb = lane_nl.inputs[first], lane_nl.inputs[second]
        a = rng.integers(pa.lo, pa.hi, size=(n, g), endpoint=True)
        b = rng.integers(pb.lo, pb.hi, size=(n, g), endpoint=True)
        operands = f"uniform random over each lane port's range (seed {seed})"
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or a.shape != b.shape or a.shape[1] != g or a.shape[0] < 2:
        raise HardwareError(f"operands: shapes {a.shape} and {b.shape} are not allowed; both (n, {g}) with n >= 2 "
                            f"(G = group_size of {cfg.name!r})")
    lane_toggles, products = 0, {}
    for i in range(g):
        stream = {first: a[:, i], second: b[:, i]}
        lane_toggles += int(lane_nl.toggle_counts(stream).sum())
        if tree:
            products[f"p__{i}"] = lane_nl.simulate(stream)["p"]
    per_lane = lane_toggles / (g * (a.shape[0] - 1))
    out = {"lane": EnergyEstimate(lane.name, per_lane, per_lane * calibration.pj_per_toggle, g * a.shape[0],
                                  operands, calibration)}
    if tree:
        unit = synthesize(circuits.makers[f"{kind}_tree"](), unit_name(cfg.name, f"{kind}_tree"), cache=cache)
        per_tree = toggles_per_op(unit.netlist(), products)
        out["tree"] = EnergyEstimate(unit.name, per_tree, per_tree * calibration.pj_per_toggle, a.shape[0],
                                     f"{operands}, through the lanes", calibration)
    return out
