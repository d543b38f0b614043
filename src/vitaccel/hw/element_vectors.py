"""Golden test vectors for the elements on their own (exported with a bench each): the integer lane
(every operand pair when a_bits + b_bits <= 16), adder tree, accumulator step, codec round trip and
float32 add. Expected outputs come from ``vitaccel.arith.golden`` only. The float lane and tree
exchange the circuit's own product format (significand, exponent, flags), which golden does not
define, so they are checked inside the dot unit's bench."""

from __future__ import annotations

import math
import random
import struct
from fractions import Fraction
from typing import Callable

from vitaccel.arith import golden
from vitaccel.arith.config import AcceleratorConfig
from vitaccel.hw.int_lane import lane_bits
from vitaccel.hw.sim import Vector
from vitaccel.hw.tree import psum_bits

Vectors = tuple[list[Vector], list[Vector]]


def _int_lane(config: AcceleratorConfig, rng: random.Random) -> Vectors:
    dp = config.int_datapath
    ra, rb = range(-2 ** (dp.a_bits - 1), 2 ** (dp.a_bits - 1)), range(-2 ** (dp.b_bits - 1), 2 ** (dp.b_bits - 1))
    if dp.a_bits + dp.b_bits <= 16:
        ins = [{"a": a, "w": w} for a in ra for w in rb]
    else:
        ins = [{"a": rng.choice(ra), "w": rng.choice(rb)} for _ in range(20000)]
    return ins, [{"p": golden.int_multiply(v["a"], v["w"], dp.keep_bits, dp.keep_rounding)} for v in ins]


def _int_tree(config: AcceleratorConfig, rng: random.Random) -> Vectors:
    dp = config.int_datapath
    g, top = dp.group_size, 2 ** (lane_bits(dp) - 1) - 1
    qa, qb = 2 ** (dp.a_bits - 1) - 1, 2 ** (dp.b_bits - 1) - 1
    groups = [[golden.int_multiply(rng.randint(-qa, qa), rng.randint(-qb, qb), dp.keep_bits, dp.keep_rounding)
               for _ in range(g)] for _ in range(2000)]
    groups += [[top] * g, [-top - 1] * g, [0] * g, [1] + [0] * (g - 1), [-1] * g]
    ins = [{f"p[{i}]": x for i, x in enumerate(grp)} for grp in groups]
    outs = []
    for grp in groups:
        kept = golden.drop_lsbs(sum(grp), dp.psum_drop_lsbs, dp.psum_rounding)
        outs.append({"psum": kept if dp.psum_bits is None else golden.overflow(kept, dp.psum_bits, dp.overflow)})
    return ins, outs


def _accumulator(config: AcceleratorConfig, rng: random.Random) -> Vectors:
    dp = config.int_datapath
    codec = dp.psum_codec()
    lo, hi = -2 ** (dp.acc_bits - 1), 2 ** (dp.acc_bits - 1) - 1
    pw = psum_bits(dp)
    ins, outs = [], []
    for _ in range(4000):
        v = {"acc": rng.choice((rng.randint(lo, hi), lo, hi, rng.randint(-999, 999))),
             "psum": rng.randint(-2 ** (pw - 1), 2 ** (pw - 1) - 1), "first": int(rng.random() < 0.1),
             "store": int(codec is not None and rng.random() < 0.5)}
        acc = 0 if v["first"] else v["acc"]
        if v["store"] and not v["first"]:
            acc = golden.overflow(int(golden.codec_apply(codec, acc)), dp.acc_bits, dp.overflow)
        ins.append(v)
        outs.append({"acc_next": golden.overflow(acc + v["psum"] * 2 ** dp.psum_drop_lsbs, dp.acc_bits, dp.overflow)})
    return ins, outs


def _codec_round_trip(config: AcceleratorConfig, rng: random.Random) -> Vectors:
    dp = config.int_datapath
    codec, n = dp.psum_codec(), dp.acc_bits
    values = [0, 1, -1, 2 ** (n - 1) - 1, -2 ** (n - 1)]
    for e in range(1, n - 1):
        values += [2 ** e, 2 ** e - 1, 2 ** e + 1, -2 ** e, -(2 ** e) - 1, 3 * 2 ** (e - 1)]
    values += [rng.randint(-2 ** (n - 1), 2 ** (n - 1) - 1) for _ in range(8000)]
    return [{"x": v} for v in values], [{"y": golden.overflow(int(golden.codec_apply(codec, v)), n, dp.overflow)}
                                        for v in values]


def _f32(bits: int):
    x = struct.unpack("<f", struct.pack("<I", bits))[0]
    return Fraction(x) if math.isfinite(x) else x


def _f32_bits(v) -> int:
    x = golden.to_float(v)
    return 0x7FC00000 if math.isnan(x) else struct.unpack("<I", struct.pack("<f", x))[0]


def _f32_add(config: AcceleratorConfig, rng: random.Random) -> Vectors:
    specials = [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0xFF7FFFFF, 1, 0x80000001, 0x00800000, 0x7FC00000]
    pairs = [(a, b) for a in specials for b in specials]
    for _ in range(4000):
        ea = rng.randint(0, 254)
        eb = min(254, max(0, ea + rng.randint(-30, 30)))
        pairs.append(((rng.getrandbits(1) << 31) | (ea << 23) | rng.getrandbits(23),
                      (rng.getrandbits(1) << 31) | (eb << 23) | rng.getrandbits(23)))
    return ([{"a": a, "b": b} for a, b in pairs],
            [{"y": _f32_bits(golden.f32_add(_f32(a), _f32(b)))} for a, b in pairs])


GENERATORS: dict[str, Callable[[AcceleratorConfig, random.Random], Vectors]] = {
    "int_lane": _int_lane, "int_tree": _int_tree, "accumulator": _accumulator, "codec_round_trip": _codec_round_trip,
    "f32_add": _f32_add}


def element_vectors(config: AcceleratorConfig, name: str, seed: int = 0) -> Vectors | None:
    """(inputs, golden outputs) of element ``name``, or None when golden defines no reference for it."""
    make = GENERATORS.get(name)
    return None if make is None else make(config, random.Random(seed))
