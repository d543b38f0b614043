"""``AcceleratorConfig``: one validated description of an accelerator datapath, plus named presets.

Presets live as YAML files in ``configs/accelerators/`` (shipped inside the package); users
write their own files in the same schema and load them with ``AcceleratorConfig.from_yaml``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from vitaccel.arith.formats import NAMED
from vitaccel.configtools import ConfigError, field, from_dict, load_yaml, to_yaml, validate

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs" / "accelerators"

_FORMATS = tuple(sorted(NAMED))


def _power_of_two(v: int) -> str | None:
    return None if v >= 1 and v & (v - 1) == 0 else "a power of two >= 1 is required"


def _align_bits(v: int) -> str | None:
    return None if 0 <= v <= 48 else "an integer from 0 to 48 (or null for exact products)"


@dataclass(frozen=True)
class FloatDatapath:
    """Float operands, exact multiplier, aligned adder tree of width G, float32 accumulator."""

    a_format: str = field("e5m7", choices=_FORMATS, help="format of the first operand (activations)")
    b_format: str = field("e5m7", choices=_FORMATS, help="format of the second operand (weights)")
    operand_rounding: str = field("nearest_even", choices=("nearest_even", "toward_zero"),
                                  help="rounding of float32 operands to their formats")
    group_size: int = field(16, check=_power_of_two, help="adder-tree width G = 2^n")
    align_bits: int | None = field(None, check=_align_bits,
                                   help="fraction bits kept below the group's largest exponent; null = exact")
    align_rounding: str = field("toward_zero", choices=("toward_zero", "nearest_even"),
                                help="how aligned products drop their low bits")
    accumulator: str = field("fp32", choices=("fp32",), help="accumulator format (K order)")

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class AcceleratorConfig:
    """An accelerator datapath: ``native`` (host float32), ``float`` or ``int``."""

    name: str = field("custom", help="a label for reports")
    datapath: str = field("native", choices=("native", "float"), help="which datapath runs matmuls")
    float_datapath: FloatDatapath | None = field(None, help="settings of the float datapath")
    description: str = field("", help="free text shown in reports")

    def __post_init__(self) -> None:
        validate(self)
        if self.datapath == "float" and self.float_datapath is None:
            object.__setattr__(self, "float_datapath", FloatDatapath())
        if self.datapath != "float" and self.float_datapath is not None:
            raise ConfigError(f"float_datapath: is only allowed with datapath: float (datapath is {self.datapath!r})")

    # -- loading and saving -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> "AcceleratorConfig":
        return from_dict(cls, data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "AcceleratorConfig":
        data = load_yaml(path)
        try:
            return from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def to_yaml(self) -> str:
        return to_yaml(self)

    @classmethod
    def presets(cls) -> list[str]:
        """Names of the shipped presets."""
        return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))

    @classmethod
    def preset(cls, name: str) -> "AcceleratorConfig":
        """A shipped preset by name (see ``presets()``)."""
        path = PRESET_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"accelerator preset {name!r} is unknown; choose one of {cls.presets()} "
                              "or pass a YAML file")
        return cls.from_yaml(path)

    @classmethod
    def load(cls, spec: "str | Path | AcceleratorConfig") -> "AcceleratorConfig":
        """A config from a preset name, a YAML path, or a config (returned as is)."""
        if isinstance(spec, AcceleratorConfig):
            return spec
        spec = str(spec)
        if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
            return cls.from_yaml(spec)
        return cls.preset(spec)

    def replace(self, **changes) -> "AcceleratorConfig":
        """A copy with some top-level fields changed (validated)."""
        return dataclasses.replace(self, **changes)
