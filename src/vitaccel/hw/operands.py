"""Operands of the circuits, quantised exactly as ``golden.matmul`` does (MX operands: element codes
and block scale codes), and ``simulate``: a matmul through the dot-product unit in Amaranth's simulator."""

from __future__ import annotations

import functools
import math
import struct
from typing import Sequence

import torch

from vitaccel.arith import golden
from vitaccel.arith.config import AcceleratorConfig
from vitaccel.arith.formats import FloatFormat
from vitaccel.arith.mx import E8M0_BIAS, E8M0_NAN, MXFormat, operand_format
from vitaccel.errors import HardwareError
from vitaccel.hw.circuits import build
from vitaccel.hw.float_tree import mx_sides
from vitaccel.hw.fp32 import bits_value
from vitaccel.hw.sim import group_stream, run_streams


@functools.lru_cache(maxsize=None)
def _code_table(fmt: FloatFormat) -> dict:
    """Golden value -> code (NaN and signed zeros keyed apart)."""
    table: dict = {}
    for code in range(2 ** fmt.bits):
        v = golden.decode(fmt, code)
        key = _key(v)
        table.setdefault(key, code)
    return table


def _key(v) -> tuple:
    if isinstance(v, float):
        return ("nan",) if math.isnan(v) else ("f", v, math.copysign(1.0, v))
    return ("q", v)


def float_code(fmt: FloatFormat, x: float, rounding: str = "nearest_even") -> int:
    """The code of ``golden.quantize(fmt, x)``."""
    return _code_table(fmt)[_key(golden.quantize(fmt, x, rounding))]


def f32_bits(x: float) -> int:
    return struct.unpack("<I", struct.pack("<f", x))[0]


def mx_codes(fmt: MXFormat, values: Sequence[float], rounding: str = "nearest_even") -> tuple[list[int], list[int]]:
    """Element codes and E8M0 scale codes (one per block along the vector) of golden's conversion
    (``golden.mx_block_elements``): a NaN-scale block has elements 0 and the scale 0xFF."""
    codes, scales = [], []
    for start in range(0, len(values), fmt.block):
        shared, elements = golden.mx_block_elements(fmt, values[start:start + fmt.block], rounding)
        scales.append(E8M0_NAN if shared is None else shared + E8M0_BIAS)
        codes += [_code_table(fmt.element_format)[_key(p)] for p in elements]
    return codes, scales


def operand_codes(config: AcceleratorConfig, side: str, vectors: Sequence[Sequence[float]]
                  ) -> tuple[list[list[int]], list[list[int]] | None]:
    """Lane codes of operand ``side`` (``"a"``: rows, ``"b"``: columns, each along K) quantised as
    golden does, and for an MX side the block scale codes of each vector (else None)."""
    fp = config.float_datapath
    fmt = operand_format(getattr(fp, f"{side}_format"), fp.mx_block)
    if isinstance(fmt, MXFormat):
        pairs = [mx_codes(fmt, v, fp.operand_rounding) for v in vectors]
        return [c for c, _ in pairs], [s for _, s in pairs]
    return [[float_code(fmt, x, fp.operand_rounding) for x in v] for v in vectors], None


def simulate_accumulators(config: AcceleratorConfig | str, rows: Sequence[Sequence[int]],
                          cols: Sequence[Sequence[int]], progress: bool = False, *,
                          row_scales: Sequence[Sequence[int]] | None = None,
                          col_scales: Sequence[Sequence[int]] | None = None) -> list[list[int]]:
    """The dot unit's accumulator for every (row, col) pair of operand codes: integers (int) or
    bit patterns of the accumulator format (float). Row i and column j must have the same length K >= 1.
    MX operands: the codes are element codes and ``row_scales[i]``/``col_scales[j]`` the E8M0 scale
    codes of each block of ``mx_block`` elements along K (required for an MX side, refused otherwise)."""
    circuits = build(config)
    cfg = circuits.config
    g = (cfg.int_datapath or cfg.float_datapath).group_size
    sides = mx_sides(cfg.float_datapath) if cfg.datapath == "float" else ()
    block = cfg.float_datapath.mx_block if sides else 1
    for side, name, given, vecs in (("a", "row_scales", row_scales, rows), ("b", "col_scales", col_scales, cols)):
        if side in sides and (given is None or len(given) != len(vecs)
                              or any(len(s) != -(-len(v) // block) for s, v in zip(given, vecs))):
            raise HardwareError(f"{name}: operand {side} of {cfg.name!r} is an MX format; one list of "
                                f"ceil(K / mx_block) E8M0 scale codes per vector is required ({len(vecs)} vectors, "
                                f"mx_block {block})")
        if side not in sides and given is not None:
            raise HardwareError(f"{name}: not allowed; operand {side} of {cfg.name!r} has no block scales")
    per_row = [{"a_scale": (s, block)} for s in row_scales] if row_scales is not None else [{}] * len(rows)
    per_col = [{"b_scale": (s, block)} for s in col_scales] if col_scales is not None else [{}] * len(cols)
    streams = [group_stream(r, c, g, {**sa, **sb}) for r, sa in zip(rows, per_row) for c, sb in zip(cols, per_col)]
    outs = run_streams(circuits.dot, streams, progress=progress, desc="dot products")
    flat = [o[-1]["acc"] for o in outs]
    if cfg.datapath == "float":
        flat = [v & 0xFFFFFFFF for v in flat]
    return [flat[i * len(cols):(i + 1) * len(cols)] for i in range(len(rows))]


def simulate(config: AcceleratorConfig | str, a: torch.Tensor, b: torch.Tensor, a_scale: torch.Tensor | None = None,
             b_scale: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
    """``a (M, K) @ b (K, N)`` through the circuit: operands quantised as ``golden.matmul`` does, one
    dot product per (row, column) in the dot unit; integer accumulators dequantised by
    ``golden.int_dequantize``. Returns float32 (M, N), comparable with ``golden.matmul`` and
    ``emulated_matmul``."""
    config = AcceleratorConfig.load(config)
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.shape[1] == 0:
        raise HardwareError(f"a, b: shapes {tuple(a.shape)} and {tuple(b.shape)} are not allowed; simulate takes "
                            "a (M, K) and b (K, N) with K >= 1")
    if config.datapath == "float" and (a_scale is not None or b_scale is not None):
        raise HardwareError("a_scale/b_scale: not allowed with a float datapath; they are for integer datapaths")
    build(config)
    if config.datapath == "int":
        dp = config.int_datapath
        ma, mb = a.float().double().tolist(), b.float().double().tolist()
        if dp.activation_scale == "per_token" and a_scale is not None:
            raise HardwareError("a_scale: not allowed with activation_scale per_token; each row is scaled")
        s_a = None if dp.activation_scale == "per_token" else \
            golden.int_scale(float(a.float().abs().max()), dp.a_bits) if a_scale is None else float(a_scale.float())
        s_rows, s_b = golden.activation_scales(ma, dp, s_a), golden.column_scales(mb, dp, b_scale)
        rows = [[golden.int_quantize(x, s, dp.a_bits) for x in row] for row, s in zip(ma, s_rows)]
        cols = [[golden.int_quantize(row[n], s, dp.b_bits) for row in mb] for n, s in enumerate(s_b)]
        accs = simulate_accumulators(config, rows, cols, progress)
        out = [[golden.int_dequantize(acc, s, s_b[n]) for n, acc in enumerate(r)] for r, s in zip(accs, s_rows)]
    else:
        fp = config.float_datapath
        ma, mb = a.double().tolist(), b.double().tolist()
        rows, row_scales = operand_codes(config, "a", ma)
        cols, col_scales = operand_codes(config, "b", [list(c) for c in zip(*mb)])
        accs = simulate_accumulators(config, rows, cols, progress, row_scales=row_scales, col_scales=col_scales)
        facc = FloatFormat.named(fp.accumulator)
        out = [[bits_value(facc, v) for v in r] for r in accs]
    return torch.tensor(out, dtype=torch.float32)
