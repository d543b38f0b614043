"""Pruning settings: where to prune (stages, placement), which rule and parameter, packaging, dense.

A validated dataclass (``vitaccel.configtools``), so training recipes can read it from YAML with
``from_dict(PruneConfig, data)``; ``patch`` and ``model.pruning.configure`` build and replace it,
which re-runs every check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vitaccel.configtools import ConfigError, field, validate

RULES = ("topk", "value", "mass")
PLACEMENTS = ("block", "attention")


def _check_layer(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return "the pruning layer P is 1-based: use an integer >= 1"
    return None


def _check_layers(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value or any(_check_layer(v) for v in value):
        return "give a non-empty list of 1-based pruning layers, e.g. [4, 7, 10]"
    if any(b <= a for a, b in zip(value, value[1:])):
        return "the pruning layers must be strictly increasing, e.g. [4, 7, 10]"
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
    """Token pruning at one or several layers of a ViT (DESIGN.md section 9).

    ``layers`` (several stages) replaces ``layer`` when given (``layer`` becomes its first entry);
    ``value`` is one number for every stage or a list with one per stage.
    """

    layer: int = field(4, check=_check_layer,
                       help="pruning layer P (1-based): TIS from block P, blocks P+1..L see kept tokens")
    layers: list[int] | None = field(None, check=_check_layers,
                                     help="several pruning stages, strictly increasing (replaces layer)")
    rule: str = field("mass", choices=RULES,
                      help="topk: keep ceil(value*N); value: TIS >= value/N; mass: fewest reaching value")
    value: float | list[float] = field(0.9, help="the rule's parameter: one, or one per stage")
    placement: str = field("block", choices=PLACEMENTS,
                           help="block: prune after block P; attention: inside block P, before its MLP")
    package: bool = field(True, check=_check_bool,
                          help="fuse pruned tokens into one TIS-weighted package token")
    dense: bool = field(False, check=_check_bool, help="skip sparsification (TIS is still computed)")

    def __post_init__(self) -> None:
        if isinstance(self.layers, tuple):
            object.__setattr__(self, "layers", list(self.layers))
        if isinstance(self.value, tuple):
            object.__setattr__(self, "value", list(self.value))
        validate(self)
        if self.layers is not None:
            object.__setattr__(self, "layer", self.layers[0])
        values = self.value if isinstance(self.value, list) else [self.value]
        if isinstance(self.value, list) and len(values) != len(self.stages):
            raise ConfigError(f"value: value {self.value!r} is not allowed; give one number for every "
                              f"stage or a list of {len(self.stages)} (one per layer of {list(self.stages)})")
        for v in values:
            problem = value_problem(self.rule, v)
            if problem:
                raise ConfigError(f"value: value {v!r} is not allowed; {problem}")

    @property
    def stages(self) -> tuple[int, ...]:
        """The 1-based pruning layers, in order."""
        return tuple(self.layers) if self.layers is not None else (self.layer,)

    @property
    def values(self) -> tuple[float, ...]:
        """The rule's parameter at each stage."""
        if isinstance(self.value, list):
            return tuple(self.value)
        return (self.value,) * len(self.stages)
