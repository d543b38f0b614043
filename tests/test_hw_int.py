"""Co-simulation of the integer adder tree, accumulator and partial-sum codecs against golden."""

import random

import pytest
import torch

from vitaccel.arith import golden
from vitaccel.arith.config import CodecSpec, IntDatapath, PsumStorage
from vitaccel.arith.psum import FloatCodec, TruncCodec
from vitaccel.errors import HardwareError
from vitaccel.hw.accumulator import IntAccumulator
from vitaccel.hw.codecs import CodecRoundTrip, check_codec, decoder, encoder
from vitaccel.hw.int_lane import lane_bits
from vitaccel.hw.sim import run_comb
from vitaccel.hw.tree import IntTree

TREES = [IntDatapath(), IntDatapath(psum_bits=16, psum_drop_lsbs=4, psum_rounding="nearest"),
         IntDatapath(psum_bits=12, psum_drop_lsbs=3, psum_rounding="unbiased", overflow="wrap", group_size=8),
         IntDatapath(psum_bits=10, overflow="wrap", group_size=4, keep_bits=3),
         IntDatapath(psum_bits=14, psum_drop_lsbs=2, overflow="saturate", group_size=32)]


def tree_golden(dp: IntDatapath, p: list[int]) -> int:
    kept = golden.drop_lsbs(sum(p), dp.psum_drop_lsbs, dp.psum_rounding)
    return kept if dp.psum_bits is None else golden.overflow(kept, dp.psum_bits, dp.overflow)


@pytest.mark.parametrize("dp", TREES, ids=lambda dp: f"G{dp.group_size}-P{dp.psum_bits}-d{dp.psum_drop_lsbs}-"
                                                     f"{dp.psum_rounding}-{dp.overflow}")
def test_tree_random_and_overflowing(dp):
    rng = random.Random(dp.group_size)
    lim = 2 ** 14                                         # |a * w| of 8-bit operands
    groups = [[rng.randint(-lim, lim) for _ in range(dp.group_size)] for _ in range(300)]
    top = 2 ** (lane_bits(dp) - 1) - 1                    # widest lane product
    groups += [[top] * dp.group_size, [-top - 1] * dp.group_size, [0] * dp.group_size,     # forced overflow, both ways
               [rng.choice((-top, top)) for _ in range(dp.group_size)], [1] + [0] * (dp.group_size - 1)]
    groups += [[2 ** (dp.psum_drop_lsbs - 1) if dp.psum_drop_lsbs else 1] + [0] * (dp.group_size - 1)]  # a tie
    assert all(-top - 1 <= x <= top for g in groups for x in g)
    out = run_comb(lambda: IntTree(dp), [{f"p[{i}]": x for i, x in enumerate(g)} for g in groups])
    assert [o["psum"] for o in out] == [tree_golden(dp, g) for g in groups]
    if dp.psum_bits is not None:                          # the crafted groups did overflow
        assert any(abs(golden.drop_lsbs(sum(g), dp.psum_drop_lsbs, dp.psum_rounding)) >= 2 ** (dp.psum_bits - 1)
                   for g in groups)


def storage(spec: CodecSpec, tile_k: int = 64) -> PsumStorage:
    return PsumStorage(tile_k=tile_k, codec=spec)


ACCS = [IntDatapath(acc_bits=24, psum_storage=storage(CodecSpec(kind="float", exp_bits=4, man_bits=15))),
        IntDatapath(acc_bits=24, psum_bits=16, psum_drop_lsbs=4, psum_rounding="nearest",
                    psum_storage=storage(CodecSpec(kind="trunc", drop_bits=4))),
        IntDatapath(acc_bits=16, overflow="wrap", psum_storage=storage(CodecSpec(kind="float", exp_bits=4, man_bits=8,
                                                                                rounding="toward_zero"))),
        IntDatapath(acc_bits=12, overflow="saturate")]


@pytest.mark.parametrize("dp", ACCS, ids=lambda dp: f"acc{dp.acc_bits}-{dp.overflow}-{dp.psum_codec()}")
def test_accumulator_step(dp):
    """acc_next against golden dot_int's accumulator update, with and without the storage round trip."""
    rng = random.Random(dp.acc_bits)
    from vitaccel.hw.tree import psum_bits
    pw = psum_bits(dp)
    lo, hi = -2 ** (dp.acc_bits - 1), 2 ** (dp.acc_bits - 1) - 1
    codec = dp.psum_codec()
    vectors = []
    for _ in range(1500):
        vectors.append({"acc": rng.choice((rng.randint(lo, hi), hi, lo, rng.randint(-999, 999))),
                        "psum": rng.randint(-2 ** (pw - 1), 2 ** (pw - 1) - 1), "first": int(rng.random() < 0.1),
                        "store": int(codec is not None and rng.random() < 0.5)})
    out = run_comb(lambda: IntAccumulator(dp), vectors)
    for v, o in zip(vectors, out):
        acc = 0 if v["first"] else v["acc"]
        if v["store"] and not v["first"]:
            acc = golden.overflow(int(golden.codec_apply(codec, acc)), dp.acc_bits, dp.overflow)
        want = golden.overflow(acc + v["psum"] * 2 ** dp.psum_drop_lsbs, dp.acc_bits, dp.overflow)
        assert o["acc_next"] == want, (v, o)


SHIPPED = [FloatCodec(4, 15, 24), TruncCodec(4, 24)]                 # the presets' codecs
NARROW = [FloatCodec(3, 5, 12), FloatCodec(2, 4, 12, rounding="toward_zero"), FloatCodec(3, 4, 12, bias=-2),
          TruncCodec(3, 12), TruncCodec(5, 12, rounding="truncate")]
WIDE = [FloatCodec(5, 20, 40), FloatCodec(4, 24, 32, rounding="toward_zero"), TruncCodec(9, 40, rounding="truncate")]


def round_trip_mismatches(codec, values: list[int]) -> int:
    out = run_comb(lambda: CodecRoundTrip(codec, codec.value_bits, "saturate"), [{"x": v} for v in values])
    return sum(o["y"] != golden.overflow(int(golden.codec_apply(codec, v)), codec.value_bits, "saturate")
               for v, o in zip(values, out))


@pytest.mark.parametrize("codec", NARROW, ids=str)
def test_narrow_codec_every_value_and_code(codec):
    n = codec.value_bits
    values = list(range(-2 ** (n - 1), 2 ** (n - 1)))
    assert round_trip_mismatches(codec, values) == 0
    codes = run_comb(lambda: encoder(codec), [{"x": v} for v in values])      # encoder == the emulator's codes
    assert [c["code"] for c in codes] == (codec.encode(torch.tensor(values)) & (2 ** codec.bits - 1)).tolist()
    every = list(range(2 ** codec.bits))                                      # every code through the decoder
    dec = run_comb(lambda: decoder(codec), [{"code": c} for c in every])
    assert [d["x"] for d in dec] == [int(v) for v in codec.decode(torch.tensor(every)).tolist()]


def crafted(n: int, rng) -> list[int]:
    edges = [0, 1, -1, 2 ** (n - 1) - 1, -2 ** (n - 1)]
    for e in range(1, n - 1):
        edges += [2 ** e, 2 ** e - 1, 2 ** e + 1, -2 ** e, -(2 ** e) - 1, 3 * 2 ** (e - 1)]
    return edges + [rng.randint(-2 ** (n - 1), 2 ** (n - 1) - 1) for _ in range(3000)]


@pytest.mark.parametrize("codec", SHIPPED + WIDE, ids=str)
def test_codec_random_and_crafted_values(codec):
    assert round_trip_mismatches(codec, crafted(codec.value_bits, random.Random(codec.bits))) == 0


@pytest.mark.slow
@pytest.mark.parametrize("codec", SHIPPED, ids=str)
def test_shipped_codec_every_code(codec):
    every = list(range(2 ** codec.bits))
    dec = run_comb(lambda: decoder(codec), [{"code": c} for c in every])
    assert [d["x"] for d in dec] == [int(v) for v in codec.decode(torch.tensor(every)).tolist()]


def test_codec_wider_than_register_is_refused():
    check_codec(FloatCodec(4, 15, 24), 24)                              # the shipped one is fine
    with pytest.raises(HardwareError, match=r"int_datapath\.psum_storage\.codec: .*16 stored bits must be fewer "
                                            r"than the 16 bits"):
        check_codec(_wide_trunc(), 16)
    with pytest.raises(HardwareError, match=r"value_bits 32 != 24"):
        check_codec(FloatCodec(4, 19, 32), 24)


def _wide_trunc():
    """A TruncCodec whose 16 stored bits fill the 16-bit register (drop_bits 0 is refused by psum, so
    the codec object is altered after construction, as a hand-built codec could be)."""
    c = TruncCodec(1, 16)
    object.__setattr__(c, "drop_bits", 0)
    return c
