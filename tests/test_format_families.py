"""Format families beside the IEEE-style ones: fnuz (equal to PyTorch's float8_*fnuz dtypes bit for
bit) and IEEE P3109 binary8p1..p7 (against the golden model and, when installed, gfloat)."""

import math

import numpy as np
import pytest
import torch

from conftest import random_float32, same_bits
from vitaccel.arith import FloatFormat, golden
from vitaccel.arith.formats import ROUNDINGS, p3109
from vitaccel.errors import UserError

DETERMINISTIC = [r for r in ROUNDINGS if r != "stochastic"]
FNUZ = [("e4m3fnuz", torch.float8_e4m3fnuz), ("e5m2fnuz", torch.float8_e5m2fnuz)]
P3109 = [f"binary8p{p}" for p in range(1, 8)]


def golden_tensor(values) -> torch.Tensor:
    return torch.tensor([golden.to_float(v) for v in values], dtype=torch.float64).float()


def _near_range(fmt: FloatFormat, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    near = (torch.rand(1500, generator=g) * 2 - 1) * fmt.max * 1.1
    tiny = (torch.rand(500, generator=g) * 2 - 1) * fmt.min_normal * 1.5
    codes = torch.arange(2 ** fmt.bits)
    values = fmt.decode(codes).double()
    mids = (values[:-1] + values[1:]) / 2  # every tie between neighbouring codes
    mids = mids[torch.isfinite(mids)].float()
    return torch.cat([random_float32(1500, seed=seed), near, tiny, mids, values.float()])


@pytest.mark.parametrize("name,dtype", FNUZ)
def test_fnuz_decode_every_code_equals_torch_and_golden(name, dtype):
    fmt = FloatFormat.named(name)
    codes = torch.arange(256)
    theirs = codes.to(torch.uint8).view(dtype).float()
    assert same_bits(fmt.decode(codes), theirs)
    assert same_bits(fmt.decode(codes), golden_tensor(golden.decode(fmt, c) for c in range(256)))
    assert fmt.max == torch.finfo(dtype).max and not fmt.negative_zero


@pytest.mark.parametrize("name,dtype", FNUZ)
def test_fnuz_encode_equals_torch_bit_for_bit_on_a_million_values(name, dtype):
    """10^6 random float32 over all binades plus specials, every tie, every code: torch's cast (no
    -0, overflow, infinities and NaN to the one NaN code 0x80)."""
    fmt = FloatFormat.named(name)
    x = torch.cat([random_float32(10 ** 6, seed=3), _near_range(fmt, seed=4)])
    assert torch.equal(fmt.encode(x).to(torch.uint8), x.to(dtype).view(torch.uint8))
    assert same_bits(fmt.quantize(x), x.to(dtype).float())


@pytest.mark.parametrize("rounding", DETERMINISTIC)
@pytest.mark.parametrize("fmt", [FloatFormat.named(n) for n, _ in FNUZ] + [FloatFormat.named(n) for n in P3109]
                         + [FloatFormat(4, 3, bias=8, specials="fnuz", saturate=True)], ids=repr)
def test_family_roundings_equal_golden(fmt, rounding):
    x = _near_range(fmt, seed=5)
    got = fmt.quantize(x, rounding)
    assert same_bits(got, golden_tensor(golden.quantize(fmt, v, rounding) for v in x.double().tolist()))
    assert same_bits(fmt.decode(fmt.encode(x, rounding)), got)
    assert not bool((got == 0).logical_and(torch.signbit(got)).any()) or fmt.negative_zero  # no -0


def test_fnuz_overflow_nan_unless_truncated_or_saturating():
    fmt = FloatFormat.named("e4m3fnuz")
    x = torch.tensor([250.0, -250.0, math.inf, -1e-30])
    assert str(fmt.quantize(x).tolist()) == "[nan, nan, nan, 0.0]"
    assert fmt.quantize(x, "toward_zero").tolist()[:2] == [240.0, -240.0]
    assert str(fmt.quantize(x, "up").tolist()) == "[nan, -240.0, nan, 0.0]"
    assert FloatFormat(4, 3, bias=8, specials="fnuz", saturate=True).quantize(x).tolist() == [240.0, -240.0, 240.0, 0.0]


@pytest.mark.parametrize("name", P3109)
def test_p3109_decode_every_code_equals_golden_and_gfloat(name):
    fmt = FloatFormat.named(name)
    codes = torch.arange(256)
    ours = fmt.decode(codes)
    assert same_bits(ours, golden_tensor(golden.decode(fmt, c) for c in range(256)))
    assert math.isnan(ours[0x80]) and ours[0x7F] == math.inf and ours[0xFF] == -math.inf
    assert int(torch.isnan(ours).sum()) == 1 and int((ours == 0).sum()) == 1
    gf = pytest.importorskip("gfloat")
    fi = pytest.importorskip("gfloat.formats").format_info_p3109(8, int(name[-1]))
    theirs = torch.tensor([gf.decode_float(fi, c).fval for c in range(256)], dtype=torch.float64).float()
    assert same_bits(ours, theirs)


@pytest.mark.parametrize("rounding", DETERMINISTIC)
def test_p3109_roundings_equal_gfloat(rounding):
    gf = pytest.importorskip("gfloat")
    formats = pytest.importorskip("gfloat.formats")
    modes = {"nearest_even": "TiesToEven", "ties_away": "TiesToAway", "toward_zero": "TowardZero",
             "up": "TowardPositive", "down": "TowardNegative"}
    x = random_float32(20000, seed=6)
    for p in range(1, 8):
        fmt = p3109(p)
        xs = torch.cat([x, _near_range(fmt, seed=p)])
        expected = gf.round_ndarray(formats.format_info_p3109(8, p), xs.double().numpy(),
                                    getattr(gf.RoundMode, modes[rounding]), False)
        assert same_bits(fmt.quantize(xs, rounding), torch.from_numpy(np.asarray(expected)).float()), (p, rounding)


def test_family_argument_errors_name_what_is_allowed():
    for bad in (0, 8, 2.5):
        with pytest.raises(UserError, match=r"precision=.* choose an int from 1 to 7"):
            p3109(bad)
    with pytest.raises(UserError, match="specials='bogus' is not allowed.*fnuz.*p3109"):
        FloatFormat(4, 3, specials="bogus")
    with pytest.raises(UserError, match="exp_bits=1 is not allowed.*p3109"):
        FloatFormat(1, 6)


def test_one_call_quantize_takes_names_formats_and_numpy_arrays():
    from vitaccel.arith import quantize
    x = random_float32(5000, seed=8)
    fmt = FloatFormat.named("e4m3")
    assert same_bits(quantize(x, "e4m3", "ties_away"), fmt.quantize(x, "ties_away"))
    assert same_bits(quantize(x, fmt), fmt.quantize(x))
    for arr in (x.numpy(), x.double().numpy(), x.half().numpy()[::-1]):
        got = quantize(arr, "e5m2fnuz", "down")
        assert isinstance(got, np.ndarray) and got.dtype == np.float32
        expected = FloatFormat.named("e5m2fnuz").quantize(torch.from_numpy(arr.copy()), "down")
        assert same_bits(torch.from_numpy(got), expected)
    codes = fmt.encode(x.numpy())
    assert isinstance(codes, np.ndarray) and np.array_equal(codes, fmt.encode(x).numpy())
    assert same_bits(torch.from_numpy(fmt.decode(codes)), fmt.decode(fmt.encode(x)))
    with pytest.raises(UserError, match="format name 'e9m9' is unknown"):
        quantize(x, "e9m9")
    with pytest.raises(TypeError, match="real floating-point array"):
        quantize(np.arange(3), "e4m3")
    with pytest.raises(TypeError, match="fmt must be a format name, a FloatFormat or an MXFormat"):
        quantize(x, 8)


def test_one_call_quantize_takes_mx_names_and_formats():
    from vitaccel.arith import MXFormat, quantize
    x = random_float32(64 * 40, seed=9)[:64 * 40].reshape(64, 40)
    x = torch.where(x.isfinite(), x, 1.0) * 2.0 ** -100  # finite blocks (a NaN or inf gives a NaN scale)
    for name in ("mxfp8_e4m3", "mxfp4", "mxint8"):
        fmt = MXFormat.named(name)
        assert same_bits(quantize(x, name), fmt.quantize(x))
        assert same_bits(quantize(x, name, "toward_zero", axis=0, block=16),
                         MXFormat.named(name, 16).quantize(x, 0, "toward_zero"))
        got = quantize(x.numpy(), fmt)
        assert isinstance(got, np.ndarray) and same_bits(torch.from_numpy(got), fmt.quantize(x))
    with pytest.raises(UserError, match=r"format name 'mxfp9' is unknown; choose one of .*'e4m3'.*'mxfp8_e4m3'"):
        quantize(x, "mxfp9")
    with pytest.raises(UserError, match="mxfp4: MX formats take no generator"):
        quantize(x, "mxfp4", "stochastic", torch.Generator())
