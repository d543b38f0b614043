"""The per-operation energy table (pJ) every cost estimate is scaled by: the shipped 45 nm figures
(Horowitz, ISSCC 2014, ``configs/energy/horowitz45nm.yaml``) or a user's YAML in the same schema.

Its own module so that ``vitaccel.hw`` can pin its switching energy to the table's ``int8_mult``
without importing the cost model that reads ``hw`` (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vitaccel.configtools import ConfigError, field, from_dict, load_yaml, shipped


def _positive(v: float) -> str | None:
    return None if v > 0 else "a positive number (picojoules) is required"


@dataclass(frozen=True)
class EnergyTable:
    """Energy per operation in pJ (validated; load with ``EnergyTable.load``)."""

    source: str = field("", help="where the figures come from")
    int8_add: float = field(0.03, check=_positive)
    int32_add: float = field(0.1, check=_positive)
    int8_mult: float = field(0.2, check=_positive)
    int32_mult: float = field(3.1, check=_positive)
    fp16_add: float = field(0.4, check=_positive)
    fp16_mult: float = field(1.1, check=_positive)
    fp32_add: float = field(0.9, check=_positive)
    fp32_mult: float = field(3.7, check=_positive)
    sram_64bit_read: float = field(20.0, check=_positive)

    @classmethod
    def load(cls, path: str | Path | None = None) -> "EnergyTable":
        """The table in ``path`` (YAML), or the shipped 45 nm table."""
        path = Path(path) if path is not None else shipped("energy", "horowitz45nm")
        data = load_yaml(path)  # its errors name the file
        try:
            return from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
