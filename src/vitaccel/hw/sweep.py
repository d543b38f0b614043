"""Design-space sweep of the integer multiplier: error statistics against synthesized transistors
and switching energy, for every ``keep_bits`` and ``keep_rounding`` of the int8 lane, the exact
multiplier and DRUM's arrangement built by the same flow (DESIGN.md section 12).

The lane comes from ``lane_factory(keep_bits, rounding)``; ``reference_lane`` (here) builds the
section-4 lane from ``LeadingOneMultiplier`` until a caller passes ``vitaccel.hw``'s own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

from amaranth import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import AcceleratorConfig, IntDatapath
from vitaccel.arith.intpath import ROUNDINGS
from vitaccel.arith.stats import error_stats
from vitaccel.errors import HardwareError
from vitaccel.hw.energy import DEFAULT_OPS, Calibration, ExactMultiplier, calibrate, energy_per_op
from vitaccel.hw.synth import synthesize

LaneFactory = Callable[[int, str], wiring.Component]
KINDS = ("exact", "lane", "drum")


def leading_one(m: Module, mag: Value, keep_bits: int, rounding: str) -> tuple[Signal, Signal]:
    """(t, s) of leading-one truncation of the unsigned ``mag`` (DESIGN.md section 4): the
    detector (priority encoder), the right shifter and the rounding; ``mag ~ t << s``."""
    width = len(mag)
    if keep_bits >= width:                         # nothing to drop
        return mag, Signal(1)
    p = Signal(range(width), name="lead")          # position of the leading one (0 for mag = 0)
    for i in range(width):
        with m.If(mag[i]):
            m.d.comb += p.eq(i)
    s0 = Signal(range(width - keep_bits + 1), name="s0")
    m.d.comb += s0.eq(Mux(p >= keep_bits, p - (keep_bits - 1), 0))
    t = Signal(keep_bits, name="t")
    s = Signal(range(width - keep_bits + 2), name="s")
    if rounding == "truncate":
        m.d.comb += [t.eq(mag >> s0), s.eq(s0)]
    elif rounding == "unbiased":
        m.d.comb += [t.eq((mag >> s0) | (s0 != 0)), s.eq(s0)]
    else:                                          # nearest: half up, a carry renormalises
        rounded = Signal(keep_bits + 1, name="rounded")
        m.d.comb += rounded.eq((mag + ((1 << s0) >> 1)) >> s0)
        carry = rounded[keep_bits]
        m.d.comb += [t.eq(Mux(carry, 1 << (keep_bits - 1), rounded[:keep_bits])), s.eq(s0 + carry)]
    return t, s


class LeadingOneMultiplier(wiring.Component):
    """Sign-magnitude multiplier that keeps ``keep_bits`` from the leading one of a (and of b with
    ``truncate_b``, DRUM's arrangement): detector, truncation, small multiplier, shifter, sign."""

    def __init__(self, a_bits: int = 8, b_bits: int = 8, keep_bits: int = 4, rounding: str = "truncate",
                 truncate_b: bool = False) -> None:
        if rounding not in ROUNDINGS:
            raise HardwareError(f"rounding: value {rounding!r} is not allowed; choose one of {list(ROUNDINGS)}")
        if not isinstance(keep_bits, int) or not 1 <= keep_bits <= a_bits:
            raise HardwareError(f"keep_bits: value {keep_bits!r} is not allowed; an integer from 1 to {a_bits}")
        self.keep_bits, self.rounding, self.truncate_b = keep_bits, rounding, truncate_b
        # one spare bit: the forced-one LSB of -2^(bits-1) can exceed 2^(bits-1)
        super().__init__({"a": In(signed(a_bits)), "b": In(signed(b_bits)),
                          "p": Out(signed(a_bits + b_bits + 1))})

    def elaborate(self, platform) -> Module:
        m = Module()
        neg_a, mag_a = self._split(m, self.a, "a")
        ta, sa = leading_one(m, mag_a, self.keep_bits, self.rounding)
        if self.truncate_b:
            neg_b, mag_b = self._split(m, self.b, "b")
            tb, sb = leading_one(m, mag_b, self.keep_bits, self.rounding)
            mag = (ta * tb) << (sa + sb)
            m.d.comb += self.p.eq(Mux(neg_a ^ neg_b, -mag, mag))
        else:
            prod = (ta * self.b) << sa
            m.d.comb += self.p.eq(Mux(neg_a, -prod, prod))
        return m

    @staticmethod
    def _split(m: Module, x: Value, name: str) -> tuple[Value, Signal]:
        mag = Signal(unsigned(len(x)), name=f"mag_{name}")
        m.d.comb += mag.eq(Mux(x[-1], -x, x))
        return x[-1], mag


def reference_lane(keep_bits: int, rounding: str) -> wiring.Component:
    """The int8 lane of DESIGN.md section 4 (a truncated, b exact)."""
    return LeadingOneMultiplier(8, 8, keep_bits, rounding)


def drum(keep_bits: int) -> wiring.Component:
    """DRUM-style int8 multiplier: both operands keep ``keep_bits`` with the lowest forced to one."""
    return LeadingOneMultiplier(8, 8, keep_bits, "unbiased", truncate_b=True)


def sweep(lane_factory: LaneFactory = reference_lane, *, keep_bits: Iterable[int] = range(1, 9),
          roundings: Iterable[str] = ROUNDINGS, drum_keep_bits: Iterable[int] = (4,),
          calibration: Calibration | None = None, n: int = DEFAULT_OPS, seed: int = 0,
          cache: Path | str | bool | None = None) -> list[dict]:
    """One row per unit: exact 8x8, the lane at every (keep_bits, rounding), DRUM at each of
    ``drum_keep_bits``; cells, transistors, depth, energy per op on uniform random operands
    (``n`` ops) and the multiplier's relative error statistics (``error_stats``)."""
    cal = calibration or calibrate(n=n, seed=seed, cache=cache)
    units: list[tuple[str, str, int | None, str | None, wiring.Component]] = [
        ("mul8x8_exact", "exact", None, None, ExactMultiplier(8, 8))]
    units += [(f"lane_k{k}_{r}", "lane", k, r, lane_factory(k, r)) for k in keep_bits for r in roundings]
    units += [(f"drum_k{k}", "drum", k, "unbiased", drum(k)) for k in drum_keep_bits]
    rows = []
    for name, kind, k, rounding, component in units:
        unit = synthesize(component, name, cache=cache)
        energy = energy_per_op(unit, calibration=cal, n=n, seed=seed)
        dp = IntDatapath(keep_bits=k, keep_rounding=rounding or "truncate")
        err = error_stats(AcceleratorConfig(name=name, datapath="int", int_datapath=dp), both_operands=kind == "drum")
        rows.append({"unit": name, "kind": kind, "keep_bits": k, "rounding": rounding, "cells": unit.n_cells,
                     "transistors": unit.transistors, "depth": unit.depth, "toggles_per_op": energy.toggles_per_op,
                     "energy_pj": energy.energy_pj, "mean_rel_err": err.mean, "std_rel_err": err.std,
                     "max_rel_err": err.max, "rms_rel_err": math.hypot(err.mean, err.std),
                     "yosys": unit.yosys_version})
    return rows


def pareto_front(rows: list[dict], cost: str = "energy_pj", error: str = "rms_rel_err") -> list[dict]:
    """Rows no other row beats on both ``cost`` and ``|error|`` (lower is better), by cost."""
    for key in (cost, error):
        if rows and key not in rows[0]:
            raise HardwareError(f"pareto_front: key {key!r} is not a column; allowed: {sorted(rows[0])}")

    def beats(o: dict, r: dict) -> bool:
        return (o[cost] <= r[cost] and abs(o[error]) <= abs(r[error])
                and (o[cost] < r[cost] or abs(o[error]) < abs(r[error])))

    return sorted((r for r in rows if not any(beats(o, r) for o in rows)), key=lambda r: (r[cost], abs(r[error])))


def plot_pareto(rows: list[dict], path: Path | str, error: str = "rms_rel_err") -> Path:
    """Two panels (error against transistors and against energy per op), Pareto fronts drawn and
    labelled; the exact multiplier, which has no error, is the dashed line of its cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    colours = {"truncate": "tab:blue", "nearest": "tab:orange", "unbiased": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    for ax, cost, label in ((axes[0], "transistors", "transistors (stat -tech cmos)"),
                            (axes[1], "energy_pj", "energy per op, pJ (uniform random operands)")):
        approx = [r for r in rows if r["kind"] != "exact" and r[error] != 0]
        for rounding, colour in colours.items():
            pts = [r for r in approx if r["kind"] == "lane" and r["rounding"] == rounding]
            ax.scatter([r[cost] for r in pts], [abs(r[error]) for r in pts], c=colour, s=30,
                       label=f"lane, {rounding}")
        drums = [r for r in approx if r["kind"] == "drum"]
        ax.scatter([r[cost] for r in drums], [abs(r[error]) for r in drums], marker="*", s=160, c="tab:red",
                   label="DRUM-style (both operands)", zorder=3)
        front = pareto_front(approx, cost, error)
        ax.plot([r[cost] for r in front], [abs(r[error]) for r in front], c="grey", lw=1, zorder=1,
                label="Pareto front")
        for i, r in enumerate(front):
            tag = f"drum k{r['keep_bits']}" if r["kind"] == "drum" else f"k{r['keep_bits']} {r['rounding'][:4]}"
            ax.annotate(tag, (r[cost], abs(r[error])), textcoords="offset points", fontsize=8,
                        xytext=(6, 4) if i % 2 == 0 else (-6, -11), ha="left" if i % 2 == 0 else "right")
        for r in rows:
            if r["kind"] == "exact":
                ax.axvline(r[cost], ls="--", c="black", lw=1, label="exact 8x8 (no error)")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"multiplier {error.replace('_', ' ')}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("int8 multipliers: error against synthesized cost (Yosys generic gates)")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
