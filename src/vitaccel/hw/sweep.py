"""Design-space sweep of the integer multiplier: error statistics against synthesized transistors
and switching energy, for every ``keep_bits`` and ``keep_rounding`` of the int8 lane, the exact
multiplier and DRUM's arrangement built by the same flow (DESIGN.md section 12).

The lane comes from ``lane_factory(keep_bits, rounding)``, by default ``vitaccel.hw``'s
``IntLane``; ``DrumMultiplier`` (here) is the reference arrangement that truncates both operands.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path

from amaranth import Module, Mux, Signal, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from vitaccel.arith.config import AcceleratorConfig, IntDatapath
from vitaccel.arith.intpath import ROUNDINGS
from vitaccel.arith.stats import error_stats
from vitaccel.errors import HardwareError
from vitaccel.hw.common import absolute, leading_one
from vitaccel.hw.energy import DEFAULT_OPS, Calibration, ExactMultiplier, calibrate, energy_per_op
from vitaccel.hw.int_lane import IntLane
from vitaccel.hw.synth import synthesize

LaneFactory = Callable[[int, str], wiring.Component]


class DrumMultiplier(wiring.Component):
    """DRUM-style signed multiplier (Hashemi et al., ICCAD 2015): each operand's magnitude keeps
    ``keep_bits`` from its leading one with the lowest forced to one (exact below 2^keep_bits),
    a keep_bits x keep_bits multiplier, a shifter by the sum of both shifts, the sign applied."""

    def __init__(self, bits: int = 8, keep_bits: int = 4) -> None:
        self.bits, self.keep_bits = bits, keep_bits
        # |truncated x| < 2^bits, so the product needs 2 * bits magnitude bits and a sign
        super().__init__({"a": In(signed(bits)), "b": In(signed(bits)), "p": Out(signed(2 * bits + 1))})

    def elaborate(self, platform) -> Module:
        m = Module()
        ta, sa = self._truncate(m, self.a, "a")
        tb, sb = self._truncate(m, self.b, "b")
        mag = Signal(2 * self.bits, name="mag_p")
        m.d.comb += mag.eq((ta * tb) << (sa + sb))
        m.d.comb += self.p.eq(Mux((self.a < 0) ^ (self.b < 0), -mag, mag))
        return m

    def _truncate(self, m: Module, x: Value, name: str) -> tuple[Signal, Signal]:
        """(t, s) with ``|x| ~ t << s``: detector, right shifter, forced-one LSB."""
        k, n = self.keep_bits, self.bits
        mag = Signal(n, name=f"mag_{name}")
        m.d.comb += mag.eq(absolute(x))
        pos = leading_one(m, mag, f"lead_{name}")
        s = Signal(range(n - k + 1), name=f"s_{name}")
        m.d.comb += s.eq(Mux(pos >= k, pos - (k - 1), 0))
        t = Signal(k, name=f"t_{name}")
        m.d.comb += t.eq((mag >> s) | (s != 0))
        return t, s


def drum(keep_bits: int, bits: int = 8) -> DrumMultiplier:
    """A checked ``DrumMultiplier`` (HardwareError unless 1 <= keep_bits <= bits)."""
    if not isinstance(keep_bits, int) or isinstance(keep_bits, bool) or not 1 <= keep_bits <= bits:
        raise HardwareError(f"keep_bits: value {keep_bits!r} is not allowed; an integer from 1 to {bits}")
    return DrumMultiplier(bits, keep_bits)


def hw_lane(keep_bits: int, rounding: str) -> wiring.Component:
    """``vitaccel.hw``'s int8 lane (a truncated, w exact) at one keep_bits and rounding."""
    return IntLane(IntDatapath(keep_bits=keep_bits, keep_rounding=rounding))


def sweep(lane_factory: LaneFactory = hw_lane, *, keep_bits: Iterable[int] = range(1, 9),
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
    labelled; the exact multiplier, which has no error, is the dashed line of its cost (log error
    axis: rows without error are not points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    colours = {"truncate": "tab:blue", "nearest": "tab:orange", "unbiased": "tab:green"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.86, wspace=0.18)   # fixed: labels are placed
    approx = [r for r in rows if r["kind"] != "exact" and r[error] != 0]
    for ax, cost, label in ((axes[0], "transistors", "transistors (stat -tech cmos)"),
                            (axes[1], "energy_pj", "energy per op, pJ (uniform random operands)")):
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
        for r in rows:
            if r["kind"] == "exact":
                ax.axvline(r[cost], ls="--", c="black", lw=1, label="exact 8x8 (no error)")
        ax.set_yscale("log")
        ax.margins(x=0.1, y=0.1)
        ax.set_xlabel(label)
        ax.set_ylabel(f"multiplier {error.replace('_', ' ')}")
        ax.grid(True, which="both", alpha=0.3)
        tags: dict[tuple[float, float], list[str]] = {}      # units at one point share a label
        for r in front:
            tag = f"drum k{r['keep_bits']}" if r["kind"] == "drum" else f"k{r['keep_bits']} {r['rounding'][:4]}"
            tags.setdefault((r[cost], abs(r[error])), []).append(tag)
        _place_labels(ax, {xy: " = ".join(names) for xy, names in tags.items()},
                      [(r[cost], abs(r[error])) for r in approx])
    axes[0].legend(fontsize=8, loc="upper right")
    fig.suptitle("int8 multipliers: error against synthesized cost (Yosys generic gates)\n"
                 "units without error (exact, lanes that keep every bit) are not points on the log axis", fontsize=11)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


_OFFSETS = ((5, 4, "left", "bottom"), (-5, -4, "right", "top"), (5, -4, "left", "top"), (-5, 4, "right", "bottom"),
            (0, 9, "center", "bottom"), (0, -9, "center", "top"), (9, 0, "left", "center"),
            (-9, 0, "right", "center"), (12, 12, "left", "bottom"), (-12, -12, "right", "top"))


def _place_labels(ax, labels: dict[tuple[float, float], str], points: list[tuple[float, float]]) -> None:
    """Annotate each point with its label at the first offset whose text box overlaps no placed
    label, no other point and no legend, and lies nearer its own point than any other (first
    offset when none qualifies)."""
    renderer = ax.figure.canvas.get_renderer()
    taken = [ax.get_legend().get_window_extent(renderer)] if ax.get_legend() else []
    marks = [ax.transData.transform(p) for p in points]
    for xy, text in labels.items():
        own = ax.transData.transform(xy)
        chosen = None
        for dx, dy, ha, va in _OFFSETS:
            ann = ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), ha=ha, va=va, fontsize=8)
            box = ann.get_window_extent(renderer).expanded(1.05, 1.15)
            centre = ((box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2)
            others = [(x, y) for x, y in marks if abs(x - own[0]) + abs(y - own[1]) > 1e-6]
            hits_point = any(box.x0 - 6 < x < box.x1 + 6 and box.y0 - 6 < y < box.y1 + 6 for x, y in others)
            # unambiguous: the label's centre is nearer its own point than any other point
            nearer = all(_dist(centre, own) < _dist(centre, o) for o in others)
            if nearer and not hits_point and not any(box.overlaps(t) for t in taken):
                chosen = box
                break
            ann.remove()
        if chosen is None:
            dx, dy, ha, va = _OFFSETS[0]
            chosen = ax.annotate(text, xy, textcoords="offset points", xytext=(dx, dy), ha=ha, va=va,
                                 fontsize=8).get_window_extent(renderer)
        taken.append(chosen)


def _dist(p: tuple[float, float], q: tuple[float, float]) -> float:
    return math.hypot(p[0] - q[0], p[1] - q[1])
