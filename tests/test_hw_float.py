"""Co-simulation of the float lane, aligned float tree and float accumulator add (float32 and the
narrower accumulator formats) against golden."""

import math
import random
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from vitaccel.arith import golden
from vitaccel.arith.config import AcceleratorConfig, FloatDatapath
from vitaccel.arith.formats import FloatFormat
from vitaccel.hw.element_vectors import acc_add_vectors
from vitaccel.hw.float_lane import FloatLane, product_layout
from vitaccel.hw.float_tree import FloatTree
from vitaccel.hw.fp32 import FloatAdd, bits_value, value_bits
from vitaccel.hw.sim import run_comb

sys.path.insert(0, str(Path(__file__).parent))
from conftest import random_float32  # noqa: E402
from hw_helpers import decoded, f32, f32_bits, golden_f32, product_value, same_value  # noqa: E402

FP13 = FloatFormat.named("e5m7")


def significand_code(fmt: FloatFormat, sig: int, efield: int, sign: int) -> int:
    """Code with an 8-bit significand ``sig`` (top bit = hidden one) at exponent field ``efield``."""
    if sig < 2 ** fmt.man_bits:                       # subnormal significand
        return (sign << (fmt.bits - 1)) | sig
    return (sign << (fmt.bits - 1)) | (efield << fmt.man_bits) | (sig - 2 ** fmt.man_bits)


def sweep(fmt: FloatFormat, efields: list[tuple[int, int]], sigs_a, sigs_b, rng) -> list[dict]:
    return [{"a": significand_code(fmt, sa, ea, rng.getrandbits(1)),
             "b": significand_code(fmt, sb, eb, rng.getrandbits(1))}
            for ea, eb in efields for sa in sigs_a for sb in sigs_b]


# subnormal x subnormal (underflows float32 for bf16), normal, overflowing and mixed exponent pairs
EFIELDS = [(1, 1), (15, 15), (30, 30), (1, 30), (16, 2), (29, 3)]


def lane_mismatches(fa: FloatFormat, fb: FloatFormat, multiplier: str, vectors: list[dict]) -> int:
    out = run_comb(lambda: FloatLane(fa, fb, multiplier), vectors)
    layout = product_layout(fa, fb)
    return sum(not same_value(product_value(o["p"], layout), golden.fp_mul(golden.decode(fa, v["a"]),
                                                                             golden.decode(fb, v["b"])))
               for v, o in zip(vectors, out))


@pytest.mark.parametrize("multiplier", ["direct", "nibble"])
def test_lane_significand_pairs_sampled(multiplier):
    rng = random.Random(1)
    sigs = rng.sample(range(256), 24) + [0, 1, 127, 128, 255]
    assert lane_mismatches(FP13, FP13, multiplier, sweep(FP13, EFIELDS, sigs, sigs, rng)) == 0


def test_lane_bf16_exponent_extremes():
    """bfloat16 products that underflow and overflow float32's range (the lane stays exact)."""
    bf16 = FloatFormat.named("e8m7")
    rng = random.Random(5)
    sigs = rng.sample(range(256), 12) + [0, 1, 128, 255]
    vectors = sweep(bf16, [(1, 1), (254, 254), (1, 254), (127, 127), (3, 60)], sigs, sigs, rng)
    assert lane_mismatches(bf16, bf16, "nibble", vectors) == 0


@pytest.mark.slow
@pytest.mark.parametrize("multiplier", ["direct", "nibble"])
def test_lane_every_significand_pair(multiplier):
    rng = random.Random(2)
    assert lane_mismatches(FP13, FP13, multiplier, sweep(FP13, EFIELDS, range(256), range(256), rng)) == 0


def special_codes(fmt: FloatFormat) -> list[int]:
    top = 1 << (fmt.bits - 1)
    codes = [0, 1, fmt.max_code, 1 << fmt.man_bits, 2 ** fmt.man_bits - 1]
    if fmt.inf_code is not None:
        codes += [fmt.inf_code, fmt.inf_code | 1]
    if fmt.nan_code is not None:
        codes += [fmt.nan_code]
    return codes + [c | top for c in codes]


@pytest.mark.parametrize("name", ["e5m7", "e5m10", "e8m7", "e5m2", "e4m3"])
def test_lane_every_special_pair(name):
    fmt = FloatFormat.named(name)
    codes = special_codes(fmt)
    vectors = [{"a": a, "b": b} for a in codes for b in codes]
    assert lane_mismatches(fmt, fmt, "direct", vectors) == 0


def test_lane_mixed_formats_random_codes():
    rng = random.Random(4)
    fa, fb = FloatFormat.named("e5m7"), FloatFormat.named("e4m3")
    vectors = [{"a": rng.randrange(2 ** fa.bits), "b": rng.randrange(2 ** fb.bits)} for _ in range(3000)]
    assert lane_mismatches(fa, fb, "nibble", vectors) == 0


def tree_reference(fp: FloatDatapath, a: list[int], b: list[int]) -> int:
    """Golden group sum, through dot_float on one group (its accumulator turns -0 into +0)."""
    cfg = AcceleratorConfig(datapath="float", float_datapath=fp)
    fa, fb = FloatFormat.named(fp.a_format), FloatFormat.named(fp.b_format)
    facc = FloatFormat.named(fp.accumulator)
    return value_bits(facc, golden.dot_float([decoded(fa, x) for x in a], [decoded(fb, y) for y in b], cfg))


def tree_mismatches(fp: FloatDatapath, groups: list[tuple[list[int], list[int]]]) -> int:
    """Lanes then tree, element by element: the lane outputs drive the tree's inputs."""
    fa, fb = FloatFormat.named(fp.a_format), FloatFormat.named(fp.b_format)
    flat = [{"a": x, "b": y} for a, b in groups for x, y in zip(a, b)]
    prods = run_comb(lambda: FloatLane(fa, fb, fp.multiplier), flat)
    g = fp.group_size
    tree_in = [{f"p[{i}]": prods[j * g + i]["p"] for i in range(g)} for j in range(len(groups))]
    sums = run_comb(lambda: FloatTree(fp), tree_in)
    facc = FloatFormat.named(fp.accumulator)
    bad = 0
    for (a, b), s in zip(groups, sums):
        got = s["sum"] if bits_value(facc, s["sum"]) != 0 else 0            # the accumulator reads -0 as +0
        got = facc.nan_code if math.isnan(bits_value(facc, got)) else got
        bad += got != tree_reference(fp, a, b)
    return bad


def random_groups(fmt: FloatFormat, g: int, n: int, rng, lo: int, hi: int) -> list[tuple[list[int], list[int]]]:
    def code() -> int:
        return min((rng.randint(lo, hi) << fmt.man_bits) | rng.randrange(2 ** fmt.man_bits), fmt.max_code) | \
            (rng.getrandbits(1) << (fmt.bits - 1))
    return [([code() for _ in range(g)], [code() for _ in range(g)]) for _ in range(n)]


TREES = [FloatDatapath(), FloatDatapath(align_bits=16), FloatDatapath(align_bits=3, align_rounding="nearest_even"),
         FloatDatapath(align_bits=0, group_size=4, multiplier="nibble"), FloatDatapath(a_format="e5m10",
                                                                                       b_format="e5m10", group_size=8),
         FloatDatapath(a_format="e8m7", b_format="e8m7", group_size=4, align_bits=9, align_rounding="nearest_even"),
         FloatDatapath(accumulator="fp16", group_size=8), FloatDatapath(accumulator="bf16", align_bits=12),
         FloatDatapath(a_format="e8m7", b_format="e8m7", group_size=4, accumulator="tf32"),
         FloatDatapath(a_format="e5m10", b_format="e5m10", group_size=4, accumulator="fp24", align_bits=20)]


@pytest.mark.parametrize("fp", TREES, ids=lambda fp: f"{fp.a_format}-G{fp.group_size}-A{fp.align_bits}-"
                                                     f"{fp.align_rounding}-{fp.accumulator}")
def test_tree_random_and_crafted_groups(fp):
    rng = random.Random(fp.group_size)
    fmt = FloatFormat.named(fp.a_format)
    top = fmt.max_code >> fmt.man_bits
    groups = (random_groups(fmt, fp.group_size, 12, rng, 0, top) + random_groups(fmt, fp.group_size, 6, rng, 0, 2)
              + random_groups(fmt, fp.group_size, 6, rng, top - 1, top)
              + random_groups(fmt, fp.group_size, 6, rng, top // 2 - 2, top // 2 + 2))
    one = (fmt.bias << fmt.man_bits)
    groups.append(([one] * fp.group_size, [one | (1 << (fmt.bits - 1))] + [one] * (fp.group_size - 1)))  # cancel
    groups.append(([0] * fp.group_size, [0] * fp.group_size))
    specials = special_codes(fmt)
    groups += [([rng.choice(specials) for _ in range(fp.group_size)], [rng.choice(specials) for _ in
                                                                       range(fp.group_size)]) for _ in range(6)]
    assert tree_mismatches(fp, groups) == 0


def test_f32_add_random_and_special():
    x = random_float32(600, seed=5)
    y = torch.cat([random_float32(600, seed=6)[:x.numel() - 40], x[:40] * 0.75])  # near cancellation too
    pairs = [(f32_bits(float(p)), f32_bits(float(q))) for p, q in zip(x.tolist(), y.tolist())]
    pairs += [(a, b) for a in (0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 1, 0x80000001)
              for b in (0, 0x80000000, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 0x00800000)]
    out = run_comb(FloatAdd, [{"a": a, "b": b} for a, b in pairs])
    bad = 0
    for (a, b), o in zip(pairs, out):
        gv = golden.f32_add(_g(f32(a)), _g(f32(b)))
        want = golden_f32(gv)
        bad += o["y"] != want
    assert bad == 0


def test_f32_add_every_exponent_difference():
    """Pairs whose exponents differ by 0..40 (alignment, sticky, cancellation), both signs, subnormals."""
    rng = random.Random(9)
    pairs = []
    for d in range(41):
        for _ in range(40):
            ea = rng.randint(0, 254)
            eb = min(254, max(0, ea - d if rng.random() < 0.5 else ea + d))
            pairs.append(((rng.getrandbits(1) << 31) | (ea << 23) | rng.getrandbits(23),
                          (rng.getrandbits(1) << 31) | (eb << 23) | rng.getrandbits(23)))
    for _ in range(200):                                     # exact cancellation and near-cancellation
        a = rng.getrandbits(31)
        pairs.append((a, (a ^ (1 << 31)) ^ rng.choice((0, 1, 2, 1 << 22))))
    out = run_comb(FloatAdd, [{"a": a, "b": b} for a, b in pairs])
    want = [golden_f32(golden.f32_add(_g(f32(a)), _g(f32(b)))) for a, b in pairs]
    assert [o["y"] for o in out] == want


def _g(x: float):
    from fractions import Fraction
    return x if not math.isfinite(x) or x == 0 else Fraction(x)  # zeros keep their sign (-0 + -0 = -0)


def normaliser_vectors(bits: int, lo: int, rng: random.Random) -> list[int]:
    """Signed ``bits``-wide sums: random, ties and near-ties with the rest far below the leading
    one, results that are subnormal, overflow or zero."""
    top = bits - 2
    xs = [0, 1, -1, 2 ** top, -(2 ** top), 2 ** (bits - 1) - 1]
    for _ in range(150):
        k = rng.randint(24, top)
        sig = rng.getrandbits(24) | (1 << 23)
        base = sig << (k - 23)
        for rest in (1 << (k - 24), (1 << (k - 24)) + 1, (1 << (k - 24)) - 1, 1, 0, rng.getrandbits(k - 24)):
            x = base + rest
            if x < 2 ** (bits - 1):
                xs.append(x if rng.random() < 0.5 else -x)
    xs += [rng.getrandbits(rng.randint(1, bits - 1)) * rng.choice((1, -1)) for _ in range(300)]
    return xs


@pytest.mark.parametrize("bits, lo", [(80, -60), (529, -266), (40, -149 - 30), (33, 100)])
def test_normaliser_rounds_like_golden(bits, lo):
    from vitaccel.hw.float_tree import Normaliser

    rng = random.Random(bits)
    xs = normaliser_vectors(bits, lo, rng)
    out = run_comb(lambda: Normaliser(bits, 12, lo), [{"x": x} for x in xs])
    big = Fraction(2 - Fraction(1, 2 ** 23)) * Fraction(2) ** 127
    bad = 0
    for x, o in zip(xs, out):
        want = golden_f32(golden.round_real(Fraction(x) * Fraction(2) ** lo, 23, -126, big))
        got = o["y"] if f32(o["y"]) != 0 else 0                       # the circuit keeps the sign of a zero
        bad += got != (want if f32(want) != 0 else 0)
    assert bad == 0



ACCUMULATORS = ["fp16", "bf16", "tf32", "fp24", "fp32"]


def _acc_add_mismatches(fmt: FloatFormat, pairs: list[tuple[int, int]]) -> int:
    out = run_comb(lambda: FloatAdd(fmt), [{"a": a, "b": b} for a, b in pairs])
    want = [value_bits(fmt, golden.to_float(golden.acc_add(fmt, golden.decode(fmt, a), golden.decode(fmt, b))))
            for a, b in pairs]
    return sum(o["y"] != w for o, w in zip(out, want))


@pytest.mark.parametrize("name", ACCUMULATORS)
def test_accumulator_add_every_exponent_difference_specials_ties_and_overflow(name):
    """Every exponent difference of the format (both orders and signs, random mantissas), every
    pair of specials, exact ties (a + half its ulp, odd and even), ties with sticky bits,
    cancellation, subnormals and overflow past max: 0 mismatches against golden.acc_add."""
    fmt = FloatFormat.named(name)
    rng = random.Random(len(name))
    mb, sign, top = fmt.man_bits, 1 << (fmt.bits - 1), 2 ** fmt.exp_bits - 2
    pairs = []
    for d in range(top + 1):                              # exponent fields d apart, anywhere in range
        for _ in range(3):
            ea = rng.randint(d, top)
            pairs.append(((rng.getrandbits(1) * sign) | (ea << mb) | rng.getrandbits(mb),
                          (rng.getrandbits(1) * sign) | ((ea - d) << mb) | rng.getrandbits(mb)))
    for _ in range(60):                                   # ties: b is half an ulp of a (+ a sticky bit)
        ea = rng.randint(mb + 2, top)
        a = (ea << mb) | rng.getrandbits(mb)
        half = (ea - mb - 1) << mb
        pairs += [(a, half), (a | sign, half | sign), (a, half | 1), (a, half | sign), (a | sign, (half | 1) | sign)]
        pairs.append((a, a ^ sign))                       # exact cancellation
        pairs.append((a, (a ^ sign) + rng.choice((1, 2))))  # near cancellation
    pairs += [(fmt.max_code, fmt.max_code), (fmt.max_code, (top - mb - 1) << mb), (fmt.max_code | sign, fmt.max_code
                                                                                    | sign)]
    ins, _ = acc_add_vectors(fmt, rng, n=300)             # every pair of specials, random pairs
    pairs += [(v["a"], v["b"]) for v in ins]
    assert _acc_add_mismatches(fmt, pairs) == 0


def test_accumulator_add_element_vectors_are_golden():
    fmt = FloatFormat.named("fp16")
    ins, outs = acc_add_vectors(fmt, random.Random(3), n=200)
    got = run_comb(lambda: FloatAdd(fmt), ins)
    assert [o["y"] for o in got] == [o["y"] for o in outs]
    assert len(ins) == 300


def test_accumulator_circuits_refuse_formats_they_do_not_build():
    with pytest.raises(ValueError, match="accumulator format e4m3"):
        FloatAdd(FloatFormat.named("e4m3"))


def test_lane_tf32_random_codes_and_specials():
    """TF32 operands: 11-bit significands, float32's exponent range, against TF32 and FP13."""
    tf32 = FloatFormat.named("tf32")
    rng = random.Random(6)
    vectors = [{"a": rng.randrange(2 ** 19), "b": rng.randrange(2 ** 19)} for _ in range(600)]
    vectors += [{"a": a, "b": b} for a in special_codes(tf32) for b in special_codes(tf32)]
    assert lane_mismatches(tf32, tf32, "direct", vectors) == 0
    assert lane_mismatches(tf32, FP13, "nibble", [{"a": v["a"], "b": v["b"] & 0x1FFF} for v in vectors]) == 0
