"""Operands of the circuits, quantised exactly as ``golden.matmul`` does, and ``simulate``: a matmul
through the dot-product unit in Amaranth's simulator."""

from __future__ import annotations

import functools
import math
import struct
from typing import Sequence

import torch

from vitaccel.arith import golden
from vitaccel.arith.config import AcceleratorConfig
from vitaccel.arith.formats import FloatFormat
from vitaccel.errors import HardwareError
from vitaccel.hw.circuits import build
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


def simulate_accumulators(config: AcceleratorConfig | str, rows: Sequence[Sequence[int]],
                          cols: Sequence[Sequence[int]], progress: bool = False) -> list[list[int]]:
    """The dot unit's accumulator for every (row, col) pair of operand codes: integers (int) or
    bit patterns of the accumulator format (float). Row i and column j must have the same length K >= 1."""
    circuits = build(config)
    g = (circuits.config.int_datapath or circuits.config.float_datapath).group_size
    streams = [group_stream(r, c, g) for r in rows for c in cols]
    outs = run_streams(circuits.dot, streams, progress=progress, desc="dot products")
    flat = [o[-1]["acc"] for o in outs]
    if circuits.config.datapath == "float":
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
        fa, fb = FloatFormat.named(fp.a_format), FloatFormat.named(fp.b_format)
        ma, mb = a.double().tolist(), b.double().tolist()
        rows = [[float_code(fa, x, fp.operand_rounding) for x in row] for row in ma]
        cols = [[float_code(fb, row[n], fp.operand_rounding) for row in mb] for n in range(len(mb[0]))]
        accs = simulate_accumulators(config, rows, cols, progress)
        facc = FloatFormat.named(fp.accumulator)
        out = [[bits_value(facc, v) for v in r] for r in accs]
    return torch.tensor(out, dtype=torch.float32)
