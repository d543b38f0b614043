"""Co-simulation of the integer lane against golden.int_multiply: every signed 8-bit operand pair."""

import random

import pytest

from vitaccel.arith import golden
from vitaccel.arith.config import IntDatapath
from vitaccel.hw.int_lane import IntLane
from vitaccel.hw.sim import run_comb

ALL_PAIRS = [{"a": a, "w": w} for a in range(-128, 128) for w in range(-128, 128)]
ROUNDINGS = ("truncate", "nearest", "unbiased")


def mismatches(keep_bits, rounding, vectors) -> int:
    dp = IntDatapath(keep_bits=keep_bits, keep_rounding=rounding)
    out = run_comb(lambda: IntLane(dp), vectors)
    assert len(out) == len(vectors)
    return sum(o["p"] != golden.int_multiply(v["a"], v["w"], keep_bits, rounding) for v, o in zip(vectors, out))


@pytest.mark.parametrize("keep_bits,rounding", [(None, "truncate"), (4, "unbiased")])
def test_lane_every_pair(keep_bits, rounding):
    assert mismatches(keep_bits, rounding, ALL_PAIRS) == 0


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("keep_bits", range(1, 9))
def test_lane_random_pairs(keep_bits, rounding):
    rng = random.Random(keep_bits * 7 + len(rounding))
    vectors = rng.sample(ALL_PAIRS, 512) + [{"a": a, "w": w} for a in (-128, -127, -1, 0, 1, 127) for w in (-128, 127)]
    assert mismatches(keep_bits, rounding, vectors) == 0


@pytest.mark.slow
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("keep_bits", range(1, 9))
def test_lane_every_pair_every_keep(keep_bits, rounding):
    assert mismatches(keep_bits, rounding, ALL_PAIRS) == 0


def test_lane_wider_operands():
    dp = IntDatapath(a_bits=12, b_bits=10, keep_bits=5, keep_rounding="nearest")
    rng = random.Random(3)
    vectors = [{"a": rng.randint(-2048, 2047), "w": rng.randint(-512, 511)} for _ in range(2000)]
    out = run_comb(lambda: IntLane(dp), vectors)
    assert all(o["p"] == golden.int_multiply(v["a"], v["w"], 5, "nearest") for v, o in zip(vectors, out))


def test_lane_detects_a_wrong_reference():
    """The comparison can fail: the exact lane differs from a truncating reference."""
    assert mismatches(None, "truncate", [{"a": 127, "w": 3}]) == 0
    dp = IntDatapath(keep_bits=2, keep_rounding="truncate")
    out = run_comb(lambda: IntLane(dp), [{"a": 127, "w": 3}])
    assert out[0]["p"] != 127 * 3
