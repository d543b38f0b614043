"""FloatFormat against the scalar golden model and against PyTorch's own conversions."""

import math
from fractions import Fraction

import pytest
import torch

from conftest import random_float32, same_bits
from vitaccel.arith import FP13, FloatFormat, _fastcast, golden
from vitaccel.arith.formats import stochastic_draws

NAMED = ["e5m7", "e5m10", "e8m7", "e5m2", "e4m3"]
ROUNDINGS = ["nearest_even", "toward_zero"]


def golden_tensor(values) -> torch.Tensor:
    return torch.tensor([golden.to_float(v) for v in values], dtype=torch.float64).float()


@pytest.mark.parametrize("name", ["e5m7", "e5m2", "e4m3", "e5m10"])
def test_decode_every_code_equals_golden(name):
    fmt = FloatFormat.named(name)
    codes = torch.arange(2 ** fmt.bits)
    expected = golden_tensor(golden.decode(fmt, c) for c in range(2 ** fmt.bits))
    assert same_bits(fmt.decode(codes), expected)


@pytest.mark.parametrize("name", NAMED)
def test_encode_decode_round_trips_every_non_nan_code(name):
    fmt = FloatFormat.named(name)
    codes = torch.arange(2 ** fmt.bits, dtype=torch.int64)
    values = fmt.decode(codes)
    keep = ~torch.isnan(values)
    back = fmt.encode(values[keep]).long() & (2 ** fmt.bits - 1)
    assert torch.equal(back, codes[keep])


def test_fp13_constants():
    assert FP13.bits == 13 and FP13.max == 65280.0
    assert FP13.min_normal == 2.0 ** -14 and FP13.min_subnormal == 2.0 ** -21 and FP13.eps == 2.0 ** -8
    assert golden.format_max(FP13) == 65280
    # every FP13 value is exactly an IEEE half value: FP16 without its three low mantissa bits
    values = FP13.decode(torch.arange(2 ** 13))
    finite = torch.isfinite(values)
    assert same_bits(values[finite].half().float(), values[finite])


@pytest.mark.parametrize("name,peer", [("e5m10", torch.float16), ("e8m7", torch.bfloat16),
                                       ("e5m2", torch.float8_e5m2), ("e4m3", torch.float8_e4m3fn)])
def test_quantize_equals_pytorch_conversion(name, peer):
    """10^6 random float32 over all binades plus specials: bit-identical to PyTorch's cast."""
    x = random_float32(1_000_000, seed=1)
    fmt = FloatFormat.named(name)
    expected = x.to(peer).float()
    assert same_bits(fmt.quantize(x), expected)                 # the fast path where it applies
    assert same_bits(fmt.decode(fmt.encode(x)), expected)       # the integer path everywhere
    if fmt.bits == 16:
        finite = ~torch.isnan(x)
        assert torch.equal(fmt.encode(x[finite]), x[finite].to(peer).view(torch.int16))


def _golden_check(fmt: FloatFormat, x: torch.Tensor, rounding: str):
    got = fmt.decode(fmt.encode(x, rounding))
    expected = golden_tensor(golden.quantize(fmt, v, rounding) for v in x.double().tolist())
    assert same_bits(got, expected), (fmt, rounding)


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("fmt", [FloatFormat.named(n) for n in NAMED] + [
    FloatFormat(5, 7, saturate=True), FloatFormat(5, 7, subnormals=False), FloatFormat(5, 7, specials="finite"),
    FloatFormat(4, 3, specials="finite"), FloatFormat(3, 2), FloatFormat(6, 9, bias=20),
    FloatFormat(2, 0, specials="finite"),
])
def test_encode_equals_golden_random_and_specials(fmt, rounding):
    x = random_float32(3000, seed=2)
    # values near the format's own range, where rounding is interesting
    g = torch.Generator().manual_seed(3)
    near = (torch.rand(3000, generator=g) * 2 - 1) * fmt.max * 1.1
    tiny = (torch.rand(1000, generator=g) * 2 - 1) * fmt.min_normal * 1.5
    x = torch.cat([x, near, tiny])
    if fmt.specials == "finite":
        x = x[~torch.isnan(x)]
    _golden_check(fmt, x, rounding)
    _golden_check(fmt, x.double(), rounding)
    _golden_check(fmt, x.half()[~torch.isnan(x.half())].float(), rounding)


def _ulp_points(fmt: FloatFormat, fractions):
    """Values at the given fractions of an ulp above codes across the whole range."""
    codes = torch.arange(0, fmt.max_code, max(1, fmt.max_code // 700))
    lo = fmt.decode(codes).double()
    hi = fmt.decode(codes + 1).double()
    return torch.cat([lo + f * (hi - lo) for f in fractions])


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("name", ["e5m7", "e5m2", "e4m3"])
def test_ties_and_near_ties(name, rounding):
    fmt = FloatFormat.named(name)
    x = _ulp_points(fmt, [0.5, 0.49, 0.51])
    x = torch.cat([x, -x])
    _golden_check(fmt, x, rounding)
    _golden_check(fmt, x.float(), rounding)  # the same points as float32 inputs (near ties stay near)
    half = _ulp_points(fmt, [0.5]).float()
    assert torch.equal(half.double(), _ulp_points(fmt, [0.5]))  # exact ties in float32
    q = fmt.decode(fmt.encode(half, rounding))
    below = fmt.decode(fmt.encode(half, "toward_zero"))
    if rounding == "nearest_even":  # ties go to the even code
        codes = fmt.encode(q).long()
        assert bool(((codes & 1) == 0).all())
    else:
        assert same_bits(q, below)


def test_fp13_tie_at_overflow_rounds_to_infinity():
    x = torch.tensor([65407.99, 65408.0, 65408.01, -65408.0, 1e6])
    q = FP13.quantize(x)
    assert q.tolist() == [65280.0, math.inf, math.inf, -math.inf, math.inf]
    assert FP13.quantize(x, "toward_zero").tolist() == [65280.0, 65280.0, 65280.0, -65280.0, 65280.0]
    assert FloatFormat(5, 7, saturate=True).quantize(x).tolist()[:3] == [65280.0] * 3
    assert FloatFormat(5, 7, specials="finite").max == 130560.0


def test_negative_zero_and_specials_survive():
    x = torch.tensor([-0.0, 0.0, -1e-30, float("inf"), -float("inf"), float("nan")])
    q = FP13.quantize(x)
    assert same_bits(q, torch.tensor([-0.0, 0.0, -0.0, float("inf"), -float("inf"), float("nan")]))
    q = FloatFormat.named("e4m3").quantize(x)  # no infinities: saturate, like torch.float8_e4m3fn
    assert same_bits(q, torch.tensor([-0.0, 0.0, -0.0, 448.0, -448.0, float("nan")]))


def test_finite_format_nan_raises_or_maps_to_zero():
    x = torch.tensor([1.0, float("nan")])
    with pytest.raises(ValueError, match="nan='zero'"):
        FloatFormat(5, 7, specials="finite").encode(x)
    assert FloatFormat(5, 7, specials="finite", nan="zero").quantize(x).tolist() == [1.0, 0.0]


def _stochastic_neighbours(fmt, x):
    down = fmt.decode(fmt.encode(x, "toward_zero"))
    up = down + torch.sign(x) * (fmt.decode(fmt.encode(x, "toward_zero") + 1).abs() - down.abs())
    return down, up


def test_stochastic_rounding_reproducible_and_unbiased():
    g = torch.Generator().manual_seed(5)
    x = (torch.rand(2000, generator=g) * 2 - 1) * 100
    a = FP13.quantize(x, "stochastic", torch.Generator().manual_seed(7))
    b = FP13.quantize(x, "stochastic", torch.Generator().manual_seed(7))
    c = FP13.quantize(x, "stochastic", torch.Generator().manual_seed(8))
    assert same_bits(a, b) and not same_bits(a, c)
    down, up = _stochastic_neighbours(FP13, x)
    assert bool(((a == down) | (a == up)).all())
    # unbiased: averaged over many draws the result approaches x; the mean error of n draws has
    # standard deviation <= ulp / (2 sqrt(n)), so 6 of those is a bound a correct rounder meets
    n = 400
    reps = x.repeat(n)
    q = FP13.quantize(reps, "stochastic", torch.Generator().manual_seed(9)).reshape(n, -1)
    ulp = (up - down).abs()
    mean_err = (q.double().mean(0) - x.double()).abs()
    assert bool((mean_err <= 6 * ulp / (2 * n ** 0.5) + 1e-12).all())
    # while toward_zero is biased by about half an ulp on the same data
    bias = (down.double() - x.double()).abs().mean() / ulp.double().mean()
    assert bias > 0.3


def test_stochastic_rounding_matches_golden_with_same_draws():
    """Round up iff the dropped fraction plus the uniform draw reaches one ulp (golden model)."""
    x = torch.tensor([1.0 + 2 ** -9, 1.0 + 3 * 2 ** -10, -2.0 ** -20 * 1.3, 300.7], dtype=torch.float32)
    got = FP13.quantize(x, "stochastic", torch.Generator().manual_seed(11))
    # replay the draws: 62-bit integers of the generator's stream, u = d / 2^62
    draws = stochastic_draws(x.shape, torch.Generator().manual_seed(11))
    for xi, d, gi in zip(x.tolist(), draws.tolist(), got.tolist()):
        u = Fraction(d, 2 ** 62)
        assert golden.to_float(golden.quantize(FP13, xi, "stochastic", u)) == gi


def test_stochastic_rounding_far_below_the_quantum_matches_golden_with_same_draws():
    """Issue 14 defect 11: float64 inputs more than 62 bits below the kept LSB. The draw is 62 bits
    (u = d / 2^62), so golden rounds up iff the dropped fraction plus u reaches one: never for
    1e-300, and at the rate x / quantum for values just past 62 bits."""
    q = FP13.quantize(torch.full((10 ** 6,), 1e-300, dtype=torch.float64), "stochastic",
                      torch.Generator().manual_seed(1))
    assert int((q != 0).sum()) == 0
    quantum = 2.0 ** (FP13.emin - FP13.man_bits)
    x = torch.tensor([1e-300, -1e-300, quantum * 2.0 ** -30 * 1.75, quantum * 2.0 ** -12 * 1.3,
                      quantum * 2.0 ** -9 * (1 + 2 ** -52)], dtype=torch.float64).repeat(2000)
    got = FP13.quantize(x, "stochastic", torch.Generator().manual_seed(4))
    draws = stochastic_draws(x.shape, torch.Generator().manual_seed(4))
    for xi, d, gi in zip(x.tolist(), draws.tolist(), got.tolist()):
        u = Fraction(d, 2 ** 62)
        assert golden.to_float(golden.quantize(FP13, xi, "stochastic", u)) == gi
    tiny = torch.full((10 ** 5,), quantum * 2.0 ** -11 * 1.5, dtype=torch.float64)  # 63 bits below: p = 1.5 * 2^-11
    ups = int((FP13.quantize(tiny, "stochastic", torch.Generator().manual_seed(2)) != 0).sum())
    assert 40 <= ups <= 110  # 73 expected (the biased draw gave twice that)


def _midpoints(fmt: FloatFormat) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(midpoint, lower code, upper code) of every pair of adjacent positive finite values (float64)."""
    codes = torch.arange(0, fmt.max_code + 1)
    values = fmt.decode(codes).double()
    if not fmt.subnormals:  # subnormal codes decode to 0: the set is {0} and the normals
        codes = torch.cat([codes[:1], codes[2 ** fmt.man_bits:]])
        values = fmt.decode(codes).double()
    return (values[:-1] + values[1:]) / 2, codes[:-1], codes[1:]


@pytest.mark.parametrize("fmt", [FloatFormat(2, 0, specials="finite"), FloatFormat(3, 0, specials="finite"),
                                 FloatFormat(4, 0, specials="finite", bias=3), FloatFormat(3, 2), FP13],
                         ids=repr)
def test_ties_go_to_the_even_code(fmt):
    """Issue 14 defect 17: a value halfway between two neighbours rounds to the one with the even
    code (with man_bits = 0 the even exponent field: e2m0 rounds 3 to 2, as P3109 and gfloat do),
    in the encoder, the speed route and the golden model; float32 and float64 inputs."""
    mid, lo, hi = _midpoints(fmt)
    expected = torch.where(lo % 2 == 0, lo, hi)
    for x in (mid, mid.float()):
        assert torch.equal(fmt.encode(x).long(), expected)
        assert same_bits(fmt.quantize(x), fmt.decode(expected))
        assert same_bits(fmt.quantize(-x), -fmt.decode(expected))
    assert [golden.to_float(golden.quantize(fmt, v)) for v in mid.tolist()] == fmt.decode(expected).tolist()
    if fmt == FloatFormat(2, 0, specials="finite"):
        assert fmt.quantize(torch.tensor([3.0, 1.5, 0.5])).tolist() == [2.0, 2.0, 0.0]


@pytest.mark.parametrize("fmt", [FloatFormat(5, 7, subnormals=False), FloatFormat(2, 3, bias=1, subnormals=False),
                                 FloatFormat(8, 7, subnormals=False), FloatFormat(3, 0, specials="finite",
                                                                                  subnormals=False)], ids=repr)
def test_without_subnormals_values_round_to_the_nearest_of_zero_and_the_normals(fmt):
    """Issue 14 defect 18, the rule: with ``subnormals=False`` the format's values are 0 and the
    normals, and x rounds to the nearest of them (below min_normal: 0 or min_normal, a tie to 0);
    toward_zero gives 0 there. Checked against that rule directly and against golden."""
    g = torch.Generator().manual_seed(18)
    tiny = fmt.min_normal
    x = torch.cat([torch.rand(20_000, generator=g, dtype=torch.float64) * 2 * tiny,
                   torch.tensor([tiny / 2, tiny / 2 * (1 + 2.0 ** -40), tiny / 2 * (1 - 2.0 ** -40), tiny, 0.0])])
    x = torch.cat([x, -x])
    for xs in (x, x.float()):
        got = fmt.quantize(xs)
        small = xs.double().abs() < tiny
        nearest = torch.copysign(torch.where(xs.double().abs() > tiny / 2, tiny, 0.0), xs.double())
        assert same_bits(got[small], nearest[small].float())
        assert same_bits(got, fmt.decode(fmt.encode(xs)))
        assert same_bits(fmt.quantize(xs[small], "toward_zero"), xs[small].float() * 0)  # signed zeros
    mid, lo, hi = _midpoints(fmt)
    assert int(fmt.encode(mid[:1])) == 0  # the tie between 0 and min_normal goes to 0
    sample = torch.cat([x[::97], -x[::101]])
    for rounding in ("nearest_even", "toward_zero"):
        assert [golden.to_float(golden.quantize(fmt, v, rounding)) for v in sample.tolist()] == \
            fmt.quantize(sample, rounding).tolist()


@pytest.mark.parametrize("field", ["subnormals", "saturate"])
@pytest.mark.parametrize("value", ["no", "false", 0, 1, None])
def test_bool_fields_refuse_anything_but_a_bool(field, value):
    """Issue 14 defect 14: FloatFormat(5, 7, subnormals="no") and saturate="false" were accepted as truthy."""
    with pytest.raises(TypeError, match=rf"{field} must be a bool \(True or False\), got {type(value).__name__}"):
        FloatFormat(5, 7, **{field: value})


@pytest.mark.parametrize("bad", [torch.arange(4), torch.ones(3, dtype=torch.bool),
                                 torch.ones(2, dtype=torch.complex64)])
def test_bad_input_types(bad):
    with pytest.raises(TypeError, match="x must be a real floating-point tensor"):
        FP13.encode(bad)
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        FP13.decode(torch.ones(2))


def test_bad_arguments_name_what_is_allowed():
    with pytest.raises(ValueError, match="rounding='nearest'.*nearest_even"):
        FP13.quantize(torch.ones(2), rounding="nearest")
    with pytest.raises(ValueError, match="generator"):
        FP13.quantize(torch.ones(2), rounding="stochastic")
    with pytest.raises(ValueError, match="exp_bits=1"):
        FloatFormat(1, 3)
    with pytest.raises(ValueError, match="man_bits=-1"):
        FloatFormat(5, -1)
    with pytest.raises(ValueError, match="33 bits.*at most 32"):
        FloatFormat(9, 23)
    with pytest.raises(ValueError, match="man_bits=24 is not allowed: at most 23"):
        FloatFormat(7, 24)
    with pytest.raises(ValueError, match="specials='x'"):
        FloatFormat(5, 7, specials="x")
    with pytest.raises(ValueError, match="bias=200"):
        FloatFormat(8, 7, bias=200)
    with pytest.raises(TypeError, match="exp_bits must be an int"):
        FloatFormat(5.0, 7)
    with pytest.raises(ValueError, match="format name 'fp13x' is unknown"):
        FloatFormat.named("fp13x")


def test_fp13_fast_path_equals_integer_path():
    """The bfloat16 route (with its subnormal blend) against the integer encoder, on finite data
    inside FP13's range: normal values, subnormals, exact subnormal ties, zeros and -0."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(200_000, generator=g) * torch.exp(torch.randn(200_000, generator=g) * 4)
    x = x.clamp(-FP13.max, FP13.max)
    ties = (torch.arange(-300, 300) + 0.5) * 2.0 ** -21                 # halfway between subnormals
    near = torch.cat([ties * (1 + 2.0 ** -20), ties * (1 - 2.0 ** -20)])
    edge = torch.tensor([0.0, -0.0, 2.0 ** -14, -(2.0 ** -14), 2.0 ** -14 - 2.0 ** -22, 2.0 ** -22, -(2.0 ** -22),
                         2.0 ** -23, 1e-30, -1e-30, FP13.max, -FP13.max])
    x = torch.cat([x, ties, near, edge])
    assert same_bits(FP13.quantize(x), FP13.decode(FP13.encode(x)))
    assert same_bits(FP13.quantize(x[:1000]), FP13.decode(FP13.encode(x[:1000])))  # no subnormals: bf16 only


@pytest.mark.parametrize("fmt", [FloatFormat(5, 7, saturate=True), FloatFormat(4, 3, specials="finite"),
                                 FloatFormat(3, 2), FloatFormat(6, 9, bias=20), FloatFormat(4, 11),
                                 FloatFormat(5, 2, specials="fn"), FloatFormat(2, 0, specials="finite")])
def test_native_rounding_path_equals_integer_path_for_other_formats(fmt):
    g = torch.Generator().manual_seed(fmt.bits)
    x = torch.randn(50_000, generator=g) * torch.exp(torch.randn(50_000, generator=g) * 3)
    x = torch.cat([x.clamp(-fmt.max, fmt.max), _ulp_points(fmt, [0.5]).float(), torch.tensor([0.0, -0.0, -1e-30])])
    assert same_bits(fmt.quantize(x), fmt.decode(fmt.encode(x)))


# -- the cast route of a narrower format (FP13 through bfloat16) ---------------------------------
NARROW = [FP13, FloatFormat(6, 7), FloatFormat(5, 7, saturate=True), FloatFormat(5, 7, subnormals=False),
          FloatFormat(8, 7, saturate=True), FloatFormat(7, 7, specials="finite"),
          FloatFormat(4, 10), FloatFormat(3, 2), FloatFormat(3, 3, specials="fn")]


def _every_high_half() -> torch.Tensor:
    """Every float32 whose high 16 bits take each of their 65,536 patterns (all signs, exponents,
    NaN and inf), with low 16 bits at ties, next to ties and at the ends: where a cast's rounding
    is decided."""
    high = torch.arange(2 ** 16, dtype=torch.int64) << 16
    low = torch.tensor([0x0000, 0x0001, 0x7FFF, 0x8000, 0x8001, 0xFFFF, 0x1234, 0x0FFF, 0x1000, 0x1001])
    return ((high[:, None] | low[None, :]).flatten().to(torch.int32)).view(torch.float32)


@pytest.mark.parametrize("fmt", NARROW, ids=repr)
def test_cast_route_equals_the_encoder_on_every_high_half(fmt):
    """The claim behind the cast route, over every binade: every float32 high half (all signs,
    exponents, NaN and inf) at and next to ties, through ``_fastcast.quantize``, is the encoder's."""
    x = _every_high_half()
    if fmt.specials == "finite":
        x = x[~x.isnan()]
    y = _fastcast.quantize(fmt, x)
    assert y is not None and y.dtype != torch.float32  # the cast route ran
    assert same_bits(y.float(), fmt.decode(fmt.encode(x)))


@pytest.mark.parametrize("fmt", NARROW, ids=repr)
def test_cast_route_equals_the_encoder_on_every_pattern_of_its_dtype(fmt):
    """Every bit pattern of the dtype the route casts through (so every key of its one-pass check:
    overflow, zeros, small magnitudes, kept values), as float32 input, is the encoder's."""
    y = _fastcast.quantize(fmt, torch.ones(1))
    bits = torch.int16 if y.dtype.itemsize == 2 else torch.int8
    every = torch.arange(-(2 ** (8 * y.dtype.itemsize - 1)), 2 ** (8 * y.dtype.itemsize - 1), dtype=torch.int32)
    x = every.to(bits).view(y.dtype).float()
    if fmt.specials == "finite":
        x = x[~x.isnan()]
    assert same_bits(_fastcast.quantize(fmt, x).float(), fmt.decode(fmt.encode(x)))


@pytest.mark.parametrize("fmt", NARROW, ids=repr)
@pytest.mark.parametrize("zeros", [0.0, 0.5], ids=["few-zeros", "half-zeros"])
@pytest.mark.parametrize("n", [256 * 400, 256 * 400 + 1], ids=["blocks", "odd-length"])
def test_cast_route_mends_values_below_min_normal(fmt, zeros, n):
    """Whole tensors through the cast route: a few values in fmt's subnormal range (and at its
    ties), many zeros or none, signed zeros; its result equals the integer encoder."""
    g = torch.Generator().manual_seed(n)
    lo, hi = math.log(fmt.min_normal * 2), math.log(fmt.max / 4)  # normal values, spread over the range
    x = torch.exp(torch.rand(n, generator=g, dtype=torch.float64) * (hi - lo) + lo).float()
    x = x * (torch.randint(0, 2, (n,), generator=g) * 2 - 1)
    x[torch.rand(n, generator=g) < zeros] = 0.0
    x[::7] = -0.0
    pick = torch.randint(0, n, (40,), generator=g)
    codes = torch.arange(0, 2 ** fmt.man_bits + 2)  # every subnormal code and the first normals
    below, above = fmt.decode(codes).double(), fmt.decode(codes + 1).double()
    tiny = torch.cat([below + f * (above - below) for f in (0.5, 0.49, 0.51, 0.0)]).float()
    tiny = torch.cat([tiny, -tiny])
    x[pick] = tiny[torch.randint(0, len(tiny), (40,), generator=g)]
    y = _fastcast.quantize(fmt, x)
    assert y is not None
    assert same_bits(y.float(), fmt.decode(fmt.encode(x)))


@pytest.mark.parametrize("fmt", NARROW, ids=repr)
@pytest.mark.parametrize("zeros", [False, True], ids=["few-flagged-blocks", "zeros-everywhere"])
def test_cast_route_sends_overflow_inf_and_nan_to_the_encoder(fmt, zeros):
    """Blocks with a magnitude above max, an infinity or NaN go through the encoder (saturating,
    overflowing to inf or keeping NaN as fmt says), next to a block of small values that is
    mended; with and without zeros in every block. All equal the integer encoder."""
    threshold = float(fmt.decode(torch.tensor([fmt.max_code])).double() * (1 + 2.0 ** -(fmt.man_bits + 1)))
    small = torch.tensor([1.0, -1.5, fmt.min_normal, -fmt.min_normal * (1 - 2.0 ** -10), fmt.max, -fmt.max,
                          0.0, -0.0, 1e-41, -1e-30, fmt.min_normal / 3])
    nan = [] if fmt.specials == "finite" else [float("nan")]
    payloads = [] if fmt.specials == "finite" else \
        torch.tensor([0x7FFFFFFF, -1], dtype=torch.int32).view(torch.float32).tolist()
    extras = [(), (threshold,), (-threshold,), (float(torch.nextafter(torch.tensor(threshold), torch.tensor(0.0))),),
              (-1e30, 2.0), (float("inf"),), (float("-inf"),), tuple(nan), tuple(payloads)]  # NaNs, largest payload
    normal = torch.linspace(fmt.min_normal, fmt.max, 256 * 40)
    if zeros:
        normal[::3] = 0.0
    for extra in extras:
        x = normal.clone()
        x[1000:1000 + len(small)] = small  # block 3
        x[5000:5000 + len(extra)] = torch.tensor(extra)  # block 19
        assert same_bits(_fastcast.quantize(fmt, x).float(), fmt.decode(fmt.encode(x))), extra


@pytest.mark.parametrize("fmt", NARROW, ids=repr)
def test_cast_route_searches_the_whole_key_where_small_values_are_everywhere(fmt, monkeypatch):
    """Weight-like data: small values in most blocks. The whole key is searched, so only the values
    below min_normal (the smallest and largest of them included), not the zeros, are rounded."""
    rounded = []
    real_round = _fastcast._round_small
    monkeypatch.setattr(_fastcast, "_round_small", lambda fmt, x: rounded.extend(x.tolist()) or real_round(fmt, x))
    g = torch.Generator().manual_seed(0)
    weights = torch.randn(256 * 64, generator=g) * fmt.min_normal * 64  # small values in most blocks
    weights[::5] = 0.0
    weights[7] = -0.0
    dtype = _fastcast.quantize(fmt, torch.ones(1)).dtype
    bits = torch.int16 if dtype.itemsize == 2 else torch.int8
    lo = int(torch.tensor(fmt.min_normal).to(dtype).view(bits))
    ends = torch.tensor([1, lo - 1], dtype=bits).view(dtype).float()  # smallest and largest magnitude below lo
    weights[[11, 12, 13, 14]] = torch.cat([ends, -ends])
    assert same_bits(_fastcast.quantize(fmt, weights).float(), fmt.decode(fmt.encode(weights)))
    assert 0.0 not in rounded and set(torch.cat([ends, -ends]).tolist()) <= set(rounded)


@pytest.mark.parametrize("fmt", [FloatFormat(4, 3), FloatFormat(3, 3), FloatFormat(2, 3, bias=1, subnormals=False),
                                 FloatFormat(4, 3, saturate=True), FloatFormat(3, 3, specials="fn")], ids=repr)
def test_three_mantissa_bit_formats_overflow_as_their_spec_says(fmt):
    """Issue 14 defect 2: formats with 3 mantissa bits must not borrow float8_e4m3fn's saturation
    at 448: infinities and overflow give what the encoder gives (inf for IEEE formats, max when
    saturating or without infinities; an infinity stays one in IEEE formats)."""
    x = torch.tensor([float("inf"), -float("inf"), 1e6, -1e6, fmt.max, -fmt.max, 1.0, float("nan")])
    top = [math.inf, -math.inf] if fmt.specials == "ieee" else [fmt.max, -fmt.max]
    expected = top + (top if fmt.specials == "ieee" and not fmt.saturate else [fmt.max, -fmt.max])
    got = fmt.quantize(x)
    assert same_bits(got, fmt.decode(fmt.encode(x)))
    assert got[:4].tolist() == expected and got[4:7].tolist() == [fmt.max, -fmt.max, 1.0] and got[7].isnan()


def test_cast_route_nan_in_a_format_without_nan_raises_as_the_encoder_does():
    fmt = FloatFormat(7, 7, specials="finite")
    with pytest.raises(ValueError, match="cannot store"):
        fmt.quantize(torch.tensor([1.0, float("nan")]))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64, torch.float32])
def test_quantize_dtype_holds_the_same_values(dtype):
    x = random_float32(100_000, seed=5)
    ref = FP13.quantize(x)
    q = FP13.quantize(x, dtype=dtype)
    assert q.dtype == dtype
    assert same_bits(q.float(), ref)


def test_quantize_dtype_that_cannot_hold_the_format_is_refused():
    with pytest.raises(ValueError, match=r"dtype=torch.float8_e5m2 cannot hold every value of e5m7; choose one of "
                                         r"\['torch.float32', 'torch.float64', 'torch.bfloat16', 'torch.float16'\]"):
        FP13.quantize(torch.ones(3), dtype=torch.float8_e5m2)
    with pytest.raises(ValueError, match="dtype=torch.bfloat16 cannot hold every value of e5m10"):
        FloatFormat.named("e5m10").quantize(torch.ones(3), dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="dtype=int8"):
        FP13.quantize(torch.ones(3), dtype="int8")


def test_cast_route_rounds_again_only_values_below_min_normal(monkeypatch):
    """Zeros (half of a ReLU's output) do not send their blocks to be searched: only the two
    blocks that hold small values are, and of their values only those two (and zeros) are
    rounded again."""
    flagged, rounded = [], []
    real_flagged, real_round = _fastcast._flagged, _fastcast._round_small
    monkeypatch.setattr(_fastcast, "_flagged", lambda *a: flagged.append(real_flagged(*a).tolist()) or real_flagged(*a))
    monkeypatch.setattr(_fastcast, "_round_small", lambda fmt, x: rounded.append(x.tolist()) or real_round(fmt, x))
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(256 * 400, generator=g).abs() + 0.1) * (torch.rand(256 * 400, generator=g) < 0.5)  # half zeros
    x[256 * 7 + 5] = 2.0 ** -20
    x[256 * 300] = -(2.0 ** -16)
    assert same_bits(FP13.quantize(x, dtype=torch.bfloat16).float(), FP13.decode(FP13.encode(x)))  # the cast route
    assert len(flagged[0]) > 300 and flagged[1:] == [[7, 300]]  # blocks with zeros, then past them
    assert len(rounded) == 1 and [v for v in rounded[0] if v != 0] == [2.0 ** -20, -(2.0 ** -16)]


def test_workspace_is_reused_per_thread_and_bounded():
    """The cast route's key buffer: one per thread, reused across shapes and dtypes, never kept
    above its bound (16 MiB); results stay the encoder's whatever buffer served them."""
    import threading

    def quantize(fmt: FloatFormat, n: int) -> int:
        x = random_float32(n, seed=n) if n < 2 ** 20 else torch.full((n,), 1.5)
        y = _fastcast.quantize(fmt, x).float()
        assert same_bits(y, fmt.decode(fmt.encode(x))) if n < 2 ** 20 else bool((y == 1.5).all())
        return _fastcast._SCRATCH.buffer.data_ptr()

    first = quantize(FP13, 256 * 40)
    assert quantize(FP13, 256 * 40) == first
    assert quantize(FloatFormat(3, 2), 256 * 30) == first      # another shape and dtype (int8 keys)
    assert quantize(FP13, 2 ** 23 + 2 ** 20) == first          # 18 MiB of keys: a buffer that is not kept
    other = []
    thread = threading.Thread(target=lambda: other.append(quantize(FP13, 256 * 40)))
    thread.start()
    thread.join()
    assert other[0] != first


@pytest.mark.parametrize("first_inference", [True, False], ids=["inference-first", "inference-second"])
def test_quantize_in_and_out_of_inference_mode_share_the_workspace(first_inference):
    """The workspace made in one mode serves the other (an inference tensor cannot be written
    outside inference mode); a fresh thread starts with none."""
    import contextlib
    import threading
    x = random_float32(256 * 50, seed=9)
    ref = FP13.decode(FP13.encode(x))
    results, errors = [], []

    def run():
        try:
            for inference in (first_inference, not first_inference):
                with torch.inference_mode() if inference else contextlib.nullcontext():
                    results.append(FP13.quantize(x, dtype=torch.bfloat16).float())
        except Exception as error:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(error)
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert not errors, errors
    assert len(results) == 2 and all(same_bits(r, ref) for r in results)
