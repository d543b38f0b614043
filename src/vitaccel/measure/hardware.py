"""Hardware cost of running a model on an accelerator datapath: operations, bits moved, energy.

Everything here is an **estimate** from the matmul shapes a forward actually executes and a
per-operation energy table (``configs/energy/horowitz45nm.yaml``, replaceable). The assumptions
are listed in ``ASSUMPTIONS`` and printed with every report:
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import TYPE_CHECKING

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from vitaccel.arith import AcceleratorConfig, FloatFormat
from vitaccel.arith.mx import MXFormat, operand_format
from vitaccel.configtools import ConfigError
from vitaccel.measure.energy_table import EnergyTable

if TYPE_CHECKING:
    from vitaccel.hw.costs import MacEnergies

SOURCES = ("table", "synthesized")

ASSUMPTIONS = (
    "multiplier energy scales with the product of operand widths (int: int8_mult * wa*wb/64; "
    "float: fp16_mult * significand widths product / 11^2; native float32: fp32_mult)",
    "integer adds scale with width (int32_add * bits/32); float accumulator adds cost fp32_add for float32 "
    "and, for a narrower accumulator of significand width s, fp16_add + (fp32_add - fp16_add) * (s - 11) / 13 "
    "(fp16_add at half precision's 11 bits)",
    "the adder tree sums G products per group with G-1 adds at the partial-sum width; "
    "the accumulator adds each group sum once",
    "partial sums are written to SRAM every tile_k elements of K and read back before the next "
    "tile (float and native datapaths: tile_k = 64, partial sums as wide as the accumulator format)",
    "each operand element is read from SRAM once per matmul (no reuse modelled); SRAM energy per "
    "bit = sram_64bit_read / 64",
    "only matrix products are counted (softmax, norms, activations excluded)",
    "source='synthesized': multiplies cost the synthesized lane's energy, the adder tree its synthesized "
    "energy per group and the accumulator its registered unit's energy per group sum added (vitaccel.hw: gate "
    "and flip-flop toggles x energy per toggle, pinned so that the exact int8 x int8 multiplier on uniform "
    "random operands costs the table's int8_mult); all SRAM traffic stays table-based (no memory compiler); "
    "the native datapath has no circuit and stays table-based",
)
__doc__ += "\n" + "\n".join(f"* {a}" for a in ASSUMPTIONS)


@dataclass(frozen=True)
class MatmulShape:
    """One executed matrix product: ``count`` independent (M x K) @ (K x N) products."""

    m: int
    k: int
    n: int
    count: int = 1

    @property
    def macs(self) -> int:
        return self.m * self.k * self.n * self.count


class _ShapeRecorder(TorchDispatchMode):
    """Records the (M, K, N) of every matrix product at the aten level."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[MatmulShape] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        if name in ("mm", "addmm"):
            a, b = args[-2], args[-1]
            self.shapes.append(MatmulShape(a.shape[0], a.shape[1], b.shape[1]))
        elif name in ("bmm", "baddbmm"):
            a, b = args[-2], args[-1]
            self.shapes.append(MatmulShape(a.shape[1], a.shape[2], b.shape[2], a.shape[0]))
        elif name == "convolution":
            x, w = args[0], args[1]
            out = func(*args, **kwargs)
            groups = args[8] if len(args) > 8 else 1
            per_group_k = w.shape[1] * math.prod(w.shape[2:])
            self.shapes.append(MatmulShape(math.prod(out.shape[2:]), per_group_k, w.shape[0] // groups,
                                           x.shape[0] * groups))
            return out
        elif name.startswith("_scaled_dot_product") or name == "scaled_dot_product_attention":
            q, k, v = args[0], args[1], args[2]
            batch = math.prod(q.shape[:-2])
            self.shapes.append(MatmulShape(q.shape[-2], q.shape[-1], k.shape[-2], batch))  # q @ k^T
            self.shapes.append(MatmulShape(q.shape[-2], k.shape[-2], v.shape[-1], batch))  # attn @ v
        return func(*args, **kwargs)


@torch.no_grad()
def matmul_shapes(model: torch.nn.Module, x: torch.Tensor) -> list[MatmulShape]:
    """The matrix products one forward of ``model`` on ``x`` executes (linear layers, convolutions,
    attention), as (M, K, N) x count."""
    recorder = _ShapeRecorder()
    with recorder:
        model(x)
    return recorder.shapes


@dataclass
class Cost:
    """Operation counts, bits moved and energy (pJ) of a set of matmuls on one datapath."""

    accelerator: str
    macs: int = 0
    mults: dict = dc_field(default_factory=dict)        # "wa x wb" -> count
    adds: dict = dc_field(default_factory=dict)         # "<bits>-bit int" | "fp32" -> count
    psum_bits_written: int = 0
    psum_bits_read: int = 0
    psum_bits_uncompressed: int = 0                     # what the same traffic costs without a codec
    operand_bits: int = 0
    energy_pj: dict = dc_field(default_factory=dict)     # "multiply" | "add" | "psum" | "operands"
    sources: dict = dc_field(default_factory=dict)       # energy_pj key -> where its figure comes from

    @property
    def energy_total_pj(self) -> float:
        return sum(self.energy_pj.values())

    def scaled(self, factor: float) -> "Cost":
        """This cost times ``factor`` (e.g. 1 / images for a per-image figure)."""
        return Cost(self.accelerator, round(self.macs * factor),
                    {k: v * factor for k, v in self.mults.items()}, {k: v * factor for k, v in self.adds.items()},
                    round(self.psum_bits_written * factor), round(self.psum_bits_read * factor),
                    round(self.psum_bits_uncompressed * factor), round(self.operand_bits * factor),
                    {k: v * factor for k, v in self.energy_pj.items()}, dict(self.sources))


def _bump(d: dict, key: str, n: float) -> None:
    d[key] = d.get(key, 0) + n


def cost(shapes: list[MatmulShape], config: AcceleratorConfig | str, table: EnergyTable | None = None, *,
         source: str = "table", energies: MacEnergies | None = None) -> Cost:
    """Estimated cost of ``shapes`` on ``config`` (see ``ASSUMPTIONS``).

    ``source="synthesized"`` takes the multiply and adder-tree energies from the config's
    synthesized units: ``energies`` (``vitaccel.hw.costs.mac_energies``, e.g. on a model's own
    operands), or measured here on uniform random operands when None.
    """
    config = AcceleratorConfig.load(config)
    table = table or EnergyTable.load()
    if source not in SOURCES:
        raise ConfigError(f"source: value {source!r} is not allowed; one of {', '.join(SOURCES)}")
    out = Cost(config.name)
    sram_pj_bit = table.sram_64bit_read / 64
    spec = _datapath_widths(config)
    label = f"table ({table.source or 'energy table'}; multiplier scaled with operand widths)"
    out.sources = {"multiply": label, "add": label}
    if source == "synthesized" and config.datapath == "native":
        out.sources = {k: "table (native float32 has no circuit)" for k in out.sources}
    elif source == "synthesized":
        if energies is None:
            from vitaccel.hw.costs import mac_energies
            energies = mac_energies(config)
        elif energies.config != config.name:
            raise ConfigError(f"energies: measured for {energies.config!r}, not for {config.name!r}")
        spec = {**spec, "mult_pj": lambda t: energies.multiply_pj}
        out.sources = {"multiply": energies.source, "add": f"adder tree and accumulator: {label}"}
        parts = {"adder tree": f"table ({table.source})", "accumulator": f"table ({table.source})"}
        if energies.tree_pj_per_group is not None:
            spec["tree_pj"] = lambda t: energies.tree_pj_per_group / max(spec["group"] - 1, 1)
            parts["adder tree"] = "synthesized"
        if energies.accumulate_pj is not None:
            spec["acc_pj"] = lambda t: energies.accumulate_pj
            parts["accumulator"] = "synthesized"
        out.sources["add"] = "; ".join(f"{k}: {v}" for k, v in parts.items()) + (
            f" -- {energies.source}" if "synthesized" in parts.values() else "")
    out.sources.update(psum=f"table (sram_64bit_read / 64 per bit; {table.source})",
                       operands=f"table (sram_64bit_read / 64 per bit; {table.source})")
    for s in shapes:
        groups = math.ceil(s.k / spec["group"])
        tiles = math.ceil(s.k / spec["tile_k"])
        outputs = s.m * s.n * s.count
        out.macs += s.macs
        _bump(out.mults, f"{spec['wa']}x{spec['wb']}", s.macs)
        tree = outputs * groups * (spec["group"] - 1)
        _bump(out.adds, spec["tree_label"], tree)
        _bump(out.adds, spec["acc_label"], outputs * groups)
        out.psum_bits_written += outputs * tiles * spec["psum_bits"]
        out.psum_bits_read += outputs * (tiles - 1) * spec["psum_bits"]
        out.psum_bits_uncompressed += outputs * (2 * tiles - 1) * spec["acc_bits"]
        out.operand_bits += s.count * (s.m * s.k * spec["a_bits"] + s.k * s.n * spec["b_bits"])
        _bump(out.energy_pj, "multiply", s.macs * spec["mult_pj"](table))
        _bump(out.energy_pj, "add", tree * spec["tree_pj"](table) + outputs * groups * spec["acc_pj"](table))
    out.energy_pj["psum"] = (out.psum_bits_written + out.psum_bits_read) * sram_pj_bit
    out.energy_pj["operands"] = out.operand_bits * sram_pj_bit
    return out


def _int_add(bits: int):
    return lambda t: t.int32_add * bits / 32


def _stored_bits(fmt: object) -> float:
    """Bits stored per operand element: the format's, plus an MX block's 8-bit scale shared by its elements."""
    return fmt.bits + 8 / fmt.block if isinstance(fmt, MXFormat) else fmt.bits


def _float_add(fmt: FloatFormat):
    """Energy of one add in float format ``fmt``: the table's fp32_add or fp16_add, linear in the
    significand width between them."""
    s = fmt.man_bits + 1
    return lambda t: t.fp16_add + (t.fp32_add - t.fp16_add) * (s - 11) / 13


def _datapath_widths(config: AcceleratorConfig) -> dict:
    """Operand, multiplier and adder widths of a datapath, with their unit energies."""
    if config.datapath == "native":
        return dict(wa=24, wb=24, a_bits=32, b_bits=32, group=1, tile_k=64, psum_bits=32, acc_bits=32,
                    tree_label="fp32", acc_label="fp32", mult_pj=lambda t: t.fp32_mult,
                    tree_pj=lambda t: t.fp32_add, acc_pj=lambda t: t.fp32_add)
    if config.datapath == "float":
        fp = config.float_datapath
        fa, fb = operand_format(fp.a_format, fp.mx_block), operand_format(fp.b_format, fp.mx_block)
        sa, sb = fa.man_bits + 1, fb.man_bits + 1
        n = int(math.log2(fp.group_size))
        # aligned adder: align_bits fraction bits + the product's 2 integer bits + n carry bits;
        # exact (null): wide enough for the products' full exponent span (MX: the elements' span, right
        # when a group lies in one block; the scale's exponent add and, for groups wider than a block,
        # the scales' spread are not charged)
        elem = fa.element_format if isinstance(fa, MXFormat) else fa
        span = 2 * 2 ** (elem.exp_bits if elem is not None else 0)   # MXINT8: integer elements
        tree_bits = (fp.align_bits + 2 + n) if fp.align_bits is not None else (sa + sb + n + span)
        facc = FloatFormat.named(fp.accumulator)
        return dict(wa=sa, wb=sb, a_bits=_stored_bits(fa), b_bits=_stored_bits(fb), group=fp.group_size,
                    tile_k=64, psum_bits=facc.bits, acc_bits=facc.bits, tree_label=f"{tree_bits}-bit int",
                    acc_label=fp.accumulator, mult_pj=lambda t: t.fp16_mult * sa * sb / 121,
                    tree_pj=_int_add(tree_bits), acc_pj=_float_add(facc))
    ip = config.int_datapath
    wa = ip.keep_bits if ip.keep_bits is not None else ip.a_bits - 1  # magnitude bits into the multiplier
    wb = ip.b_bits
    n = int(math.log2(ip.group_size))
    tree_bits = ip.psum_bits if ip.psum_bits is not None else ip.a_bits + ip.b_bits + n
    codec = ip.psum_codec()
    tile_k = ip.psum_storage.tile_k if ip.psum_storage is not None else 64
    return dict(wa=wa, wb=wb, a_bits=ip.a_bits, b_bits=ip.b_bits, group=ip.group_size, tile_k=tile_k,
                psum_bits=codec.bits if codec is not None else ip.acc_bits, acc_bits=ip.acc_bits,
                tree_label=f"{tree_bits}-bit int", acc_label=f"{ip.acc_bits}-bit int",
                mult_pj=lambda t: t.int8_mult * wa * wb / 64, tree_pj=_int_add(tree_bits), acc_pj=_int_add(ip.acc_bits))
