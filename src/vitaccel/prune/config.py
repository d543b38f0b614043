"""Pruning settings: where to prune, which selection rule and parameter, packaging, dense fallback.

A validated dataclass (``vitaccel.configtools``), so training recipes can read it from YAML with
``from_dict(PruneConfig, data)``; ``patch`` and ``model.pruning.configure`` build and replace it,
which re-runs every check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vitaccel.configtools import ConfigError, field, validate

RULES = ("topk", "value", "mass")


def _check_layer(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "the pruning layer P is 1-based: use an integer >= 1"
    return None


def _check_bool(value: object) -> str | None:
    return None if isinstance(value, bool) else "use True or False"


def value_problem(rule: str, value: object) -> str | None:
    """What is wrong with ``value`` as the parameter of ``rule`` (None when it is fine)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "a finite number is required"
    if rule in ("topk", "mass") and not 0 < value <= 1:
        return f"rule {rule!r} needs 0 < value <= 1"
    if rule == "value" and value < 0:
        return "rule 'value' needs value >= 0 (tokens with TIS >= value / N are kept)"
    return None


@dataclass(frozen=True)
class PruneConfig:
    """Token pruning at layer P of a ViT (DESIGN.md section 9)."""

    layer: int = field(4, check=_check_layer,
                       help="pruning layer P (1-based): TIS from block P, blocks P+1..L see kept tokens")
    rule: str = field("mass", choices=RULES,
                      help="topk: keep ceil(value*N); value: TIS >= value/N; mass: fewest reaching value")
    value: float = field(0.9, help="the rule's parameter")
    package: bool = field(True, check=_check_bool,
                          help="fuse pruned tokens into one TIS-weighted package token")
    dense: bool = field(False, check=_check_bool, help="skip sparsification (TIS is still computed)")

    def __post_init__(self) -> None:
        validate(self)
        problem = value_problem(self.rule, self.value)
        if problem:
            raise ConfigError(f"value: value {self.value!r} is not allowed; {problem}")
