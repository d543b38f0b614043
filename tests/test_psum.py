"""Partial-sum codecs: round trips, golden equality, error bounds, ratios, the in-place integer path."""

import math
from fractions import Fraction

import pytest
import torch

from vitaccel.arith import AcceleratorConfig, CodecSpec, FloatCodec, TruncCodec, golden

FLOAT_CODECS = [FloatCodec(4, 15, 24), FloatCodec(3, 5, 16, rounding="toward_zero"), FloatCodec(2, 3, 8),
                FloatCodec(3, 4, 16, bias=-2), FloatCodec(5, 8, 32, bias=20)]
TRUNC_CODECS = [TruncCodec(4, 24), TruncCodec(3, 12, "truncate"), TruncCodec(1, 6)]


def _random_integers(bits: int, n: int = 4000, seed: int = 0) -> torch.Tensor:
    """Integers spread over every magnitude of a signed ``bits``-bit value, plus its ends."""
    g = torch.Generator().manual_seed(seed)
    mag = torch.randint(0, 2 ** 62, (n,), generator=g) >> torch.randint(64 - bits, 64, (n,), generator=g)
    sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1
    ends = torch.tensor([0, 1, -1, 2 ** (bits - 1) - 1, -2 ** (bits - 1), 2 ** (bits - 2), -(2 ** (bits - 2)) - 1])
    return torch.cat([mag * sign, ends]).clamp(-2 ** (bits - 1), 2 ** (bits - 1) - 1).double()


@pytest.mark.parametrize("codec", FLOAT_CODECS, ids=str)
def test_float_codec_every_code_round_trips(codec):
    codes = torch.arange(2 ** codec.bits)
    values = codec.decode(codes)
    assert torch.equal(codec.apply(values), values)                 # representable values stay
    assert torch.equal(codec.decode(codec.encode(values)), values)
    assert float(values.abs().max()) == codec.max_value


@pytest.mark.parametrize("codec", FLOAT_CODECS, ids=str)
def test_float_codec_equals_golden_and_respects_its_bound(codec):
    x = _random_integers(codec.value_bits)
    if codec.bias > 0:                                              # a scale codec: reals
        x = x * 2.0 ** -(codec.bias + 3)
    x = torch.cat([x, (torch.arange(-40, 40) + 0.5) * 2.0 ** (3 - codec.bias)])   # ties at the quantum
    got = codec.apply(x)
    assert torch.equal(got, codec.decode(codec.encode(x)))
    assert got.tolist() == [float(golden.codec_apply(codec, Fraction(v))) for v in x.tolist()]
    err = (got - x).abs()
    bound = codec.error_bound(x)
    assert bool((err <= bound).all())
    assert float((err / bound.clamp(min=1e-300)).max()) >= 0.5    # the bound is not loose by orders


def test_float_codec_keeps_small_integers_and_saturates():
    codec = FloatCodec(4, 15, 24)
    small = torch.arange(-2 ** 15 + 1, 2 ** 15).double()
    assert torch.equal(codec.apply(small), small)
    assert codec.encode(torch.tensor([2.0 ** 15 - 1])).item() == 2 ** 15 - 1          # shift 0
    assert codec.apply(torch.tensor([2.0 ** 40, -(2.0 ** 40)])).tolist() == [codec.max_value, -codec.max_value]
    # nearest even at a tie: 2^15 + 1 has 16 bits, the dropped bit is a tie, 2^15 is even
    assert codec.apply(torch.tensor([2.0 ** 15 + 1, 2.0 ** 15 + 3])).tolist() == [2.0 ** 15, 2.0 ** 15 + 4]


@pytest.mark.parametrize("codec", FLOAT_CODECS[:4] + TRUNC_CODECS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_in_place_integer_path_equals_apply(codec, dtype):
    bits = min(codec.value_bits, 24) if dtype == torch.float32 else codec.value_bits
    x = _random_integers(bits, seed=1).to(dtype)
    x = x.clamp(-codec.max_value, codec.max_value)
    expected = codec.apply(x)
    got = codec.apply_(x.clone())
    assert got.dtype == dtype and torch.equal(got, expected)


@pytest.mark.parametrize("codec", TRUNC_CODECS, ids=str)
def test_trunc_codec_round_trips_equals_golden_and_bound(codec):
    d = codec.drop_bits
    representable = torch.arange(-2 ** (codec.bits - 1), 2 ** (codec.bits - 1)).double() * 2 ** d
    assert torch.equal(codec.apply(representable), representable)
    assert torch.equal(codec.decode(codec.encode(representable)), representable)
    x = _random_integers(codec.value_bits)
    got = codec.apply(x)
    assert torch.equal(got, codec.decode(codec.encode(x)))
    assert got.tolist() == [float(golden.codec_apply(codec, int(v))) for v in x.tolist()]
    assert bool(((got - x).abs() <= codec.error_bound(x)).all())
    assert int(codec.encode(x).max()) < 2 ** codec.bits             # codes fit the compressed width


def test_ratios_and_widths():
    assert (FloatCodec(4, 15, 24).bits, FloatCodec(4, 15, 24).ratio) == (20, 20 / 24)
    assert (TruncCodec(4, 24).bits, TruncCodec(4, 24).ratio) == (20, 20 / 24)
    assert FloatCodec(5, 8, 32, bias=20).ratio == 14 / 32


def test_scale_factors_keep_relative_precision():
    codec = FloatCodec(5, 8, 32, bias=28)           # 8 significant bits from 2^(8-1-28) up to 2^11
    g = torch.Generator().manual_seed(3)
    scales = torch.exp(torch.randn(1000, generator=g) * 2) * 0.01
    assert float(scales.min()) > 2.0 ** -21
    got = codec.apply(scales)
    assert got.dtype == torch.float32
    assert float(((got - scales).abs() / scales).max()) <= 2 ** -8


def test_negative_zero_is_stored_as_zero_and_bad_values_are_refused():
    for codec in (FLOAT_CODECS[0], TRUNC_CODECS[0]):
        out = codec.apply(torch.tensor([-0.0]))
        assert out.item() == 0 and math.copysign(1, out.item()) == 1
        with pytest.raises(ValueError, match="NaN or inf"):
            codec.apply(torch.tensor([1.0, math.nan]))
    with pytest.raises(ValueError, match="non-integer"):
        TRUNC_CODECS[0].apply(torch.tensor([0.5]))
    with pytest.raises(TypeError, match="codes must be an integer tensor"):
        FLOAT_CODECS[0].decode(torch.ones(2))


def test_codec_parameters_are_checked():
    with pytest.raises(ValueError, match="man_bits: value 30 is not allowed.*36 bits must be fewer than the 32 bits"):
        FloatCodec(5, 30, 32)
    with pytest.raises(ValueError, match="exp_bits: value 0 is not allowed; an integer from 1 to 8"):
        FloatCodec(0, 4, 16)
    with pytest.raises(ValueError, match="rounding: value 'nearest' is not allowed.*nearest_even"):
        FloatCodec(3, 4, 16, rounding="nearest")
    with pytest.raises(ValueError, match="drop_bits: value 24 is not allowed; an integer from 1 to 23"):
        TruncCodec(24, 24)
    with pytest.raises(ValueError, match="rounding: value 'nearest_even' is not allowed with kind 'trunc'"):
        CodecSpec(kind="trunc", drop_bits=3, rounding="nearest_even").build(24)
    with pytest.raises(ValueError, match="man_bits: required for kind 'float'"):
        CodecSpec(kind="float", exp_bits=3).build(24)


def test_preset_codecs_compress_to_at_most_085():
    ratios = {}
    for name in AcceleratorConfig.presets():
        config = AcceleratorConfig.preset(name)
        if config.datapath == "int" and config.int_datapath.psum_codec() is not None:
            ratios[name] = config.int_datapath.psum_codec().ratio
    assert "int8-lot4-psum" in ratios and all(r <= 0.85 for r in ratios.values()), ratios
