"""``build(config)``: every circuit of one accelerator config, refused with HardwareError when the
generators cannot build it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from amaranth.lib import wiring

from vitaccel.arith.config import AcceleratorConfig, FloatDatapath
from vitaccel.hw.accumulator import FloatAccumulatorUnit, IntAccumulator, IntAccumulatorUnit
from vitaccel.hw.codecs import CodecRoundTrip, check_codec, decoder, encoder
from vitaccel.hw.common import MAX_LANES, refuse
from vitaccel.hw.dot import FloatDotUnit, IntDotUnit, Registered
from vitaccel.hw.float_lane import FloatLane
from vitaccel.hw.float_tree import FloatTree, accumulator, check_tree, formats, mx_sides, operand_element
from vitaccel.hw.fp32 import FP32, FloatAdd
from vitaccel.hw.int_lane import IntLane
from vitaccel.hw.tree import IntTree


@dataclass
class Circuits:
    """The combinational elements of one config (name -> factory of a fresh component), its
    registered accumulator and its dot-product unit."""

    config: AcceleratorConfig
    makers: dict[str, Callable[[], wiring.Component]] = field(default_factory=dict)
    dot: Callable[[], wiring.Component] | None = None
    accumulator_unit: Callable[[], wiring.Component] | None = None   # the registered accumulator (clocked)

    def elements(self) -> dict[str, wiring.Component]:
        """Fresh instances of every combinational element."""
        return {name: make() for name, make in self.makers.items()}

    def registered(self, name: str) -> Registered:
        """The element ``name`` with registered inputs and outputs (for timing)."""
        return Registered(self.makers[name]())

    def dot_unit(self) -> wiring.Component:
        return self.dot()

    def hierarchical(self, element: str) -> bool:
        """Whether ``element`` is synthesized block by block (``synthesize(hierarchical=True)``): the
        exact float tree (as wide as the products' exponent span: flat Yosys takes minutes) and the
        float dot unit around it; every other element is synthesized flat."""
        exact_float = self.config.datapath == "float" and self.config.float_datapath.align_bits is None
        return exact_float and element in ("float_tree", "dot_unit")

    def shared_name(self, element: str) -> str | None:
        """The top-module name of an element that configs share (a float accumulator and its adder
        depend only on the accumulator format), so one synthesis serves every config with that format."""
        if self.config.datapath != "float":
            return None
        fmt = accumulator(self.config.float_datapath)
        tag = "f32" if fmt == FP32 else fmt.name
        return {"accumulator_unit": f"u_{tag}_accumulator_unit", "acc_add": f"u_{tag}_acc_add"}.get(element)

    def maker(self, element: str) -> Callable[[], wiring.Component]:
        """The factory of ``element``: a combinational element, ``accumulator_unit`` or ``dot_unit``."""
        extra = {"accumulator_unit": self.accumulator_unit, "dot_unit": self.dot}
        if element not in self.makers and element not in extra:
            raise refuse("element", element, f"one of {sorted([*self.makers, *extra])}")
        return self.makers.get(element) or extra[element]


LANE_SPECIALS = ("ieee", "fn", "finite")   # what hw.float_lane.Decoded decodes (not fnuz or p3109 yet)


def check(config: AcceleratorConfig) -> None:
    """Refuse configs the circuits cannot build (HardwareError names key, value and what is allowed)."""
    if config.datapath == "native":
        raise refuse("datapath", config.datapath, "the native datapath is the host's float32 matmul and has no "
                     "circuit; choose a config with datapath 'int' or 'float'")
    section = config.int_datapath if config.datapath == "int" else config.float_datapath
    key = "int_datapath" if config.datapath == "int" else "float_datapath"
    if section.group_size > MAX_LANES:
        raise refuse(f"{key}.group_size", section.group_size, f"the generators build at most {MAX_LANES} lanes")
    if config.datapath == "int" and section.psum_codec() is not None:
        check_codec(section.psum_codec(), section.acc_bits)
    if config.datapath == "float":
        for side in ("a_format", "b_format"):
            fmt = operand_element(getattr(section, side), f"float_datapath.{side}")
            if fmt.specials not in LANE_SPECIALS:
                raise refuse(f"float_datapath.{side}", getattr(section, side),
                             f"the float lane decodes formats with specials {list(LANE_SPECIALS)}; this one has "
                             f"{fmt.specials!r}")
        if mx_sides(section):
            check_mx_groups(section)


def check_mx_groups(fp: FloatDatapath) -> None:
    """The MX scale path applies one block pair's scales per group: every group must lie in one block."""
    if fp.group_size > fp.mx_block:
        raise refuse("float_datapath.group_size", fp.group_size,
                     f"with MX operands the circuits need every group of G products in one block: G <= mx_block "
                     f"({fp.mx_block}); groups spanning several blocks (scales per product) are emulated, not built")
    if fp.mx_block % fp.group_size:
        raise refuse("float_datapath.mx_block", fp.mx_block,
                     f"with MX operands the circuits need mx_block a multiple of group_size ({fp.group_size}), so "
                     "that every group lies in one block; other blocks are emulated, not built")


def build(config: AcceleratorConfig | str) -> Circuits:
    """The circuits of a config (a preset name, a YAML path or an ``AcceleratorConfig``)."""
    config = AcceleratorConfig.load(config)
    check(config)
    out = Circuits(config)
    if config.datapath == "int":
        dp = config.int_datapath
        out.makers.update(int_lane=lambda: IntLane(dp), int_tree=lambda: IntTree(dp),
                          accumulator=lambda: IntAccumulator(dp))
        codec = dp.psum_codec()
        if codec is not None:
            out.makers.update(codec_encoder=lambda: encoder(codec), codec_decoder=lambda: decoder(codec),
                              codec_round_trip=lambda: CodecRoundTrip(codec, dp.acc_bits, dp.overflow))
        out.dot = lambda: IntDotUnit(dp)
        out.accumulator_unit = lambda: IntAccumulatorUnit(dp)
    else:
        fp = config.float_datapath
        fa, fb = formats(fp)
        check_tree(fp)
        out.makers.update(float_lane=lambda: FloatLane(fa, fb, fp.multiplier), float_tree=lambda: FloatTree(fp),
                          acc_add=lambda: FloatAdd(accumulator(fp)))
        out.dot = lambda: FloatDotUnit(fp)
        out.accumulator_unit = lambda: FloatAccumulatorUnit(accumulator(fp))
    return out
