"""Formats beyond 16 bits (tf32, fp24, fp32), unsigned formats and the OCP MX scale format e8m0:
decode and every rounding against the scalar golden model, e8m0 against ``torch.float8_e8m0fnu``,
and against gfloat where it has the format."""

import math

import numpy as np
import pytest
import torch

from conftest import random_float32, same_bits
from vitaccel.arith import FloatFormat, golden
from vitaccel.arith.formats import ROUNDINGS, stochastic_draws
from vitaccel.errors import UserError

DETERMINISTIC = [r for r in ROUNDINGS if r != "stochastic"]
WIDE = ["tf32", "fp24", "fp32"]
NEW = WIDE + ["e8m0", "ue4m3"]


def golden_tensor(values) -> torch.Tensor:
    return torch.tensor([golden.to_float(v) for v in values], dtype=torch.float64).float()


def _golden_quantize(fmt: FloatFormat, x: torch.Tensor, rounding: str) -> torch.Tensor:
    return golden_tensor(golden.quantize(fmt, v, rounding) for v in x.double().tolist())


def _codes_of_every_exponent(fmt: FloatFormat, per_field: int = 24, seed: int = 0) -> torch.Tensor:
    """Every exponent field with mantissas 0, 1, 2, the top three and random ones, both signs."""
    g = torch.Generator().manual_seed(seed)
    m = fmt.man_bits
    top = 2 ** m
    fixed = torch.tensor(sorted({0, 1 % top, 2 % top, top - 3 if top > 3 else 0, top - 2 if top > 2 else 0, top - 1}))
    rand = torch.randint(0, top, (2 ** fmt.exp_bits, per_field), generator=g)
    fields = torch.arange(2 ** fmt.exp_bits).unsqueeze(1)
    mags = torch.cat([(fields << m) + fixed, (fields << m) + rand], dim=1).flatten()
    return torch.cat([mags, mags | (1 << (fmt.exp_bits + m))]) if fmt.signed else mags


def _crafted(fmt: FloatFormat, seed: int) -> torch.Tensor:
    """Every exponent field's codes (a few mantissas each), the ties halfway between neighbouring
    codes and the float64 values just beside them, values near max and below the smallest normal."""
    codes = _codes_of_every_exponent(fmt, per_field=1, seed=seed)
    if fmt.signed:
        codes = codes[codes < 2 ** (fmt.bits - 1)]  # both signs come below
    codes = codes[(codes & (2 ** (fmt.exp_bits + fmt.man_bits) - 1)) < fmt.max_code]
    lo, hi = fmt.decode(codes).double(), fmt.decode(codes + 1).double()
    mids = (lo + hi) / 2
    near = torch.cat([mids, mids * (1 + 2.0 ** -50), mids * (1 - 2.0 ** -50), lo, hi])
    g = torch.Generator().manual_seed(seed)
    ulp = 2.0 ** -fmt.man_bits
    edge = torch.tensor([fmt.max, fmt.max * (1 + ulp / 2), fmt.max * (1 + ulp / 4),
                         fmt.min_normal, fmt.min_normal / 2, fmt.min_subnormal / 2, fmt.min_subnormal * 0.75,
                         0.0, -0.0, math.inf, -math.inf, math.nan], dtype=torch.float64)
    tiny = torch.rand(200, generator=g, dtype=torch.float64) * fmt.min_normal * 1.5
    return torch.cat([near, -near, edge, -edge, tiny, -tiny])


@pytest.mark.parametrize("name", WIDE)
def test_wide_decode_of_every_exponent_field_equals_golden(name):
    fmt = FloatFormat.named(name)
    codes = _codes_of_every_exponent(fmt)
    got = fmt.decode(codes.to(torch.int32))
    assert got.dtype == torch.float32
    assert same_bits(got, golden_tensor(golden.decode(fmt, c) for c in codes.tolist()))
    assert fmt.encode(torch.ones(3)).dtype == torch.int32


@pytest.mark.parametrize("name", ["e8m0", "ue4m3"])
def test_narrow_new_formats_decode_every_code_equals_golden(name):
    fmt = FloatFormat.named(name)
    codes = torch.arange(2 ** fmt.bits)
    assert same_bits(fmt.decode(codes), golden_tensor(golden.decode(fmt, c) for c in range(2 ** fmt.bits)))
    assert fmt.max == float(golden.format_max(fmt))


def test_fp32_is_float32_and_the_float64_cast():
    fp32 = FloatFormat.named("fp32")
    x = random_float32(10 ** 5, seed=1)
    codes, nan = fp32.encode(x), x.isnan()
    assert torch.equal(codes[~nan], x.view(torch.int32)[~nan]) and bool(((codes[nan] & 0x7FFFFFFF) == 0x7FC00000).all())
    assert same_bits(fp32.quantize(x), x)  # (NaN payloads become the one NaN code)
    codes = torch.randint(-2 ** 31, 2 ** 31, (10 ** 5,), generator=torch.Generator().manual_seed(2)).to(torch.int32)
    assert same_bits(fp32.decode(codes), codes.view(torch.float32))
    x64 = torch.cat([_crafted(fp32, seed=3), x.double() * (1 + torch.rand(x.shape, dtype=torch.float64) * 2 ** -20)])
    assert same_bits(fp32.quantize(x64), x64.float())  # float64 in: x.float(), ties and subnormals included


@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("name", NEW)
def test_new_formats_round_crafted_values_as_golden(name, rounding):
    """Ties, values beside them (float64 inputs), max, overflow, subnormals, specials."""
    fmt = FloatFormat.named(name)
    x = _crafted(fmt, seed=4)
    if not fmt.signed:
        x = x[~((x < 0) | x.isnan())] if fmt.nan_code is None else x
    assert same_bits(fmt.quantize(x, rounding), _golden_quantize(fmt, x, rounding))
    x32 = x[::3].float()  # float32 inputs (random ones over all binades: the test below)
    assert same_bits(fmt.quantize(x32, rounding), _golden_quantize(fmt, x32, rounding))


@pytest.mark.parametrize("size", [5000, pytest.param(10 ** 5, marks=pytest.mark.slow)])
@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("name", NEW)
def test_new_formats_round_random_values_over_all_binades_as_golden(name, rounding, size):
    fmt = FloatFormat.named(name)
    x = random_float32(size, seed=5)
    assert same_bits(fmt.quantize(x, rounding), _golden_quantize(fmt, x, rounding))
    x64 = x.double() * (1 + torch.rand(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(6)))
    assert same_bits(fmt.quantize(x64, rounding), _golden_quantize(fmt, x64, rounding))


@pytest.mark.parametrize("n", [4, 13])
@pytest.mark.parametrize("name", ["tf32", "e8m0"])
def test_new_formats_stochastic_equals_golden_with_the_same_draws(name, n):
    from fractions import Fraction
    fmt = FloatFormat.named(name)
    x = torch.cat([random_float32(3000, seed=7), _crafted(fmt, seed=8)[:3000].float()])
    bits = n
    got = fmt.quantize(x, "stochastic", torch.Generator().manual_seed(9), stochastic_bits=n)
    draws = stochastic_draws(x.shape, torch.Generator().manual_seed(9), bits)
    xs = x.double() if fmt.specials == "e8m0" else x  # e8m0 encodes from float64: same draws either way
    expected = golden_tensor(golden.quantize(fmt, v, "stochastic", Fraction(r, 2 ** bits), stochastic_bits=n)
                             for v, r in zip(xs.tolist(), draws.tolist()))
    assert same_bits(got, expected)


# -- e8m0 against torch.float8_e8m0fnu -------------------------------------------------------
def test_e8m0_decode_equals_torch_on_every_code():
    fmt = FloatFormat.named("e8m0")
    codes = torch.arange(256)
    assert same_bits(fmt.decode(codes), codes.to(torch.uint8).view(torch.float8_e8m0fnu).float())
    assert fmt.bits == 8 and fmt.max == 2.0 ** 127 and fmt.min_normal == 2.0 ** -127 and fmt.nan_code == 0xFF


def test_e8m0_ties_away_equals_torch_on_non_negative_normal_float32():
    """torch 2.14 rounds float32 -> e8m0 by the guard bit of the mantissa: ties (1.5 * 2^e) up, i.e.
    ``ties_away`` on non-negative normal float32 input, overflow to NaN. It differs from the
    correctly rounded conversion on float32 subnormals above 2^-127 (it rounds those all up to
    2^-126) and on negative input (it drops the sign; vitaccel gives NaN)."""
    fmt = FloatFormat.named("e8m0")
    x = random_float32(10 ** 6, seed=10)
    x = x[(x > 0) | (x == 0) & ~torch.signbit(x) | x.isnan() | x.isinf()]
    x = x[~((x > 0) & (x < 2.0 ** -126))]  # float32 subnormals: torch rounds them differently (below)
    mids = (2.0 ** torch.arange(-126, 128, dtype=torch.float64) * 1.5).float()
    x = torch.cat([x, mids, torch.nextafter(mids, torch.zeros(1)), torch.nextafter(mids, torch.full((1,), math.inf))])
    assert torch.equal(fmt.encode(x, "ties_away").to(torch.uint8), x.to(torch.float8_e8m0fnu).view(torch.uint8))
    sub = torch.tensor([2.0 ** -127 * 1.1, 2.0 ** -127, 2.0 ** -130, -2.0])
    assert fmt.encode(sub, "ties_away").tolist() == [0, 0, 0, 0xFF]
    assert sub.to(torch.float8_e8m0fnu).view(torch.uint8).tolist() == [1, 0, 0, 128]  # the documented differences


def test_e8m0_nearest_even_ties_to_the_even_field_and_no_zero():
    fmt = FloatFormat.named("e8m0")
    x = torch.tensor([1.5, 3.0, 6.0, 0.0, -0.0, 1e-45, 1.5 * 2.0 ** 127, 2.0 ** 128 * 0.99, math.inf, math.nan, -1.0])
    assert fmt.encode(x).tolist() == [128, 128, 130, 0, 0, 0, 254, 255, 255, 255, 255]
    assert fmt.encode(x, "toward_zero").tolist()[:8] == [127, 128, 129, 0, 0, 0, 254, 254]
    sat = FloatFormat(8, 0, bias=127, specials="e8m0", signed=False, saturate=True)
    assert sat.encode(x).tolist()[6:10] == [254, 254, 254, 255]


def test_e8m0_equals_gfloat_on_positive_values_it_holds():
    """gfloat's ocp_e8m0 decodes every code as vitaccel does; its rounding treats e8m0 like a
    format with subnormals and a sign (it returns -2 for -2 and values below 2^-127), so the
    encoders are compared on positive values from 2^-127 up."""
    gf = pytest.importorskip("gfloat")
    f = pytest.importorskip("gfloat.formats")
    fmt = FloatFormat.named("e8m0")
    fi = f.format_info_ocp_e8m0
    theirs = torch.tensor([gf.decode_float(fi, c).fval for c in range(256)], dtype=torch.float64).float()
    assert same_bits(fmt.decode(torch.arange(256)), theirs)
    x = random_float32(10 ** 5, seed=11).double()
    x = x[(x >= 2.0 ** -127) & (x < 2.0 ** 127)]
    for rounding, mode in (("nearest_even", "TiesToEven"), ("ties_away", "TiesToAway"), ("toward_zero", "TowardZero")):
        expected = gf.round_ndarray(fi, x.numpy(), getattr(gf.RoundMode, mode), True)
        assert same_bits(fmt.quantize(x, rounding), torch.from_numpy(np.asarray(expected)).float()), rounding


@pytest.mark.parametrize("size", [10 ** 5, pytest.param(10 ** 6, marks=pytest.mark.slow)])
@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("name", WIDE)
def test_wide_formats_equal_gfloat(name, rounding, size):
    """gfloat has no tf32 or fp24; its FormatInfo describes them (and binary32) as IEEE formats."""
    gf = pytest.importorskip("gfloat")
    fmt = FloatFormat.named(name)
    fi = gf.FormatInfo(name, fmt.bits, fmt.man_bits + 1, bias=fmt.bias, is_signed=True, domain=gf.Domain.Extended,
                       has_nz=True, num_high_nans=2 ** fmt.man_bits - 1, has_subnormals=True, is_twos_complement=False)
    x = torch.cat([random_float32(size, seed=12).double(), _crafted(fmt, seed=13)])
    x = torch.cat([x, x[:size // 2] * (1 + torch.rand(size // 2, dtype=torch.float64) * 2.0 ** -30)])  # float64 inputs
    modes = {"nearest_even": "TiesToEven", "ties_away": "TiesToAway", "toward_zero": "TowardZero",
             "up": "TowardPositive", "down": "TowardNegative"}
    expected = gf.round_ndarray(fi, x.numpy(), getattr(gf.RoundMode, modes[rounding]), False)
    assert same_bits(fmt.quantize(x, rounding), torch.from_numpy(np.asarray(expected)).float())


# -- unsigned formats -------------------------------------------------------------------------
def test_unsigned_negative_input_is_nan_or_an_error():
    ue4m3 = FloatFormat.named("ue4m3")
    assert ue4m3.bits == 7 and not ue4m3.negative_zero and ue4m3.max == 448.0
    x = torch.tensor([-1.0, -0.0, 0.0, 3.0, -math.inf, math.nan, 1000.0])
    assert ue4m3.encode(x).tolist() == [0x7F, 0, 0, 0x44, 0x7F, 0x7F, 0x7E]
    assert str(ue4m3.quantize(x).tolist()) == "[nan, 0.0, 0.0, 3.0, nan, nan, 448.0]"
    finite = FloatFormat(3, 2, specials="finite", signed=False)
    assert finite.quantize(torch.tensor([0.5, -0.0])).tolist() == [0.5, 0.0]
    with pytest.raises(UserError, match="negative values.*unsigned format e3m2.*no NaN"):
        finite.quantize(torch.tensor([0.5, -0.5]))


@pytest.mark.parametrize("rounding", DETERMINISTIC)
def test_unsigned_formats_equal_their_signed_twin_on_non_negative_values(rounding):
    x = random_float32(10 ** 6, seed=14).abs()
    for signed, unsigned in ((FloatFormat.named("e4m3"), FloatFormat.named("ue4m3")),
                             (FloatFormat(5, 10), FloatFormat(5, 10, signed=False))):
        assert same_bits(unsigned.quantize(x, rounding), signed.quantize(x, rounding))


def test_format_errors_name_the_argument_and_what_is_allowed():
    with pytest.raises(UserError, match="33 bits is not allowed: at most 32"):
        FloatFormat(9, 23)
    with pytest.raises(UserError, match="signed=False is not allowed with specials='fnuz'"):
        FloatFormat(4, 3, bias=8, specials="fnuz", signed=False)
    with pytest.raises(UserError, match="specials='e8m0' needs man_bits=0 and signed=False"):
        FloatFormat(8, 1, specials="e8m0", signed=False)
    with pytest.raises(TypeError, match="signed must be a bool"):
        FloatFormat(5, 7, signed="no")
    with pytest.raises(UserError, match="dtype=torch.bfloat16 cannot hold every value of tf32"):
        FloatFormat.named("tf32").quantize(torch.ones(2), dtype=torch.bfloat16)
