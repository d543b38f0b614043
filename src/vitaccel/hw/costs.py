"""What one MAC of a config costs in its synthesized circuits, for the cost model and the report
(DESIGN.md sections 11-12).

A config is costed as its lane (one multiply) and its adder tree (one group of G products):
``mac_energies`` gives the lane's energy per multiply and the tree's energy per group from
``group_energies``; ``unit_rows`` gives cells, transistors, depth and energy per op of each unit.
Float dot units are costed as lane + tree, never flattened as one (an FP13 dot unit takes about
16 minutes of Yosys). The accumulator and SRAM traffic stay table-based (no memory compiler here).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vitaccel.hw.energy import Calibration, calibrate, group_energies
from vitaccel.hw.synth import synthesize, unit_name

TABLE_BASED = "Accumulator and SRAM traffic: energy table (no synthesized accumulator energy, no memory compiler)"


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

    @property
    def source(self) -> str:
        """How these figures were made, in one line."""
        return (f"synthesized ({self.yosys_version}; gate toggles on {self.operands}; "
                f"{self.calibration.pj_per_toggle:.3g} pJ/toggle pinned to {self.calibration.reference_unit} = "
                f"table int8_mult)")


def mac_energies(config: object, a: np.ndarray | None = None, b: np.ndarray | None = None, *,
                 calibration: Calibration | None = None, n: int = 4096, seed: int = 0, label: str | None = None,
                 tree: bool = True, cache: Path | str | bool | None = None) -> MacEnergies:
    """``group_energies`` of ``config`` on codes ``a``, ``b`` (n, G) or uniform random ones, as the
    per-MAC figures the cost model takes; ``label`` says what the given codes are; without
    ``tree`` only the lane is synthesized and measured."""
    from vitaccel.hw import build

    cfg = build(config).config
    cal = calibration or calibrate(cache=cache)
    e = group_energies(cfg, a, b, calibration=cal, n=n, seed=seed, tree=tree, cache=cache)
    return MacEnergies(cfg.name, group_size(cfg), e["lane"].energy_pj, e["tree"].energy_pj if tree else None,
                       label or e["lane"].operands,
                       cal.yosys_version, cal)


def unit_rows(config: object, random: MacEnergies, model: MacEnergies | None = None, *,
              cache: Path | str | bool | None = None) -> list[dict]:
    """Lane and tree (when ``random`` measured it) of ``config``: cells, transistors, depth
    (synthesis, cached) and the energy per op of ``random`` and ``model`` (``mac_energies`` on
    uniform random and on a model's operands)."""
    from vitaccel.hw import build

    circuits = build(config)
    cfg = circuits.config
    kind = "int" if cfg.datapath == "int" else "float"
    rows = []
    parts = [("lane", "multiply")] + ([("tree", f"group of {group_size(cfg)}")]
                                      if random.tree_pj_per_group is not None else [])
    for part, per in parts:
        element = f"{kind}_{part}"
        unit = synthesize(circuits.makers[element](), unit_name(cfg.name, element), cache=cache)
        pick = (lambda e: e.multiply_pj) if part == "lane" else (lambda e: e.tree_pj_per_group)
        rows.append({"config": cfg.name, "element": element, "per": per, "cells": unit.n_cells,
                     "transistors": unit.transistors, "depth": unit.depth, "energy_random_pj": pick(random),
                     "energy_model_pj": pick(model) if model else None, "yosys": unit.yosys_version,
                     "synth_s": unit.seconds, "cached": unit.cached})
    return rows


def group_size(cfg: object) -> int:
    """G, the lanes of a config's adder tree."""
    return (cfg.int_datapath if cfg.datapath == "int" else cfg.float_datapath).group_size


__all__ = ["TABLE_BASED", "MacEnergies", "group_size", "mac_energies", "unit_rows"]
