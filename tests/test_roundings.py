"""Every rounding of FloatFormat (nearest_even, ties_away, toward_zero, up, down, stochastic with
62 or n random bits) against the scalar golden model, and against Graphcore's gfloat when it is
installed."""

from fractions import Fraction

import numpy as np
import pytest
import torch

from conftest import random_float32, same_bits
from vitaccel.arith import FP13, FloatFormat, golden
from vitaccel.arith.formats import ROUNDINGS, stochastic_draws
from vitaccel.errors import UserError

DETERMINISTIC = [r for r in ROUNDINGS if r != "stochastic"]
FORMATS = [FloatFormat.named(n) for n in ("e5m7", "e5m10", "e8m7", "e5m2", "e4m3")] + [
    FloatFormat(5, 7, saturate=True), FloatFormat(5, 7, subnormals=False), FloatFormat(5, 7, specials="finite"),
    FloatFormat(4, 3, specials="finite"), FloatFormat(3, 2), FloatFormat(6, 9, bias=20),
    FloatFormat(2, 0, specials="finite"), FloatFormat(2, 1, specials="finite"),
]


def golden_tensor(values) -> torch.Tensor:
    return torch.tensor([golden.to_float(v) for v in values], dtype=torch.float64).float()


def _golden_check(fmt: FloatFormat, x: torch.Tensor, rounding: str) -> None:
    got = fmt.quantize(x, rounding)
    expected = golden_tensor(golden.quantize(fmt, v, rounding) for v in x.double().tolist())
    assert same_bits(got, expected), (fmt, rounding)
    assert same_bits(fmt.decode(fmt.encode(x, rounding)), got)


def _near_range(fmt: FloatFormat, seed: int) -> torch.Tensor:
    """Random float32 over all binades, values within 1.1 max, and values below 1.5 min_normal."""
    g = torch.Generator().manual_seed(seed)
    near = (torch.rand(1500, generator=g) * 2 - 1) * fmt.max * 1.1
    tiny = (torch.rand(500, generator=g) * 2 - 1) * fmt.min_normal * 1.5
    x = torch.cat([random_float32(1500, seed=seed), near, tiny])
    return x[~torch.isnan(x)] if fmt.specials == "finite" else x


def _ulp_points(fmt: FloatFormat, fractions) -> torch.Tensor:
    """Values at the given fractions of an ulp above codes across the whole range, both signs,
    and past the largest value (where overflow is decided)."""
    codes = torch.arange(0, fmt.max_code, max(1, fmt.max_code // 700))
    lo, hi = fmt.decode(codes).double(), fmt.decode(codes + 1).double()
    top = torch.tensor([fmt.max], dtype=torch.float64)
    gap = top - fmt.decode(torch.tensor([fmt.max_code - 1])).double()
    x = torch.cat([lo + f * (hi - lo) for f in fractions] + [top + f * gap for f in fractions])
    return torch.cat([x, -x])


@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("fmt", FORMATS, ids=repr)
def test_every_rounding_equals_golden_random_and_specials(fmt, rounding):
    x = _near_range(fmt, seed=2)
    _golden_check(fmt, x, rounding)
    _golden_check(fmt, x[::4].double(), rounding)


@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("fmt", FORMATS[:5] + FORMATS[6:7] + FORMATS[-2:], ids=repr)
def test_ties_near_ties_and_overflow_equal_golden(fmt, rounding):
    x = _ulp_points(fmt, [0.5, 0.49, 0.51, 0.0, 1e-6])
    _golden_check(fmt, x, rounding)
    if fmt.bits <= 13:
        _golden_check(fmt, x.float(), rounding)  # exact in float32 for formats with few mantissa bits


@pytest.mark.parametrize("fmt", FORMATS[:5] + FORMATS[-2:], ids=repr)
def test_roundings_pick_the_neighbour_their_rule_names(fmt):
    """The rules themselves, without golden: directed modes bracket x, ties_away takes the larger
    magnitude of a tie, nearest modes agree off ties, up(x) = -down(-x)."""
    x = _ulp_points(fmt, [0.5, 0.25, 0.75])
    x = x[x.abs() <= fmt.max].float()
    up, down = fmt.quantize(x, "up"), fmt.quantize(x, "down")
    assert bool((down <= x).all()) and bool((x <= up).all())
    assert same_bits(up, -fmt.quantize(-x, "down"))
    n = len(x) // 2
    ties = torch.cat([torch.arange(n // 3), n + torch.arange(n // 3)])  # the 0.5 points, both signs
    away, even = fmt.quantize(x[ties], "ties_away"), fmt.quantize(x[ties], "nearest_even")
    bigger = torch.where(up[ties].abs() > down[ties].abs(), up[ties], down[ties])
    assert same_bits(away, bigger)
    off = torch.ones(len(x), dtype=torch.bool)
    off[ties] = False
    assert same_bits(fmt.quantize(x[off], "ties_away"), fmt.quantize(x[off], "nearest_even"))
    assert not same_bits(away, even)  # half the ties differ: a test that can fail


def test_directed_overflow_as_ieee_says():
    x = torch.tensor([65408.0, 1e6, float("inf"), -65408.0, -1e6, -float("inf"), 65535.0])
    assert FP13.quantize(x, "up").tolist() == [float("inf")] * 3 + [-65280.0, -65280.0, -float("inf"), float("inf")]
    assert FP13.quantize(x, "down").tolist() == [65280.0, 65280.0, float("inf")] + [-float("inf")] * 3 + [65280.0]
    assert FP13.quantize(x, "ties_away").tolist() == [float("inf")] * 3 + [-float("inf")] * 3 + [float("inf")]
    assert FloatFormat(5, 7, saturate=True).quantize(x, "up").tolist()[:2] == [65280.0, 65280.0]
    assert FP13.quantize(torch.tensor([-1e-30, 1e-30]), "up").tolist() == [-0.0, FP13.min_subnormal]
    assert str(FP13.quantize(torch.tensor([-1e-30]), "up")[0].item()) == "-0.0"


@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("fmt", [FloatFormat.named("e4m3"), FloatFormat.named("e5m2"),
                                 FloatFormat(2, 1, specials="finite")], ids=repr)
def test_every_half_precision_input_equals_golden(fmt, rounding):
    """All 2^16 float16 bit patterns (every binade, subnormal, tie of an 8-bit format) as inputs."""
    x = torch.arange(-2 ** 15, 2 ** 15, dtype=torch.int32).to(torch.int16).view(torch.float16).float()
    if fmt.specials == "finite":
        x = x[~torch.isnan(x)]
    _golden_check(fmt, x, rounding)


@pytest.mark.slow
@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("fmt", FORMATS[:5], ids=repr)
def test_a_million_values_equal_golden(fmt, rounding):
    _golden_check(fmt, random_float32(10 ** 6, seed=7), rounding)


# -- stochastic rounding with n random bits --------------------------------------------------
def _replay_stochastic_bits(fmt: FloatFormat, x: torch.Tensor, n: int, seed: int) -> None:
    got = fmt.quantize(x, "stochastic", torch.Generator().manual_seed(seed), stochastic_bits=n)
    draws = stochastic_draws(x.shape, torch.Generator().manual_seed(seed), n)  # the stream quantize draws
    expected = golden_tensor(golden.quantize(fmt, xi, "stochastic", Fraction(r, 2 ** n), stochastic_bits=n)
                             for xi, r in zip(x.double().tolist(), draws.tolist()))
    assert same_bits(got, expected), (fmt, n)


@pytest.mark.parametrize("n", [1, 3, 8, 13, 40, 62])
@pytest.mark.parametrize("fmt", [FP13, FloatFormat.named("e4m3"), FloatFormat(5, 7, subnormals=False),
                                 FloatFormat(2, 0, specials="finite")], ids=repr)
def test_stochastic_bits_equal_golden_with_the_same_draws(fmt, n):
    x = _near_range(fmt, seed=5)
    _replay_stochastic_bits(fmt, x, n, seed=n)
    _replay_stochastic_bits(fmt, x.double(), n, seed=n + 1)


def test_stochastic_bits_are_reproducible_and_bias_is_below_one_draw_step():
    """With n bits the dropped fraction is truncated to n bits: the mean result lies at most
    2^-n ulp below x (and never above it), here measured over 400 draws of each value."""
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(1000, generator=g) * 2 - 1) * 100
    a = FP13.quantize(x, "stochastic", torch.Generator().manual_seed(3), stochastic_bits=4)
    assert same_bits(a, FP13.quantize(x, "stochastic", torch.Generator().manual_seed(3), stochastic_bits=4))
    reps = 400
    q = FP13.quantize(x.repeat(reps), "stochastic", torch.Generator().manual_seed(9), stochastic_bits=2)
    down, up = FP13.quantize(x, "toward_zero"), FP13.quantize(x, "ties_away")
    ulp = (FP13.quantize(x.abs(), "up") - FP13.quantize(x.abs(), "down")).double()
    ulp = torch.where(ulp == 0, (up.double().abs() - down.double().abs()).abs(), ulp)
    err = (q.reshape(reps, -1).double().mean(0).abs() - x.double().abs()) / ulp.clamp(min=1e-30)
    frac = ((x.double().abs() - down.double().abs()) / ulp.clamp(min=1e-30))
    expected = torch.floor(frac * 4) / 4 - frac  # the truncation bias of 2 bits, in ulps
    assert bool(((err - expected).abs() < 6 * 0.5 / reps ** 0.5).all())


def test_stochastic_bits_argument_errors_name_what_is_allowed():
    g = torch.Generator().manual_seed(0)
    for bad in (0, 63, 2.0, True):
        with pytest.raises(UserError, match="stochastic_bits=.*choose an int from 1 to 62"):
            FP13.quantize(torch.ones(2), "stochastic", g, stochastic_bits=bad)
    with pytest.raises(UserError, match="only allowed with rounding='stochastic'"):
        FP13.quantize(torch.ones(2), "up", stochastic_bits=4)
    with pytest.raises(UserError, match="rounding='sideways' is not allowed.*ties_away"):
        FP13.quantize(torch.ones(2), "sideways")


# -- cross-check against Graphcore's gfloat (skipped when it is not installed) --------------
def _gfloat_pairs():
    gf = pytest.importorskip("gfloat")
    f = pytest.importorskip("gfloat.formats")
    return gf, [(FloatFormat.named("e5m10"), f.format_info_binary16),
                (FloatFormat.named("e8m7"), f.format_info_bfloat16),
                (FloatFormat.named("e5m2"), f.format_info_ocp_e5m2),
                (FloatFormat.named("e4m3"), f.format_info_ocp_e4m3),
                (FloatFormat(3, 2, specials="finite"), f.format_info_ocp_e3m2),
                (FloatFormat(2, 3, specials="finite"), f.format_info_ocp_e2m3),
                (FloatFormat(2, 1, specials="finite"), f.format_info_ocp_e2m1)]


_GFLOAT_MODES = {"nearest_even": "TiesToEven", "ties_away": "TiesToAway", "toward_zero": "TowardZero",
                 "up": "TowardPositive", "down": "TowardNegative"}


@pytest.mark.parametrize("size", [10 ** 5, pytest.param(10 ** 6, marks=pytest.mark.slow)])
@pytest.mark.parametrize("rounding", DETERMINISTIC)
def test_every_rounding_equals_gfloat(rounding, size):
    gf, pairs = _gfloat_pairs()
    x = random_float32(size, seed=11)
    for fmt, fi in pairs:
        xs = x[~torch.isnan(x)] if fmt.specials == "finite" else x
        sat = fmt.specials != "ieee"  # OCP's saturating conversion for formats without infinity
        expected = gf.round_ndarray(fi, xs.double().numpy(), getattr(gf.RoundMode, _GFLOAT_MODES[rounding]), sat)
        assert same_bits(fmt.quantize(xs, rounding), torch.from_numpy(np.asarray(expected)).float()), (fmt, rounding)


@pytest.mark.parametrize("n", [3, 10])
def test_stochastic_bits_equal_gfloat_stochastic_fastest(n):
    """gfloat's StochasticFastest rounds away iff delta + r 2^-n >= 1, which is floor(delta 2^n) + r >= 2^n."""
    gf, pairs = _gfloat_pairs()
    x = random_float32(20000, seed=12)
    draws = stochastic_draws(x.shape, torch.Generator().manual_seed(n), n)
    for fmt, fi in pairs[2:4]:
        got = fmt.quantize(x, "stochastic", torch.Generator().manual_seed(n), stochastic_bits=n)
        expected = gf.round_ndarray(fi, x.double().numpy(), gf.RoundMode.StochasticFastest, fmt.specials != "ieee",
                                    draws.numpy(), n)
        assert same_bits(got, torch.from_numpy(np.asarray(expected)).float()), fmt


@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_encoder_chunks_give_the_codes_of_one_pass(rounding, monkeypatch):
    """The integer encoder runs in cache-sized pieces; the draws of stochastic rounding are made
    for the whole tensor first, so pieces of any size give the same codes."""
    from vitaccel.arith import formats
    x = random_float32(29942, seed=13).reshape(100, -1)  # 29942 + 58 specials
    kwargs = {"stochastic_bits": 5} if rounding == "stochastic" else {}
    gen = (lambda: torch.Generator().manual_seed(1)) if rounding == "stochastic" else (lambda: None)
    monkeypatch.setattr(formats, "_CHUNK", 10 ** 9)
    whole = FP13.encode(x, rounding, gen(), **kwargs)
    monkeypatch.setattr(formats, "_CHUNK", 997)
    assert torch.equal(FP13.encode(x, rounding, gen(), **kwargs), whole) and whole.shape == x.shape
