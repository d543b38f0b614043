"""``AcceleratorConfig``: one validated description of an accelerator datapath, plus named presets.

Every config section lives here: ``CodecSpec`` (a codec as written in a config), ``FloatDatapath``,
``PsumStorage``, ``IntDatapath`` and ``AcceleratorConfig`` itself.

Presets live as YAML files in ``configs/accelerators/`` (shipped inside the package); users
write their own files in the same schema and load them with ``AcceleratorConfig.from_yaml``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vitaccel.arith.formats import NAMED, FloatFormat
from vitaccel.arith.intpath import OVERFLOWS, ROUNDINGS
from vitaccel.arith.mx import MX_NAMES, MX_ROUNDINGS
from vitaccel.arith.psum import FLOAT_ROUNDINGS, TRUNC_ROUNDINGS, Codec, FloatCodec, TruncCodec
from vitaccel.configtools import ConfigError, field, from_dict, load_yaml, shipped, shipped_names, to_yaml, validate

# Operand formats: the signed named formats with at most 10 mantissa bits (of at most 16 bits, and tf32):
# the multiplier's exact products fit float64 with room for the exact tiers' group sums; then the
# OCP MX block formats (arith/mx.py).
OPERAND_FORMATS = tuple(sorted(n for n, f in NAMED.items() if f.signed and f.man_bits <= 10)) + MX_NAMES
OPERAND_ROUNDINGS = ("nearest_even", "ties_away", "toward_zero", "up", "down")


def is_accumulator(fmt: FloatFormat) -> bool:
    """Whether a float accumulator can be ``fmt``: signed, IEEE specials (a sum can overflow to
    infinity and carry NaN), subnormals, at least 16 bits and at most 21 mantissa bits or float32
    itself (the exact tiers round group sums through float32 rounded to odd, which is correct for
    targets of at most 22 significand bits)."""
    return (fmt.signed and fmt.specials == "ieee" and fmt.subnormals and not fmt.saturate and fmt.bits >= 16
            and (fmt.man_bits <= 21 or fmt == NAMED["fp32"]))


ACCUMULATORS = tuple(sorted(n for n, f in NAMED.items() if is_accumulator(f)))


def _accumulator(v: str) -> str | None:
    if v in ACCUMULATORS:
        return None
    if v in NAMED:
        f = NAMED[v]
        return (f"{v} ({f.bits} bits, specials {f.specials!r}) is too narrow or has no infinity: an accumulator "
                f"needs a signed IEEE-style format of at least 16 bits; choose one of {list(ACCUMULATORS)}")
    return f"choose one of {list(ACCUMULATORS)}"


def _operand_rounding(v: str) -> str | None:
    if v in OPERAND_ROUNDINGS:
        return None
    if v == "stochastic":
        return ("stochastic operand rounding is not offered by the float datapath (its draws would not be "
                f"reproducible through a config); choose one of {list(OPERAND_ROUNDINGS)}")
    return f"choose one of {list(OPERAND_ROUNDINGS)}"


ACTIVATION_SCALES = ("per_tensor", "per_token")


def _power_of_two(v: int) -> str | None:
    return None if v >= 1 and v & (v - 1) == 0 else "a power of two >= 1 is required"


def _align_bits(v: int) -> str | None:
    return None if 0 <= v <= 48 else "an integer from 0 to 48 (or null for exact products)"


def _between(lo: int, hi: int) -> Callable[[int], str | None]:
    def check(v: int) -> str | None:
        return None if lo <= v <= hi else f"an integer from {lo} to {hi} is required"
    return check


@dataclass(frozen=True)
class CodecSpec:
    """A codec as written in a config; ``build(value_bits)`` makes it for values of that width."""

    kind: str = field("float", choices=("float", "trunc"), help="float: sign+shift+mantissa; trunc: drop low bits")
    exp_bits: int | None = field(None, help="float: width of the shift field")
    man_bits: int | None = field(None, help="float: bits kept from the leading one (stored, not hidden)")
    bias: int = field(0, help="float: the shift-0 LSB weighs 2^-bias (0 for integer partial sums)")
    drop_bits: int | None = field(None, help="trunc: low bits dropped")
    rounding: str | None = field(None, choices=FLOAT_ROUNDINGS + TRUNC_ROUNDINGS,
                                 help="float: nearest_even|toward_zero (default nearest_even); "
                                      "trunc: nearest|truncate (default nearest)")

    def __post_init__(self) -> None:
        validate(self)

    def build(self, value_bits: int) -> Codec:
        """The codec for ``value_bits``-wide values; ValueError names the offending key."""
        own, other = (("exp_bits", "man_bits"), ("drop_bits",)) if self.kind == "float" else \
            (("drop_bits",), ("exp_bits", "man_bits"))
        for name in own:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: required for kind {self.kind!r}")
        for name in other:
            if getattr(self, name) is not None:
                raise ValueError(f"{name}: value {getattr(self, name)!r} is not allowed with kind {self.kind!r}; "
                                 f"kind {self.kind!r} takes {list(own)}")
        allowed = FLOAT_ROUNDINGS if self.kind == "float" else TRUNC_ROUNDINGS
        if self.rounding is not None and self.rounding not in allowed:
            raise ValueError(f"rounding: value {self.rounding!r} is not allowed with kind {self.kind!r}; "
                             f"choose one of {list(allowed)}")
        if self.kind == "float":
            return FloatCodec(self.exp_bits, self.man_bits, value_bits, self.bias, self.rounding or "nearest_even")
        if self.bias != 0:
            raise ValueError(f"bias: value {self.bias!r} is not allowed with kind 'trunc'; "
                             "only kind 'float' takes a bias")
        return TruncCodec(self.drop_bits, value_bits, self.rounding or "nearest")


@dataclass(frozen=True)
class FloatDatapath:
    """Float operands, exact multiplier, aligned adder tree of width G, float32 accumulator."""

    a_format: str = field("e5m7", choices=OPERAND_FORMATS, help="format of the first operand (activations)")
    b_format: str = field("e5m7", choices=OPERAND_FORMATS, help="format of the second operand (weights)")
    operand_rounding: str = field("nearest_even", check=_operand_rounding,
                                  help="rounding of float32 operands to their formats: "
                                       + " | ".join(OPERAND_ROUNDINGS))
    group_size: int = field(16, check=_power_of_two, help="adder-tree width G = 2^n")
    align_bits: int | None = field(None, check=_align_bits,
                                   help="fraction bits kept below the group's largest exponent; null = exact")
    align_rounding: str = field("toward_zero", choices=("toward_zero", "nearest_even"),
                                help="how aligned products drop their low bits")
    accumulator: str = field("fp32", check=_accumulator,
                             help="accumulator format: group sums and every accumulator add (K order) are rounded to "
                                  "it, nearest even, overflow to infinity: " + " | ".join(ACCUMULATORS))
    multiplier: str = field("direct", choices=("direct", "nibble"),
                            help="significand multiplier form of the circuit: one b x b array, or two 4-bit "
                                 "nibbles of the first operand, ((hi * b) << 4) + lo * b; the numbers are the same")
    mx_block: int = field(32, check=_between(1, 2 ** 20),
                          help="MX operand formats: elements per shared E8M0 scale, in blocks along K (the "
                               "reduction axis) from K index 0, the last block possibly partial")

    def __post_init__(self) -> None:
        validate(self)
        if self.mx_block != 32 and not ({self.a_format, self.b_format} & set(MX_NAMES)):
            raise ConfigError(f"float_datapath.mx_block: value {self.mx_block} is only used by MX operand formats "
                              f"{list(MX_NAMES)}; a_format is {self.a_format!r} and b_format {self.b_format!r} "
                              "(leave mx_block at 32 or choose an MX format)")
        if {self.a_format, self.b_format} & set(MX_NAMES) and self.operand_rounding not in MX_ROUNDINGS:
            raise ConfigError(f"float_datapath.operand_rounding: value {self.operand_rounding!r} is not allowed with "
                              f"MX operand formats (a_format {self.a_format!r}, b_format {self.b_format!r}); choose "
                              f"one of {list(MX_ROUNDINGS)}")
        if self.align_bits is not None and self.align_bits + self.group_size.bit_length() - 1 > 62:
            raise ConfigError(f"float_datapath.align_bits: value {self.align_bits} is not allowed with group_size "
                              f"{self.group_size}; align_bits + log2(group_size) must be at most 62 (the aligned "
                              "adder tree's sums must fit in 64 bits)")


@dataclass(frozen=True)
class PsumStorage:
    """Partial sums written to on-chip memory every ``tile_k`` elements of K and read back."""

    tile_k: int = field(64, check=_between(1, 2 ** 20), help="K elements between writes (a multiple of group_size)")
    codec: CodecSpec | None = field(None, help="lossy codec for what is written; null = stored exactly")

    def __post_init__(self) -> None:
        validate(self)


# emulated_matmul and golden refuse a weight scale the scale codec rounds to 0 with this message
ZERO_WEIGHT_SCALE = ("int_datapath.scale_codec rounds a weight scale to 0; raise the codec's bias so that its "
                     "smallest step lies below the smallest scale")


@dataclass(frozen=True)
class IntDatapath:
    """Symmetric integer operands, leading-one truncation of the first, adder tree of width G with
    ``psum_bits`` partial sums, ``acc_bits`` accumulator, optional partial-sum storage codec.

    Cross-field errors name the full key (this section is ``int_datapath`` of an
    ``AcceleratorConfig``).
    """

    a_bits: int = field(8, check=_between(2, 16), help="bits of the first operand (activations); |q| <= 2^(a_bits-1)-1")
    b_bits: int = field(8, check=_between(2, 16), help="bits of the second operand (weights)")
    keep_bits: int | None = field(None, check=_between(1, 16),
                                  help="bits kept from the leading one of the first operand; null = exact")
    keep_rounding: str = field("truncate", choices=ROUNDINGS, help="how the truncated operand drops bits")
    group_size: int = field(16, check=_power_of_two, help="adder-tree width G = 2^n")
    psum_bits: int | None = field(None, check=_between(2, 48),
                                  help="bits of the adder tree's partial sum (above the dropped LSBs); "
                                       "null = never overflows")
    psum_drop_lsbs: int = field(0, check=_between(0, 32), help="low bits of each group sum dropped")
    psum_rounding: str = field("truncate", choices=ROUNDINGS,
                               help="dropping psum LSBs: truncate (floor) | nearest (half up) | "
                                    "unbiased (LSB forced to 1)")
    acc_bits: int = field(32, check=_between(2, 48), help="bits of the accumulator")
    overflow: str = field("saturate", choices=OVERFLOWS, help="partial sums and accumulator out of range")
    psum_storage: PsumStorage | None = field(None, help="partial sums stored every tile_k elements; "
                                                         "null = kept in registers")
    scale_codec: CodecSpec | None = field(None, help="codec for per-channel weight scales (float32); null = exact")
    activation_scale: str = field("per_tensor", choices=ACTIVATION_SCALES,
                                  help="per_tensor: one static (calibrated) scale for the activation; per_token: "
                                       "each row of the activation gets its own scale max|row| / qmax, computed "
                                       "on the fly (and each column of an activation second operand)")

    def __post_init__(self) -> None:
        validate(self, "int_datapath.")
        key = "int_datapath."
        if self.keep_bits is not None and self.keep_bits > self.a_bits:
            raise ConfigError(f"{key}keep_bits: value {self.keep_bits} is not allowed; at most a_bits ({self.a_bits}) "
                              "or null")
        if self.psum_bits is not None and self.psum_bits + self.psum_drop_lsbs > 48:
            raise ConfigError(f"{key}psum_drop_lsbs: value {self.psum_drop_lsbs} is not allowed; psum_bits + "
                              f"psum_drop_lsbs must be at most 48 (psum_bits is {self.psum_bits})")
        storage = self.psum_storage
        if storage is not None and storage.tile_k % self.group_size:
            raise ConfigError(f"{key}psum_storage.tile_k: value {storage.tile_k} is not allowed; a multiple of "
                              f"group_size ({self.group_size}) is required")
        codec = self.psum_codec()
        if isinstance(codec, FloatCodec) and codec.max_value < 2 ** (self.acc_bits - 1):
            need = [e for e in range(codec.exp_bits + 1, 9)
                    if (2 ** codec.man_bits - 1) * 2.0 ** (2 ** e - 1 - codec.bias) >= 2 ** (self.acc_bits - 1)]
            raise ConfigError(f"{key}psum_storage.codec.exp_bits: value {codec.exp_bits} is not allowed; the codec's "
                              f"largest value {codec.max_value:g} is below the {self.acc_bits}-bit accumulator's "
                              f"2^{self.acc_bits - 1}: use " + (f"exp_bits >= {need[0]} with man_bits {codec.man_bits}"
                                                                if need else "a smaller bias"))
        if isinstance(codec, FloatCodec) and codec.bias > 0:
            raise ConfigError(f"{key}psum_storage.codec.bias: value {codec.bias} is not allowed; partial sums are "
                              "integers: a bias <= 0 is required")
        if self.scale_codec is not None and self.scale_codec.kind != "float":
            raise ConfigError(f"{key}scale_codec.kind: value {self.scale_codec.kind!r} is not allowed; scale "
                              "factors are float32 values: use kind 'float'")
        scale = self.weight_scale_codec()
        if scale is not None and not (scale.man_bits <= 24 and scale.bias <= 149
                                      and scale.max_shift - scale.bias + scale.man_bits <= 128):
            raise ConfigError(f"{key}scale_codec: value {scale} is not allowed; its values must be float32 "
                              "values: man_bits <= 24, bias <= 149 and 2^exp_bits - 1 - bias + man_bits <= 128")

    def psum_codec(self) -> Codec | None:
        """The storage codec for accumulator values (``acc_bits`` wide), or None."""
        if self.psum_storage is None or self.psum_storage.codec is None:
            return None
        return _build(self.psum_storage.codec, self.acc_bits, "int_datapath.psum_storage.codec.")

    def weight_scale_codec(self) -> FloatCodec | None:
        """The codec applied to float32 weight scales, or None."""
        if self.scale_codec is None:
            return None
        return _build(self.scale_codec, 32, "int_datapath.scale_codec.")


def _build(spec: CodecSpec, value_bits: int, key: str) -> Codec:
    try:
        return spec.build(value_bits)
    except ValueError as exc:
        raise ConfigError(f"{key}{exc}") from exc


@dataclass(frozen=True)
class AcceleratorConfig:
    """An accelerator datapath: ``native`` (host float32), ``float`` or ``int``."""

    name: str = field("custom", help="a label for reports")
    datapath: str = field("native", choices=("native", "float", "int"), help="which datapath runs matmuls")
    float_datapath: FloatDatapath | None = field(None, help="settings of the float datapath")
    int_datapath: IntDatapath | None = field(None, help="settings of the integer datapath")
    description: str = field("", help="free text shown in reports")

    def __post_init__(self) -> None:
        validate(self)
        for kind, section, cls in (("float", "float_datapath", FloatDatapath), ("int", "int_datapath", IntDatapath)):
            if self.datapath == kind and getattr(self, section) is None:
                object.__setattr__(self, section, cls())
            if self.datapath != kind and getattr(self, section) is not None:
                raise ConfigError(f"{section}: is only allowed with datapath: {kind} (datapath is {self.datapath!r})")

    # -- loading and saving -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: dict) -> "AcceleratorConfig":
        """A validated config from a dict in the YAML schema."""
        return from_dict(cls, data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "AcceleratorConfig":
        """A validated config from a YAML file; errors name the file."""
        data = load_yaml(path)
        try:
            return from_dict(cls, data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc

    def to_yaml(self) -> str:
        """The config as YAML that ``from_yaml`` reads back."""
        return to_yaml(self)

    @classmethod
    def presets(cls) -> list[str]:
        """Names of the shipped presets."""
        return shipped_names("accelerators")

    @classmethod
    def preset(cls, name: str) -> "AcceleratorConfig":
        """A shipped preset by name (see ``presets()``)."""
        try:
            path = shipped("accelerators", name)
        except ConfigError:
            raise ConfigError(f"accelerator preset {name!r} is unknown; choose one of {cls.presets()} "
                              "or pass a YAML file") from None
        return cls.from_yaml(path)

    @classmethod
    def load(cls, spec: "str | Path | dict | AcceleratorConfig") -> "AcceleratorConfig":
        """A config from a preset name, a YAML path, a dict in the YAML schema, or a config
        (returned as is)."""
        if isinstance(spec, AcceleratorConfig):
            return spec
        if isinstance(spec, dict):
            return cls.from_dict(spec)
        if not isinstance(spec, (str, Path)):
            raise TypeError(f"config must be a preset name, a YAML path, a dict or an AcceleratorConfig, got "
                            f"{type(spec).__name__}")
        spec = str(spec)
        if spec.endswith((".yaml", ".yml")) or Path(spec).is_file():
            return cls.from_yaml(spec)
        return cls.preset(spec)

    def replace(self, **changes: object) -> "AcceleratorConfig":
        """A copy with some top-level fields changed (validated)."""
        return dataclasses.replace(self, **changes)
