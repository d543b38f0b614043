"""Golden test vectors for the elements on their own (exported with a bench each): the integer lane
(every operand pair when a_bits + b_bits <= 16), adder tree, accumulator step, codec round trip and
the float accumulator add. Expected outputs come from ``vitaccel.arith.golden`` only. The float lane and tree
exchange the circuit's own product format (significand, exponent, flags), which golden does not
define, so they are checked inside the dot unit's bench."""

from __future__ import annotations

import random
from typing import Callable

from vitaccel.arith import golden
from vitaccel.arith.config import AcceleratorConfig
from vitaccel.arith.formats import FloatFormat
from vitaccel.hw.fp32 import value_bits
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


def acc_add_vectors(fmt: FloatFormat, rng: random.Random, n: int = 4000) -> Vectors:
    """Inputs and golden outputs of the accumulator add in ``fmt``: every pair of specials, extremes
    and subnormals, and ``n`` random pairs with exponent fields at most 30 apart."""
    sign, mb, top = 1 << (fmt.bits - 1), fmt.man_bits, 2 ** fmt.exp_bits - 2
    specials = [0, sign, fmt.inf_code, fmt.inf_code | sign, fmt.max_code, fmt.max_code | sign, 1, 1 | sign,
                1 << mb, fmt.nan_code]
    pairs = [(a, b) for a in specials for b in specials]
    for _ in range(n):
        ea = rng.randint(0, top)
        eb = min(top, max(0, ea + rng.randint(-30, 30)))
        pairs.append(((rng.getrandbits(1) << (fmt.bits - 1)) | (ea << mb) | rng.getrandbits(mb),
                      (rng.getrandbits(1) << (fmt.bits - 1)) | (eb << mb) | rng.getrandbits(mb)))
    return ([{"a": a, "b": b} for a, b in pairs],
            [{"y": value_bits(fmt, golden.to_float(golden.acc_add(fmt, golden.decode(fmt, a), golden.decode(fmt, b))))}
             for a, b in pairs])


def _acc_add(config: AcceleratorConfig, rng: random.Random) -> Vectors:
    return acc_add_vectors(FloatFormat.named(config.float_datapath.accumulator), rng)


GENERATORS: dict[str, Callable[[AcceleratorConfig, random.Random], Vectors]] = {
    "int_lane": _int_lane, "int_tree": _int_tree, "accumulator": _accumulator, "codec_round_trip": _codec_round_trip,
    "acc_add": _acc_add}


def element_vectors(config: AcceleratorConfig, name: str, seed: int = 0) -> Vectors | None:
    """(inputs, golden outputs) of element ``name``, or None when golden defines no reference for it."""
    make = GENERATORS.get(name)
    return None if make is None else make(config, random.Random(seed))
