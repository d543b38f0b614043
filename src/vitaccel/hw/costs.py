"""What one MAC of a config costs in its synthesized circuits, for the cost model and the report
(DESIGN.md sections 11-12).

A config is costed as its lane (one multiply), its adder tree (one group of G products) and its
registered accumulator (one group sum added): ``mac_energies`` gives their energies from
``group_energies``; ``unit_rows`` gives cells, transistors, depth and energy per op of each unit.
Exact float trees are synthesized block by block (``synthesize(hierarchical=True)``; flat, an FP13
dot unit took 16 minutes of Yosys). SRAM traffic stays table-based (no memory compiler here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaccel.hw.energy import Calibration, calibrate, group_energies

TABLE_BASED = "SRAM traffic (operands and partial sums): energy table (no memory compiler)"


@dataclass(frozen=True)
class MacEnergies:
    """Synthesized energy of a config's lane (per multiply) and adder tree (per group of G)."""

    config: str
    group_size: int
    multiply_pj: float
    tree_pj_per_group: float | None      # None: the tree was not synthesized (its energy stays table-based)
    operands: str
    yosys_version: str
    calibration: Calibration
    accumulate_pj: float | None = None   # per group sum added; None: not measured (table-based)

    @property
    def source(self) -> str:
        """How these figures were made, in one line."""
        return (f"synthesized ({self.yosys_version}; gate toggles on {self.operands}; "
                f"{self.calibration.pj_per_toggle:.3g} pJ/toggle pinned to {self.calibration.reference_unit} = "
                f"table int8_mult)")


def mac_energies(config: object, a: np.ndarray | None = None, b: np.ndarray | None = None,
                 first: np.ndarray | None = None, *, calibration: Calibration | None = None, n: int = 4096,
                 seed: int = 0, label: str | None = None, tree: bool = True, accumulator: bool = True,
                 scales: dict[str, np.ndarray] | None = None, cache: Path | str | bool | None = None) -> MacEnergies:
    """``group_energies`` of ``config`` on codes ``a``, ``b`` (n, G) with dot products starting at
    ``first`` (or uniform random ones), as the per-MAC figures the cost model takes; ``label`` says
    what the given codes are; ``tree`` and ``accumulator`` False leave those parts unmeasured
    (table-based in the cost model); ``scales``: MX block scale codes per group (random when None)."""
    from vitaccel.hw import build

    cfg = build(config).config
    cal = calibration or calibrate(cache=cache)
    e = group_energies(cfg, a, b, first, calibration=cal, n=n, seed=seed, tree=tree, accumulator=accumulator,
                       scales=scales, cache=cache)
    return MacEnergies(cfg.name, group_size(cfg), e["lane"].energy_pj, e["tree"].energy_pj if tree else None,
                       label or e["lane"].operands, cal.yosys_version, cal,
                       e["accumulator"].energy_pj if accumulator else None)


def unit_rows(config: object, random: MacEnergies, model: MacEnergies | None = None, *,
              cache: Path | str | bool | None = None) -> list[dict]:
    """Lane, tree and accumulator (those ``random`` measured) of ``config``: cells, transistors,
    depth, flow (synthesis, cached) and the energy per op of ``random`` and ``model``
    (``mac_energies`` on uniform random and on a model's operands)."""
    from vitaccel.hw import build
    from vitaccel.hw.synth import synth_element

    circuits = build(config)
    cfg = circuits.config
    kind = "int" if cfg.datapath == "int" else "float"
    parts = [(f"{kind}_lane", "multiply", lambda e: e.multiply_pj)]
    if random.tree_pj_per_group is not None:
        parts.append((f"{kind}_tree", f"group of {group_size(cfg)}", lambda e: e.tree_pj_per_group))
    if random.accumulate_pj is not None:
        parts.append(("accumulator_unit", "group sum added", lambda e: e.accumulate_pj))
    rows = []
    for element, per, pick in parts:
        unit = synth_element(circuits, element, cache=cache)
        rows.append({"config": cfg.name, "element": element, "per": per, "cells": unit.n_cells,
                     "transistors": unit.transistors, "transistors_complete": unit.transistors_complete,
                     "depth": unit.depth, "flow": unit.flow, "energy_random_pj": pick(random),
                     "energy_model_pj": pick(model) if model else None, "yosys": unit.yosys_version,
                     "synth_s": unit.seconds, "cached": unit.cached})
    return rows


def group_size(cfg: object) -> int:
    """G, the lanes of a config's adder tree."""
    return (cfg.int_datapath if cfg.datapath == "int" else cfg.float_datapath).group_size


__all__ = ["TABLE_BASED", "MacEnergies", "group_size", "mac_energies", "unit_rows"]
